"""The harness that measures mailbeacon against simulated traffic with ground truth.

``run_campaign`` registers a campaign through the real REST API, has ``tests/simulator.py`` make
the traffic its recipients would cause, replays it through the real ``Replayer`` (the hits are
recorded and classified exactly like live ones), reads the verdicts back through the API and
compares them with the truth: per hit (a confusion matrix, accuracy for human, machine and self
hits, the actors most often got wrong) and per campaign (the API's open and click rates against
the true ones).
"""

from __future__ import annotations

import ipaddress
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from mailbeacon import accounts
from mailbeacon.ingest.replay import Replayer
from mailbeacon.web.services import Services
from tests.simulator import Mix, Recipient, Traffic, plan, simulate
from tests.support.peers import SENDER

BATCH = 250  # recipients a POST (the API takes up to 1000); each batch gets its own links
TRUTHS = ("human", "machine", "self")
VERDICTS = ("human", "machine", "self", "unknown")
RATES = ("naive_open_rate", "observed_open_rate", "inferred_open_rate", "estimated_open_rate")


class HarnessError(Exception):
    """The harness itself went wrong (not the classifier): lines lost, hits out of step."""


@dataclass
class CampaignResult:
    """How one simulated campaign went: ``confusion`` counts hits by (truth, verdict),
    ``by_actor`` by (true fetcher, truth, verdict)."""

    campaign: str
    mix: str
    recipients: int
    seed: int
    hits: int
    true_open_rate: float
    true_click_rate: float
    floor: float  # standard deviation of any open-rate estimate (see ``unseen_open_sd``)
    stats: dict[str, Any]  # GET /api/v1/campaigns/{name}/stats
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter, repr=False)
    by_actor: Counter[tuple[str, str, str]] = field(default_factory=Counter, repr=False)
    seconds: dict[str, float] = field(default_factory=dict)  # time taken by each step
    traffic: Traffic | None = field(default=None, repr=False)  # what was replayed

    def accuracy(self, truth: str) -> float | None:
        """Share of the hits truly of ``truth`` that were given that verdict."""
        total = sum(n for (t, _), n in self.confusion.items() if t == truth)
        return self.confusion[truth, truth] / total if total else None

    @property
    def human_accuracy(self) -> float | None:
        return self.accuracy("human")

    @property
    def machine_accuracy(self) -> float | None:
        return self.accuracy("machine")

    @property
    def self_accuracy(self) -> float | None:
        return self.accuracy("self")

    def rate(self, name: str) -> float | None:
        value = self.stats.get(name)
        return float(value) if isinstance(value, int | float) else None

    @property
    def interval(self) -> tuple[float, float] | None:
        value = self.stats.get("estimated_open_rate_interval")
        if isinstance(value, list | tuple) and len(value) == 2:
            return float(value[0]), float(value[1])
        return None

    @property
    def estimate_error(self) -> float | None:
        """Estimated minus true open rate (a rate: 0.01 is one percentage point)."""
        estimated = self.rate("estimated_open_rate")
        return None if estimated is None else estimated - self.true_open_rate

    def worst_actors(self, limit: int = 6) -> list[tuple[str, str, int, int, str]]:
        """(actor, truth, hits, misclassified, commonest wrong verdict), most wrong first."""
        totals: Counter[tuple[str, str]] = Counter()
        wrong: Counter[tuple[str, str]] = Counter()
        wrong_as: dict[tuple[str, str], Counter[str]] = {}
        for (actor, truth, verdict), n in self.by_actor.items():
            totals[actor, truth] += n
            if verdict != truth:
                wrong[actor, truth] += n
                wrong_as.setdefault((actor, truth), Counter())[verdict] += n
        return [
            (actor, truth, totals[actor, truth], n, wrong_as[actor, truth].most_common(1)[0][0])
            for (actor, truth), n in wrong.most_common(limit)
        ]

    def failures(self, min_accuracy: float = 0.97, max_error: float = 0.02) -> list[str]:
        """What misses the product's bar; empty when everything meets it."""
        out = []
        for truth in ("human", "machine"):
            accuracy = self.accuracy(truth)
            if accuracy is None or accuracy < min_accuracy:
                out.append(f"{truth} accuracy {_num(accuracy)} < {min_accuracy}")
        error = self.estimate_error
        if error is None:
            out.append("the API gives no estimated_open_rate")
        elif abs(error) > max_error:
            out.append(f"estimate off by {error * 100:+.1f} points (bar: ±{max_error * 100:g})")
        return out

    def report(self) -> str:
        interval = self.interval
        lines = [
            f"{self.campaign} ({self.mix}): {self.recipients} recipients, seed {self.seed}, "
            f"{self.hits} hits",
            f"open rate: true {self.true_open_rate:.3f} | "
            + " | ".join(
                f"{name.removesuffix('_open_rate')} {_num(self.rate(name))}" for name in RATES
            )
            + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
            + f" | error {_points(self.estimate_error)} (noise floor ±{self.floor * 100:.1f} pts)",
            f"click rate: true {self.true_click_rate:.3f} | click_rate "
            f"{_num(self.rate('click_rate'))} | naive_click_rate "
            f"{_num(self.rate('naive_click_rate'))}",
            "accuracy: " + " | ".join(f"{t} {_num(self.accuracy(t))}" for t in TRUTHS),
            "confusion (rows: truth, columns: verdict):",
            "  " + " " * 8 + "".join(f"{v:>9}" for v in self._verdicts()),
        ]
        for truth in TRUTHS:
            row = "".join(f"{self.confusion[truth, v]:>9}" for v in self._verdicts())
            lines.append(f"  {truth:<8}{row}")
        worst = self.worst_actors()
        if worst:
            lines.append("most misclassified actors:")
            lines += [
                f"  {actor} ({truth}): {bad} of {total} wrong, mostly {verdict}"
                for actor, truth, total, bad, verdict in worst
            ]
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)

    def _verdicts(self) -> list[str]:
        seen = {v for _, v in self.confusion}
        return [*VERDICTS, *sorted(seen - set(VERDICTS))]


