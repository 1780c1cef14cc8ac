"""The pixel under load: the scenarios each round runs, the load generators driving them (flat
out, or paced at a rate), and what one measured run of a scenario saw."""

from __future__ import annotations

import contextlib
import functools
import re
import shlex
import shutil
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from load import (
    Load,
    h2load_command,
    merge,
    paced_connections,
    parse_h2load,
    parse_wrk,
    wrk_command,
)
from processes import (
    BenchError,
    Processes,
    group_cpu_seconds,
    postgres_cpu_seconds,
    read_lines,
)
from servers import Subject, nginx, pixel
from settings import REPO, ROUNDS, SECONDS
from tests.support.postgres import TemporaryPostgres

THREADS = 2
CONNECTIONS = 64
WARMUP_SECONDS = 2
TARGET_RATIO = 0.3  # mailbeacon's pixel at ≥ 0.3× nginx's log-based pixel, on one node
TARGET_HALF_LOAD_P99_MS = 20  # p99 under 20 ms at half of the peak rate
# Error lines in a server's log: nginx's levels from error up, Python's ERROR and CRITICAL;
# and the last line of a Python traceback, which names the exception.
LOG_ERROR = re.compile(r"\[(error|crit|alert|emerg|ERROR|CRITICAL)\]|\s(ERROR|CRITICAL)\s")
EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b")


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


# ── Load ─────────────────────────────────────────────────────────────────────────────────────

Drive = Callable[[Subject, int], Load]  # puts load on a subject for so many seconds


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


def wrk_commands(urls: Sequence[str], seconds: int, headers: Sequence[str] = ()) -> list[list[str]]:
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


def h2load_commands(
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
    commands = wrk_commands(subject.urls, seconds, subject.headers)
    try:
        return merge([parse_wrk(output) for output in _generate(procs, commands, seconds)])
    except ValueError as exc:
        raise BenchError(str(exc)) from exc


def paced(procs: Processes, rate: float, subject: Subject, seconds: int) -> Load:
    """``rate`` requests a second (h2load: see bench/load.py for why), shared by the nodes."""
    logs = [server.log.with_suffix(".h2load") for server in subject.servers]
    commands = h2load_commands(subject.urls, logs, rate, seconds, subject.headers)
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
    log = [line for server in subject.servers for line in read_lines(server.log)]
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


def round_warnings(where: str, r: Round) -> list[str]:
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
