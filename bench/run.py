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

The load generators and what they say are in bench/load.py.
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import http.server
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any, ClassVar, TextIO

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from load import (  # noqa: E402 (bench/, beside this script)
    PACED_RATE_PER_CONNECTION,
    Load,
    h2load_command,
    merge,
    paced_connections,
    parse_h2load,
    parse_wrk,
    wrk_command,
)
from tests.support.postgres import TemporaryPostgres  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from tests.support.upstream import Upstream as UpstreamServer  # noqa: E402


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"{name} must be a positive integer, got {value!r}")
    return int(value)


THREADS = 2
CONNECTIONS = 64
SECONDS = _env_int("BENCH_SECONDS", 10)
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "")  # an smtp:// URL; default: the tests' server
WARMUP_SECONDS = 2
ROUNDS = _env_int("BENCH_ROUNDS", 3)
REPLAY_LINES = _env_int("BENCH_REPLAY_LINES", 200_000)
REPLAY_BATCHES = 4  # POSTs of REPLAY_RECIPIENTS each: a few hundred messages to hit
REPLAY_RECIPIENTS = 100
TARGET_RATIO = 0.3  # mailbeacon's pixel at ≥ 0.3× nginx's log-based pixel, on one node
TARGET_HALF_LOAD_P99_MS = 20  # p99 under 20 ms at half of the peak rate
TARGET_REPLAY_RATE = 20_000  # hits/s

START_TIMEOUT = 30
STOP_TIMEOUT = 60
MAILBEACON = (sys.executable, "-m", "mailbeacon")
NGINX_TEMPLATE = Path(__file__).with_name("nginx.conf.template")
BENCHMARKS = REPO / "BENCHMARKS.md"
HTML = '<html><body><p>Hello</p><a href="https://example.test/">x</a></body></html>'
# Error lines in a server's log: nginx's levels from error up, Python's ERROR and CRITICAL;
# and the last line of a Python traceback, which names the exception.
LOG_ERROR = re.compile(r"\[(error|crit|alert|emerg|ERROR|CRITICAL)\]|\s(ERROR|CRITICAL)\s")
EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b")

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Barracuda Sentinel (EE)",
)


class BenchError(Exception):
    """The bench itself could not run a step (a server did not start, wrk failed)."""


# ── Results ──────────────────────────────────────────────────────────────────────────────────


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


@dataclass(frozen=True)
class Round:
    """One measured run of one scenario."""

    load: Load
    recorded: int  # hits (nginx: access log lines) written during the measured run
    cpu_seconds: float  # CPU (user + system) of the servers' process groups during the run
    db_cpu_seconds: float  # of PostgreSQL's processes during the run; 0 without PostgreSQL
    log_errors: int  # error lines in the servers' logs, whole run
    exceptions: Counter[str]  # exceptions named in their tracebacks
    exit_code: int | None  # how the servers exited when asked to stop; None: one was killed

    @property
    def complete(self) -> bool:
        return self.recorded >= self.load.answered

    def per_million_hits(self, cpu_seconds: float) -> float:
        """CPU seconds a million hits answered (the same figure as µs a hit)."""
        return cpu_seconds / max(self.load.answered, 1) * 1e6


@dataclass(frozen=True)
class Setup:
    """How a load scenario runs."""

    label: str
    store: str  # "nginx" (the reference), "sqlite" or "postgresql"
    nodes: int = 1  # `mailbeacon serve` processes on the same database
    people: bool = False  # every hit a person's open, which notifies
    half_of: str | None = None  # paced at half the rate this scenario reached in the round


# The load scenarios, in the order each round runs them.
SCENARIOS = {
    "nginx": Setup("nginx `empty_gif` + access log (reference)", "nginx"),
    "sqlite": Setup("mailbeacon on SQLite", "sqlite"),
    "sqlite-half": Setup("mailbeacon on SQLite, at half its peak", "sqlite", half_of="sqlite"),
    "postgresql": Setup("mailbeacon on PostgreSQL", "postgresql"),
    "postgresql-half": Setup(
        "mailbeacon on PostgreSQL, at half its peak", "postgresql", half_of="postgresql"
    ),
    "sqlite-2": Setup("mailbeacon, two nodes on one SQLite file", "sqlite", nodes=2),
    "postgresql-2": Setup(
        "mailbeacon, two nodes on one PostgreSQL database", "postgresql", nodes=2
    ),
    "people": Setup(
        "mailbeacon on SQLite, every hit a person's open (each one notifies)", "sqlite", people=True
    ),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Setup
    rounds: list[Round]
    ratios: list[float]  # requests/s over nginx's in the same round

    @property
    def label(self) -> str:
        return self.setup.label

    def cost(self) -> str:
        """Median CPU seconds a million hits: the servers', and PostgreSQL's when it is used."""
        server = statistics.median(r.per_million_hits(r.cpu_seconds) for r in self.rounds)
        if self.setup.store != "postgresql":
            return f"{server:.1f}"
        db = statistics.median(r.per_million_hits(r.db_cpu_seconds) for r in self.rounds)
        return f"{server + db:.1f} ({server:.1f} + PostgreSQL {db:.1f})"

    def median(self, metric: Callable[[Load], float]) -> float:
        return statistics.median(metric(r.load) for r in self.rounds)

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.rounds)