def _num(value: float | None) -> str:
    return "None" if value is None else f"{value:.3f}"


def _points(error: float | None) -> str:
    return "None" if error is None else f"{error * 100:+.1f} pts"


def unseen_open_sd(traffic: Traffic, mix: Mix) -> float:
    """The noise floor of any open-rate estimate on this traffic: a standard deviation (rate).

    A recipient who left no human trace (no seen open, no click) may still have opened: behind
    MPP, or with images blocked. Even an estimator that knew every parameter of ``mix`` and every
    recipient's client could only give each of them its probability ``q`` of having opened;
    whether they did is a coin toss, so any estimate's error has at least this spread.
    """
    traced = {m for m, t in zip(traffic.messages, traffic.truth, strict=True) if t == "human"}
    variance = 0.0
    for message_id, client in traffic.client.items():
        if message_id not in traced:
            p, c, v = mix.opens_of(client), mix.click_to_open, mix.visibility(client)
            hidden = p * (1 - v) * (1 - c)
            q = hidden / (hidden + 1 - p)
            variance += q * (1 - q)
    return math.sqrt(variance) / len(traffic.client) if traffic.client else 0.0


def run_campaign(
    client: TestClient,
    services: Services,
    mix: Mix,
    n: int,
    seed: int,
    *,
    campaign: str,
    auth: Mapping[str, str] | None = None,
    sender: str = "news@example.test",
    sender_ip: str | None = None,
    jsonl: Path | None = None,
) -> CampaignResult:
    """Register ``n`` messages of ``campaign``, replay their simulated traffic, and compare.

    ``auth`` is the API key header of the sending user (a new user when None); ``sender_ip``
    is the address the sender's own opens come from (default: where the app sees the sender's
    API calls come from, ``api_peer``). ``jsonl`` keeps the replayed lines in a file.
    """
    sender_ip = sender_ip or SENDER  # where tests.support.peers.Peers puts API calls
    if auth is None:
        user = services.db.write(accounts.create_user, f"simulator-{campaign}@example.test")
        auth = {"Authorization": f"Bearer {user.api_key}"}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=mix.horizon + 12 * 3600)
    recipients = register(
        client, auth, mix=mix, n=n, seed=seed, campaign=campaign, sender=sender, sent_at=sent_at
    )
    seconds["register"] = time.perf_counter() - started

    started = time.perf_counter()
    traffic = simulate(recipients, mix, seed, sender_ip)
    lines = traffic.jsonl()
    if jsonl is not None:
        jsonl.write_text("".join(line + "\n" for line in lines))
    seconds["simulate"] = time.perf_counter() - started

    started = time.perf_counter()
    cursor = _end_of_events(client, auth)
    report = Replayer(services.db, services.signer, services.classifier).run(lines)
    if report.bad or report.recorded != len(lines):
        raise HarnessError(f"replay recorded {report.recorded} of {len(lines)}: {report.bad[:5]}")
    seconds["replay"] = time.perf_counter() - started

    started = time.perf_counter()
    ours = {r.message_id for r in recipients}
    events = [e for e in _events_after(client, auth, cursor) if e["message_id"] in ours]
    _check_in_step(traffic, events)
    seconds["events"] = time.perf_counter() - started

    started = time.perf_counter()
    response = client.get(f"/api/v1/campaigns/{campaign}/stats", headers=dict(auth))
    if response.status_code != 200:
        raise HarnessError(f"campaign stats: {response.status_code} {response.text}")
    seconds["stats"] = time.perf_counter() - started

    result = CampaignResult(
        campaign=campaign,
        mix=mix.name,
        recipients=n,
        seed=seed,
        hits=len(lines),
        true_open_rate=traffic.open_rate,
        true_click_rate=traffic.click_rate,
        floor=unseen_open_sd(traffic, mix),
        stats=response.json(),
        seconds=seconds,
        traffic=traffic,
    )
    for event, truth, actor in zip(events, traffic.truth, traffic.actor, strict=True):
        result.confusion[truth, event["verdict"]] += 1
        result.by_actor[actor, truth, event["verdict"]] += 1
    return result


