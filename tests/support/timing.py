"""When the simulated fetchers act, in seconds after the message was delivered (``sent_at``).

The security-gateway timings are fitted to the one measurement RESEARCH.md cites (R§1 "Security
gateways", from putyourlightson/craft-campaign #546: 836 link bursts). Its full table:

    burst (sweep) started after send   0–10 s 0.5%   10–20 s 2.2%   20–60 s 66.4%
                                       1–5 min 28.3%  5–30 min 1.9%  1–24 h 0.7%   median 43 s
    pixel fetch after send             median 9 s, 61% within 10 s, 84% within 20 s
    sweep after that pixel fetch       median 33 s; all ~9–10 links in one sub-second sweep

RESEARCH.md condenses this to "pixel fetched a median 9 s after send …, then every link … median
33 s later" — 33 s after the *pixel*, 43 s after the send.

No two-parameter family fits these quantiles: a log-normal with the sweep's median (43 s) and
0.5% below 10 s puts only ~10% after a minute instead of 31%, and one with the pixel's 61% within
10 s puts 98% within 20 s instead of 84%. So each is fitted *non-parametrically*: a CDF through the
measured points, log-linear in time between them (``LogLinearCdf``), which reproduces every
measured quantile exactly. Beyond 20 s the pixel's tail is an assumption (none was measured):
95% by 1 min, 99% by 5 min, all by 30 min.

Pixel and sweep times of one message are coupled (a Gaussian copula, ``GATEWAY_COUPLING``) so that
a slow gateway is slow for both; the pixel always comes first. The sweep then follows the pixel by
a median of ~33 s, as measured (that comes out of the two marginals almost whatever the coupling).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True)
class LogLinearCdf:
    """A distribution on (0, ∞) given by points of its CDF, log-linear in time between them."""

    knots: tuple[tuple[float, float], ...]  # (seconds, F(seconds)), both increasing; F: 0 → 1

    def __post_init__(self) -> None:
        times = [t for t, _ in self.knots]
        probs = [p for _, p in self.knots]
        if times != sorted(times) or times[0] <= 0:
            raise ValueError("knot times must be positive and increasing")
        if probs != sorted(probs) or probs[0] != 0.0 or probs[-1] != 1.0:
            raise ValueError("knot probabilities must rise from 0 to 1")

    def quantile(self, u: float) -> float:
        for (t0, p0), (t1, p1) in zip(self.knots, self.knots[1:], strict=False):
            if u <= p1 and p1 > p0:
                share = (u - p0) / (p1 - p0)
                return math.exp(math.log(t0) + max(share, 0.0) * (math.log(t1) - math.log(t0)))
        return self.knots[-1][0]

    def cdf(self, seconds: float) -> float:
        if seconds <= self.knots[0][0]:
            return 0.0
        for (t0, p0), (t1, p1) in zip(self.knots, self.knots[1:], strict=False):
            if seconds <= t1:
                return p0 + (p1 - p0) * math.log(seconds / t0) / math.log(t1 / t0)
        return 1.0

    def sample(self, rng: random.Random) -> float:
        return self.quantile(rng.random())


# Sweep start after delivery: the measured table above, with 0–10 s starting at 3 s (the message
# must reach the gateway and be parsed) and the 30–60 min bin, empty in the data, kept empty.
GATEWAY_SWEEP = LogLinearCdf(
    (
        (3.0, 0.0),
        (10.0, 0.005),
        (20.0, 0.027),
        (43.0, 0.5),
        (60.0, 0.691),
        (300.0, 0.974),
        (1800.0, 0.993),
        (3600.0, 0.993),
        (86400.0, 1.0),
    )
)
# Pixel fetch by a gateway after delivery: measured up to 20 s; the tail is assumed.
GATEWAY_PIXEL = LogLinearCdf(
    (
        (2.0, 0.0),
        (9.0, 0.5),
        (10.0, 0.61),
        (20.0, 0.84),
        (60.0, 0.95),
        (300.0, 0.99),
        (1800.0, 1.0),
    )
)
# Correlation of the normal scores of one gateway's pixel and sweep times.
GATEWAY_COUPLING = 0.7
SWEEP_SPAN = 1.0  # a sweep fetches every link within this many seconds


def gateway_times(rng: random.Random) -> tuple[float, float]:
    """(pixel, sweep start) of one gateway, in seconds after delivery; pixel < sweep."""
    z1 = rng.gauss(0.0, 1.0)
    z2 = GATEWAY_COUPLING * z1 + math.sqrt(1 - GATEWAY_COUPLING**2) * rng.gauss(0.0, 1.0)
    pixel = GATEWAY_PIXEL.quantile(_NORMAL.cdf(z1))
    sweep = GATEWAY_SWEEP.quantile(_NORMAL.cdf(z2))
    if pixel >= sweep - 0.5:  # rare: the scan renders the message before it follows links
        pixel = max(1.0, sweep * rng.uniform(0.2, 0.8))
    return pixel, sweep


def sweep_offsets(rng: random.Random, links: int) -> list[float]:
    """Seconds after the sweep's start at which each of ``links`` links is fetched (< 1 s)."""
    gaps = [rng.uniform(0.01, (SWEEP_SPAN - 0.05) / max(links, 1)) for _ in range(links)]
    offsets, at = [], 0.0
    for gap in gaps:
        offsets.append(at)
        at += gap
    return offsets


def lognormal(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    """A log-normal delay (seconds) with the given median, redrawn until within [low, high]."""
    for _ in range(1000):
        value = median * math.exp(rng.gauss(0.0, sigma))
        if low <= value <= high:
            return value
    return min(max(median, low), high)
