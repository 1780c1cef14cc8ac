"""What the machine is: the report's first table, without which its figures mean little."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support.postgres import TemporaryPostgres


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory: str
    kernel: str
    python: str
    date: str
    nginx: str
    wrk: str
    h2load: str
    postgresql: str
    sqlite: str

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("CPUs (nproc)", str(self.cpus)),
            ("CPU model", self.cpu_model),
            ("memory", self.memory),
            ("kernel", self.kernel),
            ("Python", self.python),
            ("date", self.date),
            ("nginx", self.nginx),
            ("wrk", self.wrk),
            ("h2load", self.h2load),
            ("PostgreSQL", self.postgresql),
            ("SQLite", self.sqlite),
        ]


def _output(args: Sequence[str]) -> str:
    """First line a version command prints (nginx -v writes to stderr, wrk --version exits 1)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _meminfo_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def describe_machine(pg: TemporaryPostgres) -> Machine:
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=_cpu_model(),
        memory=_meminfo_total(),
        kernel=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        nginx=_output(["nginx", "-v"]).removeprefix("nginx version: "),
        wrk=_output(["wrk", "--version"]).split(" Copyright")[0],
        h2load=_output(["h2load", "--version"]),
        postgresql=_output([str(pg.bindir / "postgres"), "--version"]),
        sqlite=sqlite3.sqlite_version,
    )