@dataclass(frozen=True)
class Replay:
    database: str
    lines: int  # lines written to the file
    read: int  # lines `mailbeacon replay` reports it read
    recorded: int
    bad: int
    stored: int  # rows in `hits` afterwards
    seconds: float  # wall clock of the whole command

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds

    @property
    def complete(self) -> bool:
        return self.read == self.recorded == self.stored == self.lines and self.bad == 0


# ── Processes ────────────────────────────────────────────────────────────────────────────────


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


def _wait_until_up(name: str, url: str, child: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{name} exited ({child.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{name} did not answer {url} in {START_TIMEOUT} s:\n{_tail(log)}")


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_lines(path)[-lines:]) or "(no log)"


# ── The machine ──────────────────────────────────────────────────────────────────────────────


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


# ── Load ─────────────────────────────────────────────────────────────────────────────────────

Drive = Callable[["Subject", int], Load]  # puts load on a subject for so many seconds


def _generate(procs: Processes, commands: Sequence[Sequence[str]], seconds: int) -> list[str]:
    """Run load generators side by side (one per node); what each printed."""
    outputs = []
    for done in procs.run_all(commands, timeout=seconds + 60):
        if done.returncode != 0:
            raise BenchError(
                f"{done.args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}"
            )
        outputs.append(done.stdout)
    return outputs


def _wrk_commands(
    urls: Sequence[str], seconds: int, headers: Sequence[str] = ()
) -> list[list[str]]:
    nodes = len(urls)
    return [
        wrk_command(
            url,
            threads=max(1, THREADS // nodes),
            connections=CONNECTIONS // nodes,
            seconds=seconds,
            headers=headers,
        )
        for url in urls
    ]


def _h2load_commands(
    urls: Sequence[str],
    logs: Sequence[Path],
    rate: float,
    seconds: int,
    headers: Sequence[str] = (),
) -> list[list[str]]:
    share = rate / len(urls)
    connections = paced_connections(share, CONNECTIONS // len(urls))
    return [
        h2load_command(
            url, rate=share, connections=connections, seconds=seconds, log=log, headers=headers
        )
        for url, log in zip(urls, logs, strict=True)
    ]


PIXEL = "http://127.0.0.1:$PORT/o/$TOKEN.gif"  # what the commands in the report aim at
H2LOAD_LOG = Path("h2load.log")


def shown(commands: Sequence[Sequence[str]]) -> str:
    """Commands as the report shows them: run at once (&), paths relative to the repository."""
    return " & ".join(shlex.join(c) for c in commands).replace(f"{REPO}/", "")


def flat_out(procs: Processes, subject: Subject, seconds: int) -> Load:
    """wrk as fast as the server answers. With several nodes, one wrk for each at once, with its
    share of the connections and of the threads: no load balancer in front, which would take
    CPU from the two cores that the nodes and wrk already share."""
    commands = _wrk_commands(subject.urls, seconds, subject.headers)
    try:
        return merge([parse_wrk(output) for output in _generate(procs, commands, seconds)])
    except ValueError as exc:
        raise BenchError(str(exc)) from exc


def paced(procs: Processes, rate: float, subject: Subject, seconds: int) -> Load:
    """``rate`` requests a second (h2load: see bench/load.py for why), shared by the nodes."""
    logs = [server.log.with_suffix(".h2load") for server in subject.servers]
    commands = _h2load_commands(subject.urls, logs, rate, seconds, subject.headers)
    share = rate / len(subject.urls)
    try:
        outputs = _generate(procs, commands, seconds)
        return merge(
            [parse_h2load(output, log, share) for output, log in zip(outputs, logs, strict=True)]
        )
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    finally:
        for log in logs:
            log.unlink(missing_ok=True)  # a line a request: ~170 MB in a soak


# ── Servers ──────────────────────────────────────────────────────────────────────────────────


@dataclass
class Server:
    """A server while it runs; once stopped, how it exited (None: it had to be killed)."""

    base: str
    log: Path
    group: int = 0  # its process group: the server and any workers it starts
    exit_code: int | None = None


@dataclass(frozen=True)
class Subject:
    """What the load generator aims at (one URL a node), and how to count what the servers have
    recorded so far."""

    servers: Sequence[Server]
    urls: Sequence[str]  # the same resource on each server
    count: Callable[[], int]
    headers: Sequence[str] = ()  # sent with every request


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


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def count_hits(db: str) -> int:
    """Rows in ``hits``; SQLite's WAL lets this read while the server writes."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT COUNT(*) FROM hits").fetchone()
    else:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            row = conn.execute("SELECT COUNT(*) FROM hits").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def nginx(procs: Processes, workdir: Path) -> Iterator[Subject]:
    """nginx serving ``empty_gif`` at /o/x.gif, one worker, access log in ``workdir``."""
    workdir.mkdir(parents=True)
    port = free_port()
    config = workdir / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    template = Template(NGINX_TEMPLATE.read_text())
    config.write_text(template.substitute(dir=workdir, port=port, user=user))
    server = Server(f"http://127.0.0.1:{port}", workdir / "error.log")
    args = ["nginx", "-p", str(workdir), "-c", str(config), "-e", str(server.log)]
    child = procs.start(args, workdir / "stderr.log")
    server.group = child.pid
    try:
        _wait_until_up("nginx", server.base + "/o/x.gif", child, workdir / "stderr.log")
        yield Subject(
            [server], [server.base + "/o/x.gif"], lambda: _count_lines(workdir / "access.log")
        )
    finally:
        server.exit_code = procs.stop(child, signal.SIGQUIT)  # SIGQUIT: graceful shutdown


def _flags(data: Path, db: str | None) -> list[str]:
    return ["--data", str(data), *(["--db", db] if db else [])]


BENCH_PASSWORD = "bench-password-for-the-dashboard"  # noqa: S105 (a throwaway user's)


def add_user(procs: Processes, data: Path, db: str | None) -> str:
    """A user's API key, made before the server starts (same --data and --db); the user signs
    in to the dashboard with ``BENCH_PASSWORD``."""
    data.mkdir(parents=True, exist_ok=True)
    args = [*MAILBEACON, "users", "add", "bench@example.test", "--json", *_flags(data, db)]
    args += ["--password", BENCH_PASSWORD]
    done = procs.run(args, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"`mailbeacon users add` failed: {done.stderr}{done.stdout}")
    return str(json.loads(done.stdout)["api_key"])


@contextlib.contextmanager
def mailbeacon(
    procs: Processes, data: Path, db: str | None, extra: Sequence[str] = ()
) -> Iterator[Server]:
    """``mailbeacon serve`` on a free loopback port, stopped with SIGINT."""
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", data / "serve.log")
    args = [*MAILBEACON, "serve", "--listen", f"127.0.0.1:{port}", *_flags(data, db), *extra]
    child = procs.start(args, server.log)
    server.group = child.pid
    try:
        _wait_until_up("mailbeacon serve", server.base + "/healthz", child, server.log)
        yield server
    finally:
        server.exit_code = procs.stop(child, signal.SIGINT)


def register(
    server: Server, key: str, recipients: Sequence[str], sent_at: str | None = None
) -> list[dict[str, Any]]:
    """One message per recipient, through the API."""
    body = {"from": "bench@example.test", "to": list(recipients), "subject": "bench", "html": HTML}
    if sent_at is not None:
        body["sent_at"] = sent_at
    request = urllib.request.Request(
        server.base + "/api/v1/messages",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            messages: list[dict[str, Any]] = json.load(response)["messages"]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST /api/v1/messages: {exc.code} {exc.read()!r}") from exc
    return messages


@contextlib.contextmanager
def pixel(
    procs: Processes, data: Path, db: str | None, *, people: bool = False, nodes: int = 1
) -> Iterator[Subject]:
    """mailbeacon serving the pixel of one registered message, on ``nodes`` servers that share
    the secret and the database (the first one's SQLite file unless ``db``). The requests carry no
    User-Agent and come from where the message was registered: machine or self opens, which
    notify nobody. With ``people``, each is Thunderbird behind a trusted proxy a day after
    sending: a person's open, published as an event (the hit outbox, then the notifier)."""
    key = add_user(procs, data, db)
    extra = ["--trusted-proxies", "127.0.0.1/32"] if people else []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(mailbeacon(procs, data, db, extra))]
        for n in range(2, nodes + 1):
            # A node of its own data directory (its spool), the first one's secret and database.
            own = data / f"node{n}"
            own.mkdir()
            shutil.copy2(data / "secret", own / "secret")
            servers.append(stack.enter_context(mailbeacon(procs, own, db or _sqlite(data), extra)))
        sent_at = (datetime.now(UTC) - timedelta(days=1)).isoformat() if people else None
        message = register(servers[0], key, ["reader@example.test"], sent_at)[0]
        path = message["pixel_url"].removeprefix(servers[0].base)
        headers = [f"User-Agent: {THUNDERBIRD}", "X-Forwarded-For: 203.0.113.7"] if people else []
        yield Subject(
            servers,
            [server.base + path for server in servers],
            lambda: count_hits(db or _sqlite(data)),
            headers,
        )


def _sqlite(data: Path) -> str:
    return str(data / "mailbeacon.db")


# ── Rounds ───────────────────────────────────────────────────────────────────────────────────


def _exceptions(log: Sequence[str]) -> Counter[str]:
    """The exceptions that end the log's tracebacks, by class name."""
    named = (EXCEPTION.match(line) for line in log)
    return Counter(m[1].rsplit(".", 1)[-1] for m in named if m)


def _cpu_seconds(subject: Subject, pg: TemporaryPostgres | None) -> tuple[float, float]:
    """CPU used so far by the servers, and by PostgreSQL (0 without)."""
    servers = sum(group_cpu_seconds(server.group) for server in subject.servers)
    return servers, postgres_cpu_seconds(pg) if pg else 0.0


def measure(
    procs: Processes,
    scenario: contextlib.AbstractContextManager[Subject],
    drive: Drive,
    pg: TemporaryPostgres | None = None,
    seconds: int = SECONDS,
) -> Round:
    """Warm up, count, load for ``seconds``, stop the servers, count again. ``pg``: the server
    of the scenario's database, whose CPU is counted too."""
    with scenario as subject:
        drive(subject, WARMUP_SECONDS)
        before = subject.count()
        cpu_before = _cpu_seconds(subject, pg)
        load = drive(subject, seconds)
        cpu, db_cpu = (a - b for a, b in zip(_cpu_seconds(subject, pg), cpu_before, strict=True))
    log = [line for server in subject.servers for line in _lines(server.log)]
    codes = [server.exit_code for server in subject.servers]
    return Round(
        load=load,
        recorded=subject.count() - before,
        cpu_seconds=cpu,
        db_cpu_seconds=db_cpu,
        log_errors=sum(1 for line in log if LOG_ERROR.search(line)),
        exceptions=_exceptions(log),
        exit_code=None if None in codes else next((c for c in codes if c), 0),
    )


def run_round(procs: Processes, pg: TemporaryPostgres, workdir: Path, n: int) -> dict[str, Round]:
    results: dict[str, Round] = {}
    for name, setup in SCENARIOS.items():
        where = workdir / name
        db = pg.create_database(f"round{n}-{name}") if setup.store == "postgresql" else None
        scenario = (
            nginx(procs, where)
            if setup.store == "nginx"
            else pixel(procs, where, db, people=setup.people, nodes=setup.nodes)
        )
        drive: Drive = (
            functools.partial(paced, procs, results[setup.half_of].load.rate / 2)
            if setup.half_of
            else functools.partial(flat_out, procs)
        )
        result = results[name] = measure(procs, scenario, drive, pg if db else None)
        load = result.load
        print(
            f"  round {n}/{ROUNDS} {name:<15} {load.rate:>9,.0f} req/s  "
            f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:7.2f} ms  "
            f"answered {load.answered:,}, recorded {result.recorded:,}",
            flush=True,
        )
    shutil.rmtree(workdir, ignore_errors=True)  # nginx's access log alone is ~100 MB a round
    return results


def collect(rounds: list[dict[str, Round]]) -> list[Scenario]:
    reference = [r["nginx"].load.rate for r in rounds]
    return [
        Scenario(
            name,
            setup,
            [r[name] for r in rounds],
            [r[name].load.rate / ref for r, ref in zip(rounds, reference, strict=True)],
        )
        for name, setup in SCENARIOS.items()
    ]


# ── Soak ─────────────────────────────────────────────────────────────────────────────────────

SOAK_SECONDS = _env_int("BENCH_SOAK_SECONDS", 600)
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
            f"{_yes(run.run.complete)} (hits {run.run.recorded:,} "
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
        f"`{shown(_h2load_commands([PIXEL], [H2LOAD_LOG], load.offered or 0, SOAK_SECONDS))}`, "
        f"the resident memory of `mailbeacon serve` (VmRSS in /proc/PID/status, all the "
        f"processes of its group) sampled every {SOAK_EVERY} s. Target: flat, the last "
        f"minute's median no more than {TARGET_SOAK_GROWTH:.0%} above the first minute's.",
        "",
        *_table(
            ["offered req/s", "answered req/s", "p50", "p99", "CPU s a million hits", "recorded"],
            rows,
        ),
        "",
        *_table(["RSS first", "min", "median", "max", "last", "growth (minute medians)"], memory),
        "",
        f"Median RSS minute by minute (MiB): {', '.join(by_minute)}.",
    ]


def soak_warnings(run: Soak) -> list[str]:
    found = _round_warnings("soak", run.run)
    if run.growth > TARGET_SOAK_GROWTH:
        found.append(
            f"soak: resident memory grew {run.growth:.1%} from the first minute to the last, "
            f"over the {TARGET_SOAK_GROWTH:.0%} target"
        )
    return found


# ── Replay ───────────────────────────────────────────────────────────────────────────────────


def write_hits(path: Path, messages: Sequence[dict[str, Any]], lines: int) -> None:
    """Opens (mostly) and clicks of the registered messages from varied clients, 1 ms apart."""
    rng = random.Random(7151)
    start = datetime.now(UTC) + timedelta(minutes=1)
    ips = (
        *(f"198.51.100.{i}" for i in range(1, 255)),
        *(f"203.0.113.{i}" for i in range(1, 255)),
        *(f"66.249.84.{i}" for i in range(1, 255)),
        *(f"2001:db8::{i:x}" for i in range(1, 255)),
    )
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            message = rng.choice(messages)
            is_click = rng.random() < 0.25
            url = message["links"][0]["tracked_url"] if is_click else message["pixel_url"]
            hit = {
                "time": (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
                "method": "HEAD" if rng.random() < 0.02 else "GET",
                "url": url,
                "ip": rng.choice(ips),
                "headers": {"User-Agent": rng.choice(USER_AGENTS), "Accept": "image/*"},
            }
            out.write(json.dumps(hit) + "\n")


def replay(procs: Processes, data: Path, db: str | None, lines: int) -> Replay:
    """Register a few hundred messages, write ``lines`` hits of them, time `mailbeacon replay`."""
    key = add_user(procs, data, db)
    with mailbeacon(procs, data, db) as server:
        messages = [
            message
            for batch in range(REPLAY_BATCHES)
            for message in register(
                server, key, [f"r{batch}-{i}@example.test" for i in range(REPLAY_RECIPIENTS)]
            )
        ]
    hits = data / "hits.jsonl"
    write_hits(hits, messages, lines)
    started = time.monotonic()
    done = procs.run([*MAILBEACON, "replay", str(hits), "--json", *_flags(data, db)], 3600)
    seconds = time.monotonic() - started
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"`mailbeacon replay` failed ({done.returncode}): {done.stderr}") from exc
    return Replay(
        database="PostgreSQL" if db else "SQLite",
        lines=lines,
        read=report["lines"],
        recorded=report["recorded"],
        bad=report["bad"],
        stored=count_hits(db or _sqlite(data)),
        seconds=seconds,
    )


# ── Campaign ─────────────────────────────────────────────────────────────────────────────────

CAMPAIGN_RECIPIENTS = _env_int("BENCH_CAMPAIGN_RECIPIENTS", 2000)
CAMPAIGN_LINKS = 300  # link tags in the template, to 150 distinct URLs
TARGET_CAMPAIGN_RATE = 200  # messages/s instrumented and queued
DELIVERY_TIMEOUT = 600  # seconds for `serve` to hand the whole campaign upstream


@dataclass(frozen=True)
class Campaign:
    recipients: int
    html_bytes: int  # the template
    queued: int  # what `mailbeacon send` reports
    stored: int  # rows in `outbound` afterwards
    seconds: float  # wall clock of the whole command
    delivered: int  # accepted by the loopback upstream
    delivery_seconds: float  # from `serve` starting to the last one accepted

    @property
    def rate(self) -> float:
        return self.queued / self.seconds

    @property
    def delivery_rate(self) -> float:
        return self.delivered / self.delivery_seconds if self.delivery_seconds else 0.0

    @property
    def complete(self) -> bool:
        return self.queued == self.stored == self.recipients == self.delivered


def write_campaign(workdir: Path, recipients: int) -> tuple[Path, Path, int]:
    """A ~100 KB newsletter (a personal greeting, CAMPAIGN_LINKS links, an unsubscribe link)
    and a list of ``recipients``; the template's size."""
    rows = ["<tr><td><p>Dear {{ name }}, this week in {{ city }}:</p></td></tr>"]
    for i in range(CAMPAIGN_LINKS):
        rows.append(
            f'<tr><td class="item" style="padding:8px;font:14px/1.4 Arial,sans-serif">'
            f"<h3>Offer {i}</h3><p>{'A few words about this offer, and more. ' * 3}"
            f'</p><a href="https://shop.example.test/item/{i % 150}?utm_source=news&amp;'
            f'utm_medium=email&amp;utm_campaign=bench">See offer {i}</a></td></tr>\n'
        )
    html = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>News</title>'
        '<style>td{color:#333}</style></head><body><table width="100%">'
        + "".join(rows)
        + '<tr><td><a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr></table></body></html>'
    )
    workdir.mkdir(parents=True, exist_ok=True)
    template, listing = workdir / "campaign.html", workdir / "list.csv"
    template.write_text(html, encoding="utf-8")
    with listing.open("w", encoding="utf-8") as out:
        out.write("email,name,city\n")
        for i in range(recipients):
            out.write(f"reader{i}@example.test,Reader {i},City {i % 50}\n")
    return template, listing, len(html.encode())


def _count_outbound(db: str, state: str | None = None) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        if state is None:
            row = conn.execute("SELECT COUNT(*) FROM outbound").fetchone()
        else:
            row = conn.execute("SELECT COUNT(*) FROM outbound WHERE state = ?", (state,)).fetchone()
    return int(row[0]) if row else 0


def campaign(procs: Processes, data: Path, recipients: int) -> Campaign:
    """Time `mailbeacon send` of a campaign on SQLite, then `serve` handing it to a loopback
    SMTP server (tests/support/upstream.py: aiosmtpd, every message written to a Maildir)."""
    add_user(procs, data, None)
    template, listing, html_bytes = write_campaign(data / "campaign", recipients)
    args = [*MAILBEACON, "send", "--campaign", "bench", "--from", "News <news@example.test>"]
    args += ["--subject", "{{ name }}, this week in {{ city }}", "--template", str(template)]
    args += ["--to", str(listing), "--user", "bench@example.test", "--json", *_flags(data, None)]
    started = time.monotonic()
    done = procs.run(args, 3600)
    seconds = time.monotonic() - started
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"`mailbeacon send` failed ({done.returncode}): {done.stderr}") from exc
    db = _sqlite(data)
    # Two processes: one would take at most ~160 copies of 158 KB a second here, less than
    # what is being measured. BENCH_UPSTREAM names another server instead (a local Postfix).
    with contextlib.ExitStack() as stack:
        url = UPSTREAM or stack.enter_context(UpstreamServer(data, processes=2)).url
        port = free_port()
        log = data / "serve-upstream.log"
        serve = [*MAILBEACON, "serve", "--listen", f"127.0.0.1:{port}", "--upstream", url]
        started = time.monotonic()
        child = procs.start([*serve, *_flags(data, None)], log)
        try:
            _wait_until_up("mailbeacon serve", f"http://127.0.0.1:{port}/healthz", child, log)
            deadline = started + DELIVERY_TIMEOUT
            while (delivered := _count_outbound(db, "sent")) < report["queued"]:
                if time.monotonic() > deadline or child.poll() is not None:
                    break
                time.sleep(0.05)
            delivery_seconds = time.monotonic() - started
        finally:
            procs.stop(child, signal.SIGINT)
    return Campaign(
        recipients, html_bytes, report["queued"], _count_outbound(db), seconds, delivered,
        delivery_seconds,
    )  # fmt: skip


