"""What a campaign's charts show, as rows of (label, value, text): the templates draw them as SVG
bars with their numbers written beside them (readable without colour), each with a table of the
same numbers."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, NamedTuple

import anyio.to_thread

from mailbeacon import reports
from mailbeacon.background import Periodic
from mailbeacon.store import dashboard as store
from mailbeacon.store import leases, queries
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer

log = logging.getLogger(__name__)

HOUR = 3600 * 1_000_000  # µs
DAY = 24 * HOUR
MAX_BARS = 60
# Time to first open, in seconds: the upper bounds of each bar.
DELAYS = ((600, "under 10 min"), (3600, "10–60 min"), (6 * 3600, "1–6 h"), (86400, "6–24 h"),
          (3 * 86400, "1–3 days"), (None, "over 3 days"))  # fmt: skip


class Bar(NamedTuple):
    label: str
    value: float
    text: str  # the value as people read it


class Chart(NamedTuple):
    id: str
    title: str
    bars: list[Bar]
    note: str = ""

    @property
    def top(self) -> float:
        return max((b.value for b in self.bars), default=0) or 1


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def rates(stats: dict[str, Any]) -> Chart:
    low, high = stats["estimated_open_rate_interval"]
    return Chart(
        "rates",
        "Open rates: what each way of counting says",
        [
            Bar("naive (every fetch)", stats["naive_open_rate"], _pct(stats["naive_open_rate"])),
            Bar(
                "observed (people)", stats["observed_open_rate"], _pct(stats["observed_open_rate"])
            ),
            Bar(
                "inferred (+ clicks)",
                stats["inferred_open_rate"],
                _pct(stats["inferred_open_rate"]),
            ),
            Bar(
                "estimated (+ unseen)",
                stats["estimated_open_rate"],
                f"{_pct(stats['estimated_open_rate'])} (95%: {_pct(low)}–{_pct(high)})",
            ),
            Bar("click rate (people)", stats["click_rate"], _pct(stats["click_rate"])),
        ],
        f"Of {stats['delivered']:,} delivered. Naive counts Apple's prefetch, proxies' cache "
        "warming and scanners as opens; the others count people only.",
    )


def over_time(conn: Conn, user_id: int, campaign: str) -> Chart:
    span = store.campaign_span(conn, user_id, campaign)
    if span is None:
        return Chart("over-time", "People's opens over time", [])
    start, end = span
    width = HOUR if end - start <= 2 * DAY else DAY
    while (end - start) // width >= MAX_BARS:
        width *= 2
    counts = dict(store.opens_over_time(conn, user_id, campaign, start, width))
    unit = "h" if width < DAY else "d"
    step = width // (HOUR if unit == "h" else DAY)
    last = max(counts, default=0)
    bars = [
        Bar(f"+{b * step}{unit}", counts.get(b, 0), f"{counts.get(b, 0):,}")
        for b in range(last + 1)
    ]
    return Chart(
        "over-time",
        "People's opens over time",
        bars,
        f"Each bar: {step} {'hour' if unit == 'h' else 'day'}{'s' if step > 1 else ''} after "
        "the first message was sent.",
    )


def first_open(conn: Conn, user_id: int, campaign: str) -> Chart:
    counts = [0] * len(DELAYS)
    for delay in store.first_open_delays(conn, user_id, campaign):
        seconds = delay / 1_000_000
        counts[next(i for i, (top, _) in enumerate(DELAYS) if top is None or seconds < top)] += 1
    bars = [Bar(label, n, f"{n:,}") for (_, label), n in zip(DELAYS, counts, strict=True)]
    return Chart("first-open", "Time from sending to a person's first open", bars,
                 "Recipients, by how long they took to open.")  # fmt: skip


def verdicts(stats: dict[str, Any]) -> Chart:
    by = stats["hits"]["by_verdict"]
    order = [f"{k}:{v}" for k in ("open", "click") for v in ("human", "machine", "self", "unknown")]
    bars = [Bar(key.replace(":", " by "), by.get(key, 0), f"{by.get(key, 0):,}") for key in order]
    return Chart("verdicts", "Who fetched: every hit by verdict", bars)


def agents(stats: dict[str, Any]) -> Chart:
    by = stats["hits"]["by_agent"]
    top = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    bars = [Bar(key.replace(":", " · "), n, f"{n:,}") for key, n in top]
    return Chart("agents", "Which agent: hits by what fetched them", bars)


def clients(stats: dict[str, Any]) -> Chart:
    bars = [
        Bar(" · ".join(p for p in (c["client"] or "unknown", c["type"], c["os"]) if p),
            c["recipients"], f"{c['recipients']:,}")
        for c in stats["clients"][:12]
    ]  # fmt: skip
    return Chart("clients", "Mail clients: recipients who opened with each", bars)


def links(conn: Conn, user_id: int, campaign: str) -> Chart:
    bars = [
        Bar(url, int(clicks), f"{int(clicks):,} clicks by {int(people):,}")
        for url, clicks, people in store.top_links(conn, user_id, campaign)
    ]
    return Chart("links", "Top links: people's clicks", bars)


class Figures(NamedTuple):
    stats: dict[str, Any]
    charts: list[Chart]
    at: int  # µs, when they were computed
    took: float  # seconds it took

    def json(self) -> str:
        charts = [{**c._asdict(), "bars": [b._asdict() for b in c.bars]} for c in self.charts]
        return json.dumps({"stats": self.stats, "charts": charts}, ensure_ascii=False)

    @classmethod
    def kept(cls, kept: store.Kept) -> Figures:
        data = json.loads(kept.figures)
        charts = [Chart(**{**c, "bars": [Bar(**b) for b in c["bars"]]}) for c in data["charts"]]
        return cls(data["stats"], charts, kept.computed_at, kept.took_us / 1e6)


# A campaign's figures cost seconds on a campaign of 100,000 recipients on SQLite (BENCHMARKS.md):
# those that take over CHEAP seconds are kept in the store, pages show them as of when they were
# computed, and ``Keeper`` computes them again in the background: for large campaigns before
# anyone looks, and for campaigns looked at lately once older than REUSE times their cost.
CHEAP = 0.1  # seconds
REUSE = 10
MIN_AGE = 10 * 1_000_000  # µs
LARGE = 10_000  # messages: a campaign this large gets its figures before its first view
WATCHED = 3600 * 1_000_000  # µs: a campaign viewed this recently is kept fresh
# A node computing a campaign's figures holds its lease (store.leases), so that several nodes do
# it once; one that dies in the middle delays them this long at most.
LEASE = 10 * 60 * 1_000_000  # µs


def compute(conn: Conn, user_id: int, name: str) -> Figures | None:
    """A campaign's statistics and charts now; None when the user has no such campaign."""
    started = time.time()
    found = reports.stats(conn, queries.Scope(user_id, campaign=name))
    if not found:
        return None
    charts = campaign(conn, user_id, name, found[0])
    return Figures(found[0], charts, int(started * 1e6), time.time() - started)