def register(
    client: TestClient,
    auth: Mapping[str, str],
    *,
    mix: Mix,
    n: int,
    seed: int,
    campaign: str,
    sender: str,
    sent_at: datetime,
) -> list[Recipient]:
    """``n`` tracked messages through ``POST /api/v1/messages``, in batches with 3–5 links."""
    rng = random.Random(f"{seed}-html")
    addresses = [mailbox.address for mailbox in plan(mix, n, seed)]
    recipients: list[Recipient] = []
    for start in range(0, n, BATCH):
        batch = addresses[start : start + BATCH]
        body = {
            "from": sender,
            "to": batch,
            "subject": f"{campaign}: this week's news",
            "html": _html(campaign, start // BATCH, rng.randint(3, 5)),
            "campaign": campaign,
            "sent_at": sent_at.isoformat(),
        }
        response = client.post("/api/v1/messages", json=body, headers=dict(auth))
        if response.status_code != 201:
            raise HarnessError(f"POST /api/v1/messages: {response.status_code} {response.text}")
        messages = response.json()["messages"]
        if [m["recipient"] for m in messages] != batch:
            raise HarnessError("the API answered for other recipients than it was given")
        recipients += [
            Recipient(
                message_id=m["id"],
                address=m["recipient"],
                pixel_url=m["pixel_url"],
                link_urls=[link["tracked_url"] for link in m["links"]],
                sent_at=sent_at,
            )
            for m in messages
        ]
    return recipients


def _html(campaign: str, batch: int, links: int) -> str:
    """A newsletter with ``links`` distinct links, the last one to unsubscribe."""
    shop = "https://shop.example.test"
    content = [
        f"{shop}/{campaign}/offer?utm_campaign={campaign}&amp;v={batch}",
        f"{shop}/{campaign}/new-arrivals?v={batch}",
        f"https://blog.example.test/{campaign}/story-{batch}",
        f"{shop}/{campaign}/stores?v={batch}",
    ]
    unsubscribe = f"https://news.example.test/unsubscribe?list={campaign}&amp;v={batch}"
    hrefs = [*content[: links - 1], unsubscribe]
    items = "".join(f'<p><a href="{href}">Link {i + 1}</a></p>' for i, href in enumerate(hrefs))
    return f"<html><body><h1>News</h1>{items}</body></html>"


def _events_after(client: TestClient, auth: Mapping[str, str], cursor: str) -> list[Any]:
    events: list[Any] = []
    while True:
        response = client.get(f"/api/v1/events?after={cursor}&limit=1000", headers=dict(auth))
        if response.status_code != 200:
            raise HarnessError(f"GET /api/v1/events: {response.status_code} {response.text}")
        page = response.json()
        if not page["events"]:
            return events
        events += page["events"]
        cursor = page["next"]


def _end_of_events(client: TestClient, auth: Mapping[str, str]) -> str:
    """The cursor after the user's last hit so far (their earlier campaigns' hits)."""
    cursor = "0"
    while True:
        page = client.get(f"/api/v1/events?after={cursor}&limit=1000", headers=dict(auth)).json()
        if not page["events"]:
            return cursor
        cursor = page["next"]


def _check_in_step(traffic: Traffic, events: list[Any]) -> None:
    """Each replayed line must be exactly one hit, in order: compare what both carry."""
    if len(events) != len(traffic.lines):
        raise HarnessError(f"{len(traffic.lines)} lines replayed, {len(events)} hits read back")
    for number, (line, event, message) in enumerate(
        zip(traffic.lines, events, traffic.messages, strict=True), start=1
    ):
        expected = (
            message,
            "open" if "/o/" in line["url"] else "click",
            line["method"],
            str(ipaddress.ip_address(line["ip"])),
            line["headers"].get("User-Agent", "")[:512],
        )
        found = (event["message_id"], event["kind"], event["method"], event["ip"],
                 event["user_agent"])  # fmt: skip
        if expected != found:
            raise HarnessError(f"line {number} is out of step: {expected} != {found}")