def campaign_report(run: Campaign) -> list[str]:
    rows = [
        [
            "`mailbeacon send` (render, instrument, queue)",
            f"{run.queued:,} of {run.recipients:,}",
            f"{run.seconds:.1f} s",
            f"{run.rate:,.0f}",
        ],
        [
            "`mailbeacon serve --upstream` (to a loopback SMTP server)",
            f"{run.delivered:,} of {run.queued:,}",
            f"{run.delivery_seconds:.1f} s",
            f"{run.delivery_rate:,.0f}",
        ],
    ]
    return [
        "## Campaigns",
        "",
        f"`mailbeacon send` of a {run.html_bytes / 1000:.0f} KB HTML template with "
        f"{CAMPAIGN_LINKS} links (150 distinct) and a personal greeting to {run.recipients:,} "
        "recipients on SQLite, timed as a whole command (start-up included): each copy is "
        "rendered, instrumented (pixel, tracked links), composed, registered and queued. Then "
        "`mailbeacon serve` with `--upstream` at "
        + (
            f"`{UPSTREAM}` (`BENCH_UPSTREAM`)"
            if UPSTREAM
            else "a loopback aiosmtpd server (two processes) that writes each message to a Maildir"
        )
        + ", timed from its start to the last copy accepted. "
        f"Target: ≥ {TARGET_CAMPAIGN_RATE} messages/s.",
        "",
        *_table(["step", "messages", "wall clock", "messages/s"], rows),
    ]


