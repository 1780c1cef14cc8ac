"""Open-rate honesty on simulated campaigns: every preset over several seeds, as a Markdown table.

Each run registers a campaign through the API of an in-process app on a throwaway SQLite store,
replays the traffic ``tests/simulator.py`` makes for it through the real replay path, and compares
the verdicts and the campaign's rates with the ground truth (``tests/support/campaigns.py``).
Prints, per run: the true open rate; the naive, observed, inferred and estimated rates the API
gives (None where it gives none yet); the estimate's error in points; the noise floor (the spread
no estimator can avoid, see ``unseen_open_sd``); and the accuracy on human and on machine hits.
Then, per preset, how often the estimate was within 2 points, and the actors most often misread.

    .venv/bin/python bench/simulate.py [--seeds N] [--recipients N] [--preset NAME ...]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.simulator import DATA, PRESETS, Mix  # noqa: E402
from tests.support.campaigns import CampaignResult, run_campaign  # noqa: E402
from tests.support.peers import Peers  # noqa: E402

from mailbeacon import accounts  # noqa: E402
from mailbeacon.settings import Settings  # noqa: E402
from mailbeacon.store.db import Database  # noqa: E402
from mailbeacon.web.app import App  # noqa: E402
from mailbeacon.web.services import Services  # noqa: E402

SECRET = "bench-simulate-" + "x" * 40
PUBLIC_URL = "https://t.example.test"
PEER = ("203.0.113.7", 50000)  # the test client's; Peers puts API calls on the sender's
MAX_ERROR = 0.02
MIN_ACCURACY = 0.97


def _settings(tmp: Path) -> Settings:
    # Apple's egress list from the shared copy (the tests' own): no download.
    egress = tmp / "apple-egress.txt"
    egress.write_text(
        "".join(
            (DATA / f"apple-private-relay-egress-{family}.txt").read_text()
            for family in ("ipv4", "ipv6")
        )
    )
    flags = {
        "data": str(tmp / "data"),
        "db": str(tmp / "mailbeacon.db"),
        "public_url": PUBLIC_URL,
        "secret": SECRET,
        "apple_egress": str(egress),
        "apple_egress_refresh": "0",
    }
    return Settings.load(flags, environ={})


def run(mix: Mix, recipients: int, seed: int) -> CampaignResult:
    """One campaign on a store of its own."""
    with tempfile.TemporaryDirectory(prefix="mailbeacon-simulate-") as tmp:
        settings = _settings(Path(tmp))
        Database(settings.db).migrate()
        services = Services.open(settings)
        app = Peers(App(services))
        try:
            with TestClient(app, base_url=PUBLIC_URL, client=PEER) as client:
                user = services.db.write(accounts.create_user, "sender@example.test")
                return run_campaign(
                    client,
                    services,
                    mix,
                    recipients,
                    seed,
                    campaign=mix.name.lower(),
                    auth={"Authorization": f"Bearer {user.api_key}"},
                    sender=user.email,
                )
        finally:
            services.db.close()


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _estimate(result: CampaignResult) -> str:
    interval = result.interval
    text = _rate(result.rate("estimated_open_rate"))
    if interval is not None:
        text += f" [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]"
    return text


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


HEADER = [
    "preset",
    "recipients",
    "seed",
    "true open rate",
    "naive",
    "observed",
    "inferred",
    "estimated [interval]",
    "error (pts)",
    "noise floor (± pts)",
    "human acc.",
    "machine acc.",
]


def row(r: CampaignResult) -> list[str]:
    return [
        r.mix,
        f"{r.recipients:,}",
        str(r.seed),
        _rate(r.true_open_rate),
        _rate(r.rate("naive_open_rate")),
        _rate(r.rate("observed_open_rate")),
        _rate(r.rate("inferred_open_rate")),
        _estimate(r),
        _points(r.estimate_error),
        f"{r.floor * 100:.1f}",
        _rate(r.human_accuracy),
        _rate(r.machine_accuracy),
    ]


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def summary(name: str, results: Sequence[CampaignResult]) -> list[str]:
    errors = [r.estimate_error for r in results if r.estimate_error is not None]
    within = sum(abs(e) <= MAX_ERROR for e in errors)
    passed = sum(not r.failures(MIN_ACCURACY, MAX_ERROR) for r in results)
    lines = [
        f"- **{name}**: estimate within {MAX_ERROR * 100:g} points in {within} of {len(results)} "
        f"runs"
        + (f" (largest miss {max(abs(e) for e in errors) * 100:.1f} points)" if errors else "")
        + f"; all of the bar met in {passed} of {len(results)}."
    ]
    wrong: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    for r in results:
        for (actor, truth, verdict), n in r.by_actor.items():
            total[actor, truth] += n
            if verdict != truth:
                wrong[actor, truth] += n
    for (actor, truth), n in wrong.most_common(5):
        share = n / total[actor, truth]
        lines.append(
            f"  - {actor} ({truth}): {n:,} of {total[actor, truth]:,} misread ({share:.0%})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per preset (1, 2, …)")
    parser.add_argument("--recipients", type=int, default=1000, help="recipients per campaign")
    parser.add_argument(
        "--preset", action="append", choices=sorted(PRESETS), help="only these presets"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.recipients < 1:
        parser.error("--seeds and --recipients must be positive")
    command = ".venv/bin/python bench/simulate.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"# Simulated campaigns\n\n`{command.strip()}`\n", flush=True)
    started = time.perf_counter()
    by_preset: dict[str, list[CampaignResult]] = {}
    for name in args.preset or list(PRESETS):
        for seed in range(1, args.seeds + 1):
            result = run(PRESETS[name], args.recipients, seed)
            by_preset.setdefault(name, []).append(result)
            print(f"<!-- {name} seed {seed}: {result.hits:,} hits -->", file=sys.stderr, flush=True)
    results = [r for rs in by_preset.values() for r in rs]
    lines = [*table([row(r) for r in results]), ""]
    for name, rs in by_preset.items():
        lines += summary(name, rs)
    lines += [
        "",
        f"Bar: human and machine accuracy ≥ {MIN_ACCURACY:.0%}, estimate within "
        f"{MAX_ERROR * 100:g} points of the truth. *noise floor*: one standard deviation of the "
        "opens no estimator can see (recipients behind MPP or with images blocked who left no "
        "click): even an estimator that knew the mix misses by more than twice it 1 time in 20.",
        f"{len(results)} campaigns in {time.perf_counter() - started:.0f} s.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
