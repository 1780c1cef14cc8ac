"""The soak: one node on SQLite at half of its peak for a long while, its memory watched
(`bench/run.py soak` runs it alone)."""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from load import Load
from processes import Processes, group_rss_kib
from scenarios import (
    H2LOAD_LOG,
    PIXEL,
    Drive,
    Round,
    flat_out,
    h2load_commands,
    measure,
    paced,
    round_warnings,
    shown,
)
from servers import Subject, pixel
from settings import SOAK_SECONDS
from tables import table, yes

SOAK_EVERY = 10  # seconds between two samples of the server's memory
TARGET_SOAK_GROWTH = 0.10  # resident memory, the last minute's median over the first minute's


class MemoryWatch:
    """A drive that samples the servers' resident memory every SOAK_EVERY seconds while another
    drive runs, and keeps the samples of its last run: (seconds into the run, KiB)."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        self.samples: list[tuple[float, int]] = []

    def __call__(self, subject: Subject, seconds: int) -> Load:
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while True:
                kib = sum(group_rss_kib(server.group) for server in subject.servers)
                samples.append((time.monotonic() - started, kib))
                if done.wait(SOAK_EVERY):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            return self.drive(subject, seconds)
        finally:
            done.set()
            sampler.join()
            self.samples = samples


@dataclass(frozen=True)
class Soak:
    peak: float  # req/s flat out: the soak runs at half of it
    run: Round
    rss_kib: list[tuple[float, int]]  # (seconds into the run, KiB) every SOAK_EVERY seconds

    def minute(self, *, last: bool) -> float:
        """Median resident memory (KiB) over the first or the last minute."""
        end = self.rss_kib[-1][0]
        return statistics.median(
            kib for t, kib in self.rss_kib if (t > end - 60 if last else t < 60)
        )

    @property
    def growth(self) -> float:
        return self.minute(last=True) / self.minute(last=False) - 1


def soak(procs: Processes, data: Path, peak: float | None) -> Soak:
    """One node on SQLite paced at half of ``peak`` req/s for SOAK_SECONDS, its memory sampled;
    without ``peak``, it is measured first on a server of its own."""
    if peak is None:
        top = measure(procs, pixel(procs, data / "peak", None), functools.partial(flat_out, procs))
        peak = top.load.rate
    watch = MemoryWatch(functools.partial(paced, procs, peak / 2))
    run = measure(procs, pixel(procs, data / "soak", None), watch, seconds=SOAK_SECONDS)
    return Soak(peak, run, watch.samples)


def soak_report(run: Soak) -> list[str]:
    mib = [kib / 1024 for _, kib in run.rss_kib]
    minutes = [
        [kib / 1024 for t, kib in run.rss_kib if m * 60 <= t < (m + 1) * 60]
        for m in range(math.ceil(run.rss_kib[-1][0] / 60))
    ]
    by_minute = [f"{statistics.median(minute):.0f}" for minute in minutes if minute]
    load = run.run.load
    rows = [
        [
            f"{load.offered or 0:,.0f}",
            f"{load.rate:,.0f}",
            f"{load.p50_ms:.2f} ms",
            f"{load.p99_ms:.2f} ms",
            f"{run.run.per_million_hits(run.run.cpu_seconds):.1f}",
            f"{yes(run.run.complete)} (hits {run.run.recorded:,} "
            f"{'≥' if run.run.complete else '<'} answered {load.answered:,})",
        ]
    ]
    memory = [
        [
            f"{mib[0]:.0f} MiB",
            f"{min(mib):.0f} MiB",
            f"{statistics.median(mib):.0f} MiB",
            f"{max(mib):.0f} MiB",
            f"{mib[-1]:.0f} MiB",
            f"{run.growth:+.1%}",
        ]
    ]
    return [
        "## Soak",
        "",
        f"One node on SQLite paced at half of its peak ({run.peak:,.0f} req/s flat out) for "
        f"{SOAK_SECONDS} s (`BENCH_SOAK_SECONDS`; alone: `.venv/bin/python bench/run.py soak`), "
        f"`{shown(h2load_commands([PIXEL], [H2LOAD_LOG], load.offered or 0, SOAK_SECONDS))}`, "
        f"the resident memory of `mailbeacon serve` (VmRSS in /proc/PID/status, all the "
        f"processes of its group) sampled every {SOAK_EVERY} s. Target: flat, the last "
        f"minute's median no more than {TARGET_SOAK_GROWTH:.0%} above the first minute's.",
        "",
        *table(
            ["offered req/s", "answered req/s", "p50", "p99", "CPU s a million hits", "recorded"],
            rows,
        ),
        "",
        *table(["RSS first", "min", "median", "max", "last", "growth (minute medians)"], memory),
        "",
        f"Median RSS minute by minute (MiB): {', '.join(by_minute)}.",
    ]


def soak_warnings(run: Soak) -> list[str]:
    found = round_warnings("soak", run.run)
    if run.growth > TARGET_SOAK_GROWTH:
        found.append(
            f"soak: resident memory grew {run.growth:.1%} from the first minute to the last, "
            f"over the {TARGET_SOAK_GROWTH:.0%} target"
        )
    return found
