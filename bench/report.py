"""BENCHMARKS.md: the tables of the pixel under load, the warnings, and the whole page with each
section's report in its place."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from campaign import Campaign, campaign_report
from dashboard import Dashboard, dashboard_report
from load import PACED_RATE_PER_CONNECTION, Load
from machine import Machine
from notify import Latency, latency_report
from replay import REPLAY_BATCHES, REPLAY_RECIPIENTS, TARGET_REPLAY_RATE, Replay, replay_table
from scenarios import (
    H2LOAD_LOG,
    PIXEL,
    SCENARIOS,
    TARGET_HALF_LOAD_P99_MS,
    TARGET_RATIO,
    WARMUP_SECONDS,
    Scenario,
    h2load_commands,
    round_warnings,
    shown,
    wrk_commands,
)
from settings import (
    CAMPAIGN_RECIPIENTS,
    DASHBOARD_HITS,
    DASHBOARD_RECIPIENTS,
    NOTIFY_HITS,
    REPLAY_LINES,
    ROUNDS,
    SECONDS,
    SOAK_SECONDS,
)
from soak import Soak, soak_report
from tables import table, yes


def _ratio(scenario: Scenario, ratio: float, load: Load | None = None) -> str:
    if scenario.name == "nginx":
        return "1.00× (reference)"
    if scenario.setup.half_of:
        offered = load.offered if load else scenario.median(lambda load: load.offered or 0)
        return f"— (paced at {offered:,.0f}/s)"
    return f"{ratio:.2f}×"


def _recorded(s: Scenario) -> str:
    answered = sum(r.load.answered for r in s.rounds)
    recorded = sum(r.recorded for r in s.rounds)
    what = "log lines" if s.name == "nginx" else "hits"
    compared = "≥" if s.complete else "<"
    return f"{yes(s.complete)} ({what} {recorded:,} {compared} answered {answered:,})"


def summary_table(scenarios: Sequence[Scenario]) -> list[str]:
    """The scenarios flat out."""
    rows = [
        [
            s.label,
            f"{s.median(lambda load: load.rate):,.0f}",
            f"{s.median(lambda load: load.p50_ms):.2f} ms",
            f"{s.median(lambda load: load.p99_ms):.2f} ms",
            _ratio(s, statistics.median(s.ratios)),
            s.cost(),
            _recorded(s),
        ]
        for s in scenarios
        if not s.setup.half_of
    ]
    header = ["scenario", "req/s", "p50", "p99", "× nginx", "CPU s a million hits"]
    return table([*header, "every answered hit recorded"], rows)


def half_load_table(scenarios: Sequence[Scenario]) -> list[str]:
    """The scenarios paced at half of their peak."""
    rows = [
        [
            s.label,
            f"{s.median(lambda load: load.offered or 0):,.0f}",
            f"{s.median(lambda load: load.rate):,.0f}",
            f"{s.median(lambda load: load.p50_ms):.2f} ms",
            f"**{s.median(lambda load: load.p99_ms):.2f} ms**",
            f"{s.median(lambda load: load.quantile(1.0)):.1f} ms",
            s.cost(),
            _recorded(s),
        ]
        for s in scenarios
        if s.setup.half_of
    ]
    header = ["scenario", "offered req/s", "answered req/s", "p50", "p99", "max"]
    return table([*header, "CPU s a million hits", "every answered hit recorded"], rows)


ROUNDS_HEADER = (
    "round",
    "req/s",
    "p50",
    "p99",
    "× nginx",
    "answered",
    "recorded",
    "all",
    "log errors",
)


def rounds_table(scenario: Scenario) -> list[str]:
    rows = [
        [
            str(n),
            f"{r.load.rate:,.0f}",
            f"{r.load.p50_ms:.2f} ms",
            f"{r.load.p99_ms:.2f} ms",
            _ratio(scenario, ratio, r.load),
            f"{r.load.answered:,}",
            f"{r.recorded:,}",
            yes(r.complete),
            str(r.log_errors),
        ]
        for n, (r, ratio) in enumerate(zip(scenario.rounds, scenario.ratios, strict=True), 1)
    ]
    return table(ROUNDS_HEADER, rows)


def warnings(scenarios: Sequence[Scenario], replays: Sequence[Replay]) -> list[str]:
    found = []
    for s in scenarios:
        ratio = statistics.median(s.ratios)
        if s.name in ("sqlite", "postgresql") and ratio < TARGET_RATIO:
            found.append(f"{s.label}: {ratio:.2f}× nginx, below the {TARGET_RATIO}× target")
        p99 = s.median(lambda load: load.p99_ms)
        if s.setup.half_of and p99 >= TARGET_HALF_LOAD_P99_MS:
            found.append(
                f"{s.label}: p99 {p99:.2f} ms, over the {TARGET_HALF_LOAD_P99_MS} ms target"
            )
        for n, r in enumerate(s.rounds, 1):
            found += round_warnings(f"{s.label}, round {n}", r)
    found.extend(
        f"replay on {r.database}: {r.rate:,.0f} hits/s, below the {TARGET_REPLAY_RATE:,}/s target"
        for r in replays
        if r.rate < TARGET_REPLAY_RATE
    )
    return found


def render(
    machine: Machine,
    scenarios: Sequence[Scenario],
    replays: Sequence[Replay],
    warned: list[str],
    sent: Campaign,
    *,
    notified: Sequence[Latency],
    pages: Dashboard,
    soaked: Soak,
) -> str:
    settings = [
        f"BENCH_{name}={value}"
        for name, value, default in (
            ("SECONDS", SECONDS, 10),
            ("ROUNDS", ROUNDS, 3),
            ("REPLAY_LINES", REPLAY_LINES, 200_000),
            ("CAMPAIGN_RECIPIENTS", CAMPAIGN_RECIPIENTS, 2000),
            ("NOTIFY_HITS", NOTIFY_HITS, 200),
            ("DASHBOARD_RECIPIENTS", DASHBOARD_RECIPIENTS, 100_000),
            ("DASHBOARD_HITS", DASHBOARD_HITS, 150_000),
            ("SOAK_SECONDS", SOAK_SECONDS, 600),
        )
        if value != default
    ]
    command = " ".join([*settings, "make bench"])
    half = next(s for s in scenarios if s.name == "sqlite-half").median(lambda ld: ld.offered or 0)
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (`bench/run.py`) on {machine.date}; "
        "the whole file is rewritten by each run.",
        "",
        "## Machine",
        "",
        *table(["", ""], machine.rows()),
        "",
        "## The pixel under load",
        "",
        f"Flat out: `{shown(wrk_commands([PIXEL], SECONDS))}` on `GET /o/{{token}}.gif` "
        f"after a {WARMUP_SECONDS} s warm-up; medians of {ROUNDS} round(s), each running the "
        f"{len(SCENARIOS)} scenarios in turn. *× nginx* is the median of each round's ratio to "
        "nginx. Two nodes are two `mailbeacon serve` processes with the same secret and database "
        "(and a data directory each, for its spool), each loaded by a wrk of its own at once, "
        f"`{shown(wrk_commands([PIXEL, PIXEL], SECONDS))}`, rather than through a load "
        "balancer, which would take CPU from the two cores that the nodes and wrk share: "
        "requests/s add up, and the latencies of both make one distribution "
        "(`bench/quantiles.lua` has each wrk print 1,000 quantiles of its own).",
        f"Target: mailbeacon ≥ {TARGET_RATIO}× nginx on one node. The requests carry no "
        "User-Agent and "
        "come from the address the message was registered from (machine or self opens, which "
        "notify nobody), except in the last scenario, which shows what publishing each open as "
        "an event costs: every request is a person's open (Thunderbird, through a trusted "
        "proxy, a day after sending), stored with its row in the hit outbox, then published by "
        "the notifier to `email.opened` while the load goes on.",
        "",
        *summary_table(scenarios),
        "",
        "### At half of the peak",
        "",
        "After each one-node scenario flat out, a fresh server of the same kind is loaded at "
        "half the rate it reached in that round, open-loop: h2load (nghttp2) sends each "
        "connection's requests by the clock, whether or not the previous answer has come, "
        f"{PACED_RATE_PER_CONNECTION} a second at most on one connection (for the median "
        f"SQLite run, `{shown(h2load_commands([PIXEL], [H2LOAD_LOG], half, SECONDS))}`). wrk "
        "has no rate option, and pacing it (a Lua `delay()`) would be closed-loop: a "
        "connection waiting on a slow answer sends nothing meanwhile, so a stall would be "
        "counted once rather than for every request due during it (coordinated omission). "
        "h2load times a request from when it is sent: a run that fell behind its rate is "
        "flagged below, as its latencies would leave out the wait. "
        f"Target: p99 < {TARGET_HALF_LOAD_P99_MS} ms.",
        "",
        *half_load_table(scenarios),
    ]
    for s in scenarios:
        lines += ["", f"### {s.label}", "", *rounds_table(s)]
    lines += [
        "",
        "## Replay",
        "",
        f"`mailbeacon replay hits.jsonl --json` on {replays[0].lines:,} generated lines "
        f"(opens and clicks of {REPLAY_BATCHES * REPLAY_RECIPIENTS} registered messages, "
        "varied IPs and User-Agents), timed as a whole command (wall clock, start-up included). "
        f"Target: ≥ {TARGET_REPLAY_RATE:,} hits/s.",
        "",
        *replay_table(replays),
        "",
        *campaign_report(sent),
        "",
        *latency_report(notified),
        "",
        *dashboard_report(pages),
        "",
        *soak_report(soaked),
        "",
        "## Warnings",
        "",
        *([f"- {w}" for w in warned] or ["None."]),
        "",
        "## How to read this",
        "",
        f"- The box has {machine.cpus} cores and wrk runs on it too, so the server under test "
        "gets roughly one core and figures swing by ±30% from run to run. Compare mailbeacon "
        "with the nginx measured in the same run (*× nginx*), not with figures from elsewhere.",
        f"- Figures are medians of {ROUNDS} round(s); the per-round tables show the spread.",
        "- nginx is the classic log-based pixel: one worker (`worker_processes 1`) answering "
        "`empty_gif` from memory and writing an unbuffered access log line per request. It stores "
        "nothing queryable, while mailbeacon verifies a signed token and commits a database row "
        "before it answers.",
        "- *answered* is the load generator's count of 2xx responses; *recorded* is rows added "
        "to `hits` (for nginx: access log lines) between the warm-up and the servers' shutdown. "
        "It may exceed *answered* by the requests still in flight when the load generator "
        "stopped counting; it must never be lower, or a visitor saw a pixel whose hit was lost.",
        "- Both stores are durable as in production: PostgreSQL with its default `fsync=on` and "
        "`synchronous_commit=on` (unlike the test suite's throwaway server), SQLite with "
        "`synchronous=FULL`. PostgreSQL runs on the same two cores.",
        "- *log errors* counts error lines in the server's log (nginx's error log; mailbeacon's "
        "output) during the whole run.",
        "- *CPU s a million hits* is the CPU time (user + system) used during the measured run "
        "by the server's processes (both nodes' with two), and on PostgreSQL also by "
        "PostgreSQL's (the postmaster, its backends and background processes: shown apart), "
        "over the hits answered, in seconds a million (the same figure as µs a hit): the cost "
        "that does not depend on how busy the box was. The load generator's CPU is not in it.",
        "",
    ]
    return "\n".join(lines)