def keep(conn: Conn, user_id: int, name: str, figures: Figures) -> None:
    store.keep_figures(
        conn, user_id, name, computed_at=figures.at, took_us=int(figures.took * 1e6),
        figures=figures.json(),
    )  # fmt: skip


def stale(figures: Figures, now: int) -> bool:
    return now - figures.at > max(MIN_AGE, REUSE * figures.took * 1e6)


def campaign(conn: Conn, user_id: int, name: str, stats: dict[str, Any]) -> list[Chart]:
    """Every chart of a campaign's page, in the order it shows them."""
    return [
        rates(stats),
        over_time(conn, user_id, name),
        first_open(conn, user_id, name),
        verdicts(stats),
        agents(stats),
        clients(stats),
        links(conn, user_id, name),
    ]


class Keeper(Periodic):
    """Computes campaigns' figures in the background of ``serve`` (see ``CHEAP``): as it
    starts, every ``poll`` seconds, and when poked (a page showed stale figures)."""

    failed = "computing campaign figures"

    def __init__(self, db: Database, writer: Writer, poll: float = 30.0) -> None:
        self.db = db
        self.writer = writer
        super().__init__(poll)

    async def round(self) -> int:
        return await self.keep_due()

    async def keep_due(self) -> int:
        """Compute and keep the figures that are due; how many."""
        now = int(time.time() * 1e6)
        due = await anyio.to_thread.run_sync(
            lambda: self.db.read(
                store.figures_due,
                now=now,
                min_messages=LARGE,
                min_age=MIN_AGE,
                reuse=REUSE,
                watched_since=now - WATCHED,
            )
        )
        kept = 0
        for user_id, name in due:
            if self._stopping:
                break
            job = f"campaign-figures/{user_id}/{name}"
            until = int(time.time() * 1e6) + LEASE
            if not await self.writer.run(leases.claim, job, now=until - LEASE, until=until):
                continue  # another node is computing them
            try:
                found = await anyio.to_thread.run_sync(self.db.read, compute, user_id, name)
                if found is not None:
                    await self.writer.run(keep, user_id, name, found)
                    kept += 1
            finally:
                await self.writer.run(leases.release, job, until=until)
        return kept