def campaign_warnings(run: Campaign) -> list[str]:
    found = []
    if run.rate < TARGET_CAMPAIGN_RATE:
        found.append(
            f"campaign: {run.rate:,.0f} messages/s queued, "
            f"below the {TARGET_CAMPAIGN_RATE}/s target"
        )
    if not run.complete:
        found.append(
            f"campaign: {run.queued:,} queued, {run.stored:,} in the queue and {run.delivered:,} "
            f"delivered of {run.recipients:,} recipients"
        )
    return found


# ── Notifications ────────────────────────────────────────────────────────────────────────────

NOTIFY_HITS = _env_int("BENCH_NOTIFY_HITS", 200)  # opens, then as many clicks
NOTIFY_SPACING = 0.05  # seconds between hits: a busy sender's traffic, not a load test
TARGET_NOTIFY_P95 = 2.0  # seconds from a clear hit to its webhook
NOTIFY_TIMEOUT = 60  # seconds to wait for the last webhook
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint that notes when each event arrived, by the hit it is about."""

    arrived: ClassVar[dict[tuple[str, str], float]] = {}  # (message id, kind) → when

    def do_POST(self) -> None:
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["data"]
        self.arrived.setdefault((data["message_id"], data["kind"]), time.time())
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Latency:
    kind: str  # "open" | "click"
    sent: int
    delays: list[float]  # seconds, hit answered → webhook received

    def quantile(self, q: float) -> float:
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.inf


def _api(server: Server, key: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        server.base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def notify_latency(procs: Processes, data: Path) -> list[Latency]:
    """Hits long after sending (a known mail client: a clear verdict) one at a time, each timed
    from its answer to its webhook's arrival at a loopback receiver; SQLite."""
    key = add_user(procs, data, None)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    extra = ["--allow-private-webhooks", "--trusted-proxies", "127.0.0.1/32"]
    try:
        with mailbeacon(procs, data, None, extra) as server:
            hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            _api(
                server,
                key,
                "/api/v1/webhooks",
                {"url": hook, "events": ["email.opened", "email.clicked"]},
            )
            recipients = [f"reader{i}@example.test" for i in range(NOTIFY_HITS)]
            body = {
                "from": "bench@example.test", "to": recipients, "subject": "bench", "html": HTML,
                "sent_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            }  # fmt: skip
            messages = _api(server, key, "/api/v1/messages", body)["messages"]
            answered: dict[tuple[str, str], float] = {}
            for kind in ("open", "click"):
                for n, m in enumerate(messages):
                    url = m["pixel_url"] if kind == "open" else m["links"][0]["tracked_url"]
                    ip = f"198.51.100.{n % 250}"
                    request = urllib.request.Request(
                        url, headers={"User-Agent": THUNDERBIRD, "X-Forwarded-For": ip}
                    )
                    with contextlib.suppress(urllib.error.HTTPError):  # a click's redirect
                        urllib.request.build_opener(_NoRedirect).open(request, timeout=10).read()
                    answered[m["id"], kind] = time.time()
                    time.sleep(NOTIFY_SPACING)
            deadline = time.monotonic() + NOTIFY_TIMEOUT
            while len(_Receiver.arrived) < len(answered) and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        receiver.shutdown()
    arrived = dict(_Receiver.arrived)
    return [
        Latency(
            kind,
            sum(1 for k in answered if k[1] == kind),
            [arrived[k] - t for k, t in answered.items() if k[1] == kind and k in arrived],
        )
        for kind in ("open", "click")
    ]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def latency_report(runs: Sequence[Latency]) -> list[str]:
    rows = [
        [
            f"{r.kind}s",
            f"{len(r.delays):,} of {r.sent:,}",
            f"{statistics.median(r.delays):.2f} s" if r.delays else "—",
            f"{r.quantile(0.95):.2f} s",
            f"{max(r.delays, default=math.inf):.2f} s",
        ]
        for r in runs
    ]
    return [
        "## Notifications",
        "",
        f"{NOTIFY_HITS} opens (Thunderbird, a day after sending: a clear verdict), then as many "
        f"clicks, one every {NOTIFY_SPACING * 1000:.0f} ms, each timed from its answer to the "
        "arrival of its signed `email.opened` or `email.clicked` webhook at a loopback receiver; "
        "`mailbeacon serve` on SQLite. A click waits for the sweep check (about 1.5 s) by design. "
        f"Target: p95 ≤ {TARGET_NOTIFY_P95:.0f} s for opens.",
        "",
        *_table(["hits", "notified", "p50", "p95", "max"], rows),
    ]


def latency_warnings(runs: Sequence[Latency]) -> list[str]:
    found = []
    for r in runs:
        if len(r.delays) < r.sent:
            found.append(f"notifications: {len(r.delays)} of {r.sent} {r.kind}s notified")
    opens = next(r for r in runs if r.kind == "open")
    if opens.quantile(0.95) > TARGET_NOTIFY_P95:
        found.append(
            f"notifications: p95 {opens.quantile(0.95):.2f} s from an open to its webhook, "
            f"above the {TARGET_NOTIFY_P95:.0f} s target"
        )
    return found


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


# ── Dashboard ────────────────────────────────────────────────────────────────────────────────

DASHBOARD_RECIPIENTS = _env_int("BENCH_DASHBOARD_RECIPIENTS", 100_000)
DASHBOARD_HITS = _env_int("BENCH_DASHBOARD_HITS", 150_000)
DASHBOARD_BATCH = 1000  # recipients a POST /api/v1/messages
DASHBOARD_TIMES = 5  # requests a page; the median is reported
TARGET_PAGE_MS = 300


@dataclass(frozen=True)
class PageTime:
    path: str
    status: int
    times_ms: list[float]

    @property
    def median(self) -> float:
        """Of the requests after the first (which may compute what the others reuse)."""
        return statistics.median(self.times_ms[1:])


@dataclass(frozen=True)
class Dashboard:
    pages: list[PageTime]
    keeper_seconds: float  # what computing the large campaign's figures took


def _signed_in(base: str) -> urllib.request.OpenerDirector:
    """An opener that carries a signed-in session of the bench user."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    form = urllib.parse.urlencode({"email": "bench@example.test", "password": BENCH_PASSWORD})
    request = urllib.request.Request(
        base + "/login", data=form.encode(), headers={"Origin": base}, method="POST"
    )
    with contextlib.suppress(urllib.error.HTTPError):  # the 303 to /
        opener.open(request, timeout=60).read()
    if not any(c.name == "mb_session" for c in jar):
        raise BenchError("the bench user could not sign in to the dashboard")
    return opener


def dashboard(procs: Processes, data: Path) -> Dashboard:
    """A campaign of DASHBOARD_RECIPIENTS with DASHBOARD_HITS hits (replayed), then each page
    requested DASHBOARD_TIMES times by a signed-in user; SQLite."""
    key = add_user(procs, data, None)
    with mailbeacon(procs, data, None) as server:
        sent_at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        messages: list[dict[str, Any]] = []
        for start in range(0, DASHBOARD_RECIPIENTS, DASHBOARD_BATCH):
            count = min(DASHBOARD_BATCH, DASHBOARD_RECIPIENTS - start)
            recipients = [f"reader{start + i}@example.test" for i in range(count)]
            body = {"from": "bench@example.test", "to": recipients, "subject": "Big news",
                    "html": HTML, "campaign": "big", "sent_at": sent_at}  # fmt: skip
            messages += _api(server, key, "/api/v1/messages", body)["messages"]
    hits = data / "hits.jsonl"
    write_hits(hits, messages[: DASHBOARD_RECIPIENTS * 6 // 10], DASHBOARD_HITS)
    done = procs.run([*MAILBEACON, "replay", str(hits), "--json", *_flags(data, None)], 3600)
    if done.returncode != 0:
        raise BenchError(f"`mailbeacon replay` failed: {done.stderr}")
    paths = [
        "/", "/messages", "/messages?state=not_opened", "/messages?state=machine_only",
        "/messages?q=reader99999", f"/messages/{messages[0]['id']}", "/campaigns",
        "/campaigns/big", "/settings",
    ]  # fmt: skip
    started = time.time()
    with mailbeacon(procs, data, None) as server:
        keeper_seconds = _kept_figures(_sqlite(data), "big", started)
        opener = _signed_in(server.base)
        timed = []
        for path in paths:
            times, status = [], 0
            for _ in range(DASHBOARD_TIMES):
                started = time.perf_counter()
                with opener.open(server.base + path, timeout=120) as response:
                    response.read()
                    status = response.status
                times.append((time.perf_counter() - started) * 1000)
            timed.append(PageTime(path, status, times))
    return Dashboard(timed, keeper_seconds)


def _kept_figures(db: str, campaign: str, started: float) -> float:
    """Wait until ``serve``'s background keeper has computed the campaign's figures (it does for
    a large campaign as it starts); what computing them took, in seconds."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            row = conn.execute(
                "SELECT took_us FROM campaign_figures WHERE campaign = ? AND computed_at >= ?",
                (campaign, int(started * 1e6)),
            ).fetchone()
        if row is not None:
            return int(row[0]) / 1e6
        time.sleep(0.2)
    raise BenchError(f"the figures of campaign {campaign!r} were not computed in 300 s")


