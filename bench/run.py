"""`make bench`: the tracking pixel under load, against nginx measured in the same run.

The machine is small and noisy (2 cores shared with the load generator), so absolute figures mean
little: every round measures nginx's `empty_gif` with an access log (the classic log-based pixel)
right before mailbeacon on SQLite and on PostgreSQL, on one node and on two, and the report gives
medians over the rounds, mailbeacon's throughput as a fraction of nginx's, the CPU seconds a
million hits cost, and the latency at half of each one-node peak, paced by the clock. It also
checks what a pixel promises: every answered hit is in the database. A soak keeps one node at
half its peak for 10 minutes and watches its memory (`bench/run.py soak` runs that part alone).
Then it times `mailbeacon replay` on a generated log, and
`mailbeacon send` of a campaign and its delivery to a loopback SMTP server
(`bench/run.py campaign` runs that part alone), and the time from a hit to its webhook
(`bench/run.py notify`), and the dashboard's pages on a campaign of 100,000 recipients
(`bench/run.py dashboard`).

Writes BENCHMARKS.md and prints it. Exits 1 if an answered hit was not recorded (or a replayed
line was lost), 2 if the bench could not run; a missed speed target is only a warning.

    BENCH_SECONDS=5 BENCH_ROUNDS=1 BENCH_SOAK_SECONDS=60 BENCH_REPLAY_LINES=50000 \
        .venv/bin/python bench/run.py

The load generators and what they say are in bench/load.py; the load scenarios are in
bench/scenarios.py, the servers they load in bench/servers.py, each other section in a module of
its name (bench/soak.py, bench/replay.py, bench/campaign.py, bench/notify.py, bench/dashboard.py),
and BENCHMARKS.md is put together by bench/report.py.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from settings import (  # bench/, beside this script
    CAMPAIGN_RECIPIENTS,
    DASHBOARD_RECIPIENTS,
    NOTIFY_HITS,
    REPLAY_LINES,
    REPO,
    ROUNDS,
    SECONDS,
    SOAK_SECONDS,
)

sys.path.insert(0, str(REPO))  # tests.support, which the modules below import

from campaign import campaign, campaign_report, campaign_warnings
from dashboard import dashboard, dashboard_report, dashboard_warnings
from machine import describe_machine
from notify import latency_report, latency_warnings, notify_latency
from processes import BenchError, Processes
from replay import replay
from report import render, warnings
from scenarios import SCENARIOS, collect, run_round
from soak import soak, soak_report, soak_warnings
from tests.support.postgres import TemporaryPostgres

BENCHMARKS = REPO / "BENCHMARKS.md"


def section_only(name: str) -> int:
    """`bench/run.py campaign`, `notify`, `dashboard` or `soak`: that section alone, printed,
    BENCHMARKS.md left as it is; exit status 1 if something was lost."""
    with (
        tempfile.TemporaryDirectory(prefix="mailbeacon-bench-", ignore_cleanup_errors=True) as tmp,
        Processes() as procs,
    ):
        if name == "campaign":
            run = campaign(procs, Path(tmp) / name, CAMPAIGN_RECIPIENTS)
            report, warned, complete = campaign_report(run), campaign_warnings(run), run.complete
        elif name == "dashboard":
            pages = dashboard(procs, Path(tmp) / name)
            report, warned, complete = dashboard_report(pages), dashboard_warnings(pages), True
        elif name == "soak":
            soaked = soak(procs, Path(tmp) / name, None)
            report, warned, complete = (
                soak_report(soaked),
                soak_warnings(soaked),
                soaked.run.complete,
            )
        else:
            runs = notify_latency(procs, Path(tmp) / name)
            report, warned = latency_report(runs), latency_warnings(runs)
            complete = all(len(r.delays) == r.sent for r in runs)
    print("\n".join(report))
    for w in warned:
        print(f"warning: {w}", file=sys.stderr)
    return 0 if complete else 1


@contextlib.contextmanager
def postgres() -> Iterator[TemporaryPostgres]:
    pg = TemporaryPostgres(durable=True)
    try:
        yield pg.start()
    finally:
        try:
            pg.stop()
        except subprocess.CalledProcessError as exc:  # it never started, or is gone already
            print(f"warning: stopping PostgreSQL: {exc.stderr}", file=sys.stderr)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, like Ctrl-C


def bench() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="mailbeacon-bench-", ignore_cleanup_errors=True) as tmp,
        Processes() as procs,
        postgres() as pg,
    ):
        machine = describe_machine(pg)
        print("\n".join(f"{name}: {value}" for name, value in machine.rows()), flush=True)
        print(
            f"\nload: {ROUNDS} round(s) of {SECONDS} s: {', '.join(SCENARIOS)}",
            flush=True,
        )
        rounds = [run_round(procs, pg, Path(tmp) / f"round{n}", n) for n in range(1, ROUNDS + 1)]
        peak = statistics.median(r["sqlite"].load.rate for r in rounds)
        print(f"soak: {SOAK_SECONDS} s at {peak / 2:,.0f} req/s on SQLite", flush=True)
        soaked = soak(procs, Path(tmp) / "soak", peak)
        print(f"  RSS {soaked.growth:+.1%} from the first minute to the last", flush=True)
        print(f"replay: {REPLAY_LINES:,} lines on SQLite and PostgreSQL", flush=True)
        replays = [
            replay(procs, Path(tmp) / "replay-sqlite", None, REPLAY_LINES),
            replay(procs, Path(tmp) / "replay-pg", pg.create_database("replay"), REPLAY_LINES),
        ]
        for r in replays:
            print(f"  {r.database:<10} {r.rate:>9,.0f} hits/s ({r.seconds:.1f} s)", flush=True)
        print(f"campaign: {CAMPAIGN_RECIPIENTS:,} recipients, sent and delivered", flush=True)
        sent = campaign(procs, Path(tmp) / "campaign", CAMPAIGN_RECIPIENTS)
        print(f"  send {sent.rate:,.0f}/s, deliver {sent.delivery_rate:,.0f}/s", flush=True)
        print(f"notifications: {NOTIFY_HITS} opens and clicks, hit to webhook", flush=True)
        notified = notify_latency(procs, Path(tmp) / "notify")
        print(f"dashboard: {DASHBOARD_RECIPIENTS:,} recipients, pages timed", flush=True)
        pages = dashboard(procs, Path(tmp) / "dashboard")
    scenarios = collect(rounds)
    warned = warnings(scenarios, replays) + campaign_warnings(sent) + latency_warnings(notified)
    warned += dashboard_warnings(pages) + soak_warnings(soaked)
    text = render(
        machine, scenarios, replays, warned, sent, notified=notified, pages=pages, soaked=soaked
    )
    BENCHMARKS.write_text(text)
    print("\n" + text)
    for w in warned:
        print(f"warning: {w}", file=sys.stderr)
    lost = [s.label for s in scenarios if not s.complete]
    lost += [f"replay on {r.database}" for r in replays if not r.complete]
    lost += [] if sent.complete else ["campaign (queued or delivered)"]
    lost += [] if soaked.run.complete else ["soak"]
    if lost:
        print(f"FAILED: hits answered but not recorded: {', '.join(lost)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    # Started in the background by a shell without job control, we would inherit an ignored
    # SIGINT and pass it on to `mailbeacon serve`, which could then not be stopped with it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if sys.argv[1:] in (["campaign"], ["notify"], ["dashboard"], ["soak"]):
            return section_only(sys.argv[1])
        return bench()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
