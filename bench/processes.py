"""The processes the bench starts, each in a process group of its own and none outliving it, and
what /proc says of the CPU time and memory of a group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from tests.support.postgres import TemporaryPostgres

START_TIMEOUT = 30
STOP_TIMEOUT = 60


class BenchError(Exception):
    """The bench itself could not run a step (a server did not start, wrk failed)."""


def _signal(child: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


class Processes:
    """Every child runs in a process group of its own, out of reach of the terminal's Ctrl-C;
    on exit whatever is still running is killed, group and all, so nothing outlives the bench."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self._children:
            _signal(child, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()

    def _popen(
        self, args: Sequence[str], stdout: TextIO | int, stderr: TextIO | int
    ) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        self._children.append(child)
        return child

    def start(self, args: Sequence[str], log: Path) -> subprocess.Popen[str]:
        """Start a server in the background, its output going to ``log``."""
        with log.open("a") as out:
            return self._popen(args, out, subprocess.STDOUT)

    def stop(self, child: subprocess.Popen[str], sig: int) -> int | None:
        """Send ``sig`` and wait; kill the group if it lingers. The exit code, None if killed."""
        _signal(child, sig)
        try:
            code: int | None = child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        _signal(child, signal.SIGKILL)  # anything left in its group
        child.wait()
        self._children.remove(child)
        return code

    def run(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command to its end, capturing its output."""
        return self.run_all([args], timeout)[0]

    def run_all(
        self, commands: Sequence[Sequence[str]], timeout: float
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run commands side by side, each to its end, capturing their output."""
        children = [self._popen(args, subprocess.PIPE, subprocess.PIPE) for args in commands]
        deadline = time.monotonic() + timeout
        done = []
        try:
            for child in children:
                out, err = child.communicate(timeout=max(0.0, deadline - time.monotonic()))
                done.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        finally:
            for child in children:
                if child.poll() is None:
                    _signal(child, signal.SIGKILL)
                    child.wait()
                self._children.remove(child)
        return done


def wait_until_up(name: str, url: str, child: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{name} exited ({child.returncode}):\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{name} did not answer {url} in {START_TIMEOUT} s:\n{tail(log)}")


def read_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(read_lines(path)[-lines:]) or "(no log)"


# ── CPU and memory ───────────────────────────────────────────────────────────────────────────


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Each live process: its id and the fields of its /proc/PID/stat after the command name
    (state, ppid, pgrp, …, utime, stime, cutime, cstime at 11 to 14)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile


def _cpu_ticks(fields: Sequence[str], *, ended_children: bool = False) -> int:
    """User + system time of a process; with its children that ended and were waited for."""
    return sum(int(f) for f in fields[11 : 15 if ended_children else 13])


def group_cpu_seconds(group: int) -> float:
    """CPU time (user + system) used so far by the live processes of a process group."""
    return sum(_cpu_ticks(f) for _, f in _processes() if int(f[2]) == group) / CLOCK_TICKS


def postgres_cpu_seconds(pg: TemporaryPostgres) -> float:
    """CPU time used so far by the PostgreSQL server: the postmaster with the backends and
    background processes it has ended, and those it runs now (its children)."""
    postmaster = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
    return (
        sum(
            _cpu_ticks(f, ended_children=pid == postmaster)
            for pid, f in _processes()
            if postmaster in (pid, int(f[1]))
        )
        / CLOCK_TICKS
    )


def group_rss_kib(group: int) -> int:
    """Resident memory (VmRSS) of the live processes of a process group, in KiB."""
    total = 0
    for pid, fields in _processes():
        if int(fields[2]) == group:
            with contextlib.suppress(OSError):  # it ended meanwhile
                status = Path(f"/proc/{pid}/status").read_text()
                if rss := re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE):
                    total += int(rss[1])
    return total
