"""The load generators bench/run.py drives, the commands it gives them and what they report.

Flat out (a server's peak), `wrk`: each connection sends its next request as soon as the last is
answered. At a given rate, `h2load` (Debian's nghttp2-client) with `--rps`. wrk has no rate
option (wrk2, which has, is not in Debian), and pacing wrk's connections with a Lua `delay()`
would be closed-loop: a connection that waits for a slow answer sends nothing meanwhile, so the
slow moment is sampled once instead of for every request that should have gone out then
(coordinated omission), and the rate drops just when the server struggles. h2load schedules each
connection's requests by the clock and sends those that fell due as soon as the connection is
free again. It times a request from when it is sent, not from when it fell due, so a backlog on a
connection would still be hidden: `paced_shortfall` flags a run that fell behind its rate.

Both are read as a distribution of latencies (QUANTILES quantiles), so that the runs of several
processes, one per node, merge into one distribution rather than into the worse of two p99s.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

QUANTILES = 1000  # latency quantiles kept of each run, at q = 1/1000 … 1000/1000
QUANTILES_LUA = Path(__file__).with_name("quantiles.lua")
# h2load keeps to its --rps on a connection up to about 200 requests/s here (asked for 250 on
# each of 64 connections to nginx, it sent 150): a paced connection is given at most 100.
PACED_RATE_PER_CONNECTION = 100
PACED_SHORTFALL = 0.05  # a paced run that answered fewer than 95% of the requests asked of it


@dataclass(frozen=True)
class Load:
    """What the load generator saw in one run (or in several at once, merged)."""

    requests: int  # responses read in full
    non_2xx: int  # of which an error status
    socket_errors: int  # wrk: connect, read, write and timeout errors; h2load: failed requests
    rate: float  # responses a second
    quantiles_ms: tuple[float, ...]  # latency at q = 1/QUANTILES, 2/QUANTILES … 1
    offered: float | None = None  # the rate asked of a paced run; None: flat out

    @property
    def answered(self) -> int:
        return self.requests - self.non_2xx

    def quantile(self, q: float) -> float:
        return self.quantiles_ms[min(QUANTILES, max(1, math.ceil(q * QUANTILES - 1e-9))) - 1]

    @property
    def p50_ms(self) -> float:
        return self.quantile(0.5)

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99)

    @property
    def paced_shortfall(self) -> bool:
        return self.offered is not None and self.rate < self.offered * (1 - PACED_SHORTFALL)


def _quantiles(weights: Mapping[float, float]) -> tuple[float, ...]:
    """The QUANTILES quantiles of latencies (ms) weighted by how many requests took each."""
    values = sorted(v for v, w in weights.items() if w > 0)
    if not values:
        return (math.inf,) * QUANTILES
    cumulative = list(itertools.accumulate(weights[v] for v in values))
    total = cumulative[-1]
    return tuple(
        values[min(len(values) - 1, bisect.bisect_left(cumulative, k * total / QUANTILES))]
        for k in range(1, QUANTILES + 1)
    )


def merge(loads: Sequence[Load]) -> Load:
    """Runs made at the same time (one per node) as one: requests and rates add up, latencies
    make one distribution in which each run weighs as much as the requests it read."""
    if len(loads) == 1:
        return loads[0]
    weights: Counter[float] = Counter()
    for load in loads:
        for value in load.quantiles_ms:
            weights[value] += load.requests / QUANTILES
    offered = [load.offered for load in loads if load.offered is not None]
    return Load(
        requests=sum(load.requests for load in loads),
        non_2xx=sum(load.non_2xx for load in loads),
        socket_errors=sum(load.socket_errors for load in loads),
        rate=sum(load.rate for load in loads),
        quantiles_ms=_quantiles(weights),
        offered=sum(offered) if offered else None,
    )


# ── wrk, flat out ────────────────────────────────────────────────────────────────────────────


def wrk_command(
    url: str, *, threads: int, connections: int, seconds: int, headers: Sequence[str] = ()
) -> list[str]:
    return [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(QUANTILES_LUA),
        url, *(f"-H{header}" for header in headers),
    ]  # fmt: skip


def parse_wrk(output: str) -> Load:
    """wrk's summary, and the quantiles that quantiles.lua printed (µs). ValueError if either
    is missing."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    requests = find(r"^\s*(\d+) requests in ")
    rate = find(r"^Requests/sec:\s*([\d.]+)")
    quantiles = {
        int(i): int(us) / 1000
        for i, us in re.findall(r"^quantile (\d+) (\d+)$", output, re.MULTILINE)
    }
    if not (requests and rate) or sorted(quantiles) != list(range(1, QUANTILES + 1)):
        raise ValueError(f"cannot read wrk's output:\n{output}")
    non_2xx = find(r"Non-2xx or 3xx responses:\s*(\d+)")
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return Load(
        requests=int(requests[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        rate=float(rate[1]),
        quantiles_ms=tuple(quantiles[i] for i in range(1, QUANTILES + 1)),
    )


# ── h2load, paced ────────────────────────────────────────────────────────────────────────────


def paced_connections(rate: float, least: int) -> int:
    return max(least, math.ceil(rate / PACED_RATE_PER_CONNECTION))


def h2load_command(
    url: str, *, rate: float, connections: int, seconds: int, log: Path, headers: Sequence[str] = ()
) -> list[str]:
    """``rate`` requests a second over ``connections`` HTTP/1.1 connections, one thread; every
    request is written to ``log`` (start, status, µs to the end of the answer)."""
    return [
        "h2load", "--h1", "-t1", f"-c{connections}", f"--rps={rate / connections:.3f}",
        f"-D{seconds}", f"--log-file={log}", *(f"-H{header}" for header in headers), url,
    ]  # fmt: skip


def parse_h2load(output: str, log: Path, offered: float) -> Load:
    """h2load's rate, and from its log (the measured requests only) the statuses and latencies.
    ValueError if h2load printed no rate."""
    rate = re.search(r"^finished in [\d.]+s, ([\d.]+) req/s", output, re.MULTILINE)
    if not rate:
        raise ValueError(f"cannot read h2load's output:\n{output}")
    statuses: Counter[int] = Counter()
    latencies: Counter[float] = Counter()
    with log.open() as lines:
        for line in lines:
            _start, status, micros = line.split("\t")
            statuses[int(status)] += 1
            if int(status) > 0:
                latencies[int(micros) / 1000] += 1
    failed = statuses.pop(-1, 0)
    return Load(
        requests=statuses.total(),
        non_2xx=sum(n for status, n in statuses.items() if status >= 400),
        socket_errors=failed,
        rate=float(rate[1]),
        quantiles_ms=_quantiles(latencies),
        offered=offered,
    )
