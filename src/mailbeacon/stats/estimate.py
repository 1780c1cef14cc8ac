"""The estimated open rate: the opens that cannot be seen, estimated, with an interval and the
assumptions in words.

Two kinds of opens are invisible (RESEARCH.md §3, "estimating the true open rate"):

- **Apple Mail Privacy Protection** fetches every message's pixel whether or not it is read, so
  its recipients' opens cannot be told from its prefetches (§1, Apple MPP).
- **Blocked images**: Outlook for Windows and Thunderbird load no remote image unless the
  reader asks (§1); their opens are seen only when the reader clicks.

The pixel and the click are two independent ways to see that a person opened. Among the
people who clicked, the share whose open was also seen estimates the share of all opens the
pixel sees (capture–recapture). With few clicks that share is too uncertain on its own, so it
starts from what the clients that were seen imply (a Beta prior worth ``PRIOR_WEIGHT`` clickers)
and the campaign's own clicks move it. Recipients behind Apple's protection are assumed to open
like the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Share of opens on which a client that blocks remote images by default loads them anyway
# (the reader clicks "download pictures"). RESEARCH.md §1: "most Outlook opens are never seen";
# Thunderbird blocks remote content by default. Stated to the user as an assumption.
LOADS_IMAGES = {"outlook": 0.35, "thunderbird": 0.30}
PRIOR_WEIGHT = 50.0  # clickers' worth of belief in the client-based visibility
Z95 = 1.96

ASSUMPTIONS = (
    "Recipients behind Apple Mail Privacy Protection open at the same rate as the other "
    "recipients of the campaign: their opens cannot be seen, their clicks can.",
    "Whether an opener clicks does not depend on whether their mail client loads images, so "
    "the share of clickers whose open was seen is the share of all opens that are seen.",
    "Until enough clicks say otherwise, Outlook for Windows is taken to load images on 35% of "
    "opens and Thunderbird on 30% (both block remote images by default); every other client "
    "and proxy on every open.",
    "Opens are counted once per recipient; machine and self fetches are never opens.",
)


@dataclass(frozen=True)
class Seen:
    """What the recipients of a campaign (or any set of messages) showed."""

    delivered: int
    inferred: int  # recipients with a human open or a human click
    mpp: int  # recipients whose pixel Apple's protection fetched
    mpp_inferred: int  # … of whom a human open or click was seen all the same
    opened: int  # recipients outside Apple's protection with a human open
    clicked: int  # … with a human click
    both: int  # … with both
    blocked_clients: dict[str, int]  # human opens seen per client that blocks images


@dataclass(frozen=True)
class Estimate:
    rate: float
    low: float
    high: float
    visibility: float  # estimated share of opens (outside Apple's protection) the pixel sees


def estimate(seen: Seen) -> Estimate:
    if seen.delivered == 0:
        return Estimate(0.0, 0.0, 0.0, 1.0)
    visible = seen.delivered - seen.mpp
    # What the clients seen imply: each blocking client's seen opens stand for more unseen ones.
    hidden = sum(
        n * (1 - LOADS_IMAGES[c]) / LOADS_IMAGES[c] for c, n in seen.blocked_clients.items()
    )
    prior = seen.opened / (seen.opened + hidden) if seen.opened else 1.0
    a = PRIOR_WEIGHT * prior + seen.both
    b = PRIOR_WEIGHT * (1 - prior) + (seen.clicked - seen.both)
    s = min(max(a / (a + b), 0.05), 1.0)
    s_var = a * b / ((a + b) ** 2 * (a + b + 1))
    inferred_visible = seen.inferred - seen.mpp_inferred
    openers_v = max(float(inferred_visible), seen.opened / s)
    # Unseen openers outside Apple: uncertainty from s, and the draw of who is hidden.
    var_v = (seen.opened / s**2) ** 2 * s_var + seen.opened * (1 - s) / s
    rate_v = openers_v / visible if visible else 0.0
    openers_m, var_m = 0.0, 0.0
    if seen.mpp:
        if visible:
            rate_var = var_v / visible**2 + rate_v * (1 - rate_v) / visible
        else:  # nobody to learn from: anything is possible
            rate_v, rate_var = 0.5, 0.25
        openers_m = max(float(seen.mpp_inferred), seen.mpp * rate_v)
        var_m = seen.mpp * rate_v * (1 - rate_v) + seen.mpp**2 * rate_var
    rate = (openers_v + openers_m) / seen.delivered
    half = Z95 * math.sqrt(var_v + var_m) / seen.delivered
    floor = seen.inferred / seen.delivered
    return Estimate(
        round(min(rate, 1.0), 4),
        round(max(rate - half, floor), 4),
        round(min(rate + half, 1.0), 4),
        round(s, 4),
    )