def dashboard_report(run: Dashboard) -> list[str]:
    rows = [
        [f"`{p.path}`", str(p.status), f"{p.times_ms[0]:.0f} ms", f"{p.median:.0f} ms",
         f"{max(p.times_ms[1:]):.0f} ms"]
        for p in run.pages
    ]  # fmt: skip
    return [
        "## Dashboard",
        "",
        f"A campaign to {DASHBOARD_RECIPIENTS:,} recipients (registered through the API) with "
        f"{DASHBOARD_HITS:,} hits (`mailbeacon replay`: opens and clicks from varied clients), "
        f"on SQLite; each page requested {DASHBOARD_TIMES} times in a row by a signed-in user "
        f"(urllib on loopback, the whole answer read): the first request, then the median and "
        "the slowest of the others. A large campaign's figures (statistics and charts) are "
        "computed by `serve` in the background as soon as it starts and whenever they are stale "
        "while someone looks, and pages show them as of then; here that took "
        f"{run.keeper_seconds:.1f} s, and the pages were timed once it was done. "
        f"Target: under {TARGET_PAGE_MS} ms.",
        "",
        *_table(["page", "status", "first", "median after", "slowest after"], rows),
    ]


def dashboard_warnings(run: Dashboard) -> list[str]:
    pages = run.pages
    return [
        f"dashboard: {p.path} took {t:.0f} ms ({which}), over the {TARGET_PAGE_MS} ms target"
        for p in pages
        for t, which in ((p.times_ms[0], "first request"), (p.median, "median after"))
        if t > TARGET_PAGE_MS
    ] + [f"dashboard: {p.path} answered {p.status}" for p in pages if p.status != 200]


# ── Report ───────────────────────────────────────────────────────────────────────────────────


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


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
    return f"{_yes(s.complete)} ({what} {recorded:,} {compared} answered {answered:,})"


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
    return _table([*header, "every answered hit recorded"], rows)


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
    return _table([*header, "CPU s a million hits", "every answered hit recorded"], rows)


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
            _yes(r.complete),
            str(r.log_errors),
        ]
        for n, (r, ratio) in enumerate(zip(scenario.rounds, scenario.ratios, strict=True), 1)
    ]
    return _table(ROUNDS_HEADER, rows)


def replay_table(replays: Sequence[Replay]) -> list[str]:
    rows = [
        [
            r.database,
            f"{r.lines:,}",
            f"{r.recorded:,}",
            f"{r.stored:,}",
            str(r.bad),
            f"{r.seconds:.1f} s",
            f"{r.rate:,.0f}",
            _yes(r.complete),
        ]
        for r in replays
    ]
    header = ["database", "lines", "recorded", "rows in hits", "bad", "wall clock", "hits/s", "all"]
    return _table(header, rows)


def _round_warnings(where: str, r: Round) -> list[str]:
    """What went wrong in one run: errors, the servers' logs and exits, a rate not kept."""
    found = []
    if r.load.non_2xx or r.load.socket_errors:
        found.append(
            f"{where}: {r.load.non_2xx} error responses, {r.load.socket_errors} socket errors"
        )
    if r.load.paced_shortfall:
        found.append(
            f"{where}: answered {r.load.rate:,.0f} req/s of the {r.load.offered or 0:,.0f} asked "
            "(the load generator fell behind: its latencies leave out the wait)"
        )
    if r.log_errors or r.exceptions:
        named = ", ".join(f"{e} ×{k}" for e, k in r.exceptions.most_common())
        found.append(
            f"{where}: {r.log_errors} error lines in the server log"
            + (f"; tracebacks end in {named}" if named else "")
        )
    if r.exit_code is None:
        found.append(f"{where}: the server had to be killed to stop")
    elif r.exit_code != 0:
        found.append(f"{where}: the server exited with {r.exit_code} when asked to stop")
    return found


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
            found += _round_warnings(f"{s.label}, round {n}", r)
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
        *_table(["", ""], machine.rows()),
        "",
        "## The pixel under load",
        "",
        f"Flat out: `{shown(_wrk_commands([PIXEL], SECONDS))}` on `GET /o/{{token}}.gif` "
        f"after a {WARMUP_SECONDS} s warm-up; medians of {ROUNDS} round(s), each running the "
        f"{len(SCENARIOS)} scenarios in turn. *× nginx* is the median of each round's ratio to "
        "nginx. Two nodes are two `mailbeacon serve` processes with the same secret and database "
        "(and a data directory each, for its spool), each loaded by a wrk of its own at once, "
        f"`{shown(_wrk_commands([PIXEL, PIXEL], SECONDS))}`, rather than through a load "
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
        f"SQLite run, `{shown(_h2load_commands([PIXEL], [H2LOAD_LOG], half, SECONDS))}`). wrk "
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


# ── Main ─────────────────────────────────────────────────────────────────────────────────────


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
