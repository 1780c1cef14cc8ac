"""What a campaign's charts show, as rows of (label, value, text): the templates draw them as SVG
bars with their numbers written beside them (readable without colour), each with a table of the
same numbers."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from mailbeacon import reports
from mailbeacon.store import dashboard as store
from mailbeacon.store import queries
from mailbeacon.store.db import Conn

HOUR = 3600 * 1_000_000  # µs
DAY = 24 * HOUR
MAX_BARS = 60
# Time to first open, in seconds: the upper bounds of each bar.
DELAYS = ((600, "under 10 min"), (3600, "10–60 min"), (6 * 3600, "1–6 h"), (86400, "6–24 h"),
          (3 * 86400, "1–3 days"), (None, "over 3 days"))  # fmt: skip


class Bar(NamedTuple):
    label: str
    value: float
    text: str  # the value as people read it


class Chart(NamedTuple):
    id: str
    title: str
    bars: list[Bar]
    note: str = ""

    @property
    def top(self) -> float:
        return max((b.value for b in self.bars), default=0) or 1


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def rates(stats: dict[str, Any]) -> Chart:
    low, high = stats["estimated_open_rate_interval"]
    return Chart(
        "rates",
        "Open rates: what each way of counting says",
        [
            Bar("naive (every fetch)", stats["naive_open_rate"], _pct(stats["naive_open_rate"])),
            Bar(
                "observed (people)", stats["observed_open_rate"], _pct(stats["observed_open_rate"])
            ),
            Bar(
                "inferred (+ clicks)",
                stats["inferred_open_rate"],
                _pct(stats["inferred_open_rate"]),
            ),
            Bar(
                "estimated (+ unseen)",
                stats["estimated_open_rate"],
                f"{_pct(stats['estimated_open_rate'])} (95%: {_pct(low)}–{_pct(high)})",
            ),
            Bar("click rate (people)", stats["click_rate"], _pct(stats["click_rate"])),
        ],
        f"Of {stats['delivered']:,} delivered. Naive counts Apple's prefetch, proxies' cache "
        "warming and scanners as opens; the others count people only.",
    )


def over_time(conn: Conn, user_id: int, campaign: str) -> Chart:
    span = store.campaign_span(conn, user_id, campaign)
    if span is None:
        return Chart("over-time", "People's opens over time", [])
    start, end = span
    width = HOUR if end - start <= 2 * DAY else DAY
    while (end - start) // width >= MAX_BARS:
        width *= 2
    counts = dict(store.opens_over_time(conn, user_id, campaign, start, width))
    unit = "h" if width < DAY else "d"
    step = width // (HOUR if unit == "h" else DAY)
    last = max(counts, default=0)
    bars = [
        Bar(f"+{b * step}{unit}", counts.get(b, 0), f"{counts.get(b, 0):,}")
        for b in range(last + 1)
    ]
    return Chart(
        "over-time",
        "People's opens over time",
        bars,
        f"Each bar: {step} {'hour' if unit == 'h' else 'day'}{'s' if step > 1 else ''} after "
        "the first message was sent.",
    )


def first_open(conn: Conn, user_id: int, campaign: str) -> Chart:
    counts = [0] * len(DELAYS)
    for delay in store.first_open_delays(conn, user_id, campaign):
        seconds = delay / 1_000_000
        counts[next(i for i, (top, _) in enumerate(DELAYS) if top is None or seconds < top)] += 1
    bars = [Bar(label, n, f"{n:,}") for (_, label), n in zip(DELAYS, counts, strict=True)]
    return Chart("first-open", "Time from sending to a person's first open", bars,
                 "Recipients, by how long they took to open.")  # fmt: skip


def verdicts(stats: dict[str, Any]) -> Chart:
    by = stats["hits"]["by_verdict"]
    order = [f"{k}:{v}" for k in ("open", "click") for v in ("human", "machine", "self", "unknown")]
    bars = [Bar(key.replace(":", " by "), by.get(key, 0), f"{by.get(key, 0):,}") for key in order]
    return Chart("verdicts", "Who fetched: every hit by verdict", bars)


def agents(stats: dict[str, Any]) -> Chart:
    by = stats["hits"]["by_agent"]
    top = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    bars = [Bar(key.replace(":", " · "), n, f"{n:,}") for key, n in top]
    return Chart("agents", "Which agent: hits by what fetched them", bars)


def clients(stats: dict[str, Any]) -> Chart:
    bars = [
        Bar(" · ".join(p for p in (c["client"] or "unknown", c["type"], c["os"]) if p),
            c["recipients"], f"{c['recipients']:,}")
        for c in stats["clients"][:12]
    ]  # fmt: skip
    return Chart("clients", "Mail clients: recipients who opened with each", bars)


def links(conn: Conn, user_id: int, campaign: str) -> Chart:
    bars = [
        Bar(url, int(clicks), f"{int(clicks):,} clicks by {int(people):,}")
        for url, clicks, people in store.top_links(conn, user_id, campaign)
    ]
    return Chart("links", "Top links: people's clicks", bars)


class Figures(NamedTuple):
    stats: dict[str, Any]
    charts: list[Chart]
    at: float  # time.time() when they were computed
    took: float  # seconds it took


class Recent:
    """A campaign's figures, kept when they are costly to compute: on a campaign of 100,000
    recipients they take seconds on SQLite (BENCHMARKS.md). A page shows the figures kept, as of
    when they were computed (and says so); once they are older than ``REUSE`` times their cost
    (at least ``MIN_AGE`` seconds), the page still shows them, and they are computed again in
    the background for the next view (``stale``). Figures that take under ``CHEAP`` seconds are
    never kept: always fresh."""

    CHEAP = 0.1
    REUSE = 10
    MIN_AGE = 10.0
    SIZE = 64  # campaigns kept

    def __init__(self) -> None:
        self._kept: dict[tuple[int, str], Figures] = {}
        self.refreshing: set[tuple[int, str]] = set()

    def get(self, user_id: int, name: str) -> Figures | None:
        return self._kept.get((user_id, name))

    def stale(self, figures: Figures, now: float) -> bool:
        return now - figures.at > max(self.MIN_AGE, self.REUSE * figures.took)

    def put(self, user_id: int, name: str, figures: Figures) -> None:
        if figures.took < self.CHEAP:
            return
        if len(self._kept) >= self.SIZE:
            self._kept.pop(next(iter(self._kept)))
        self._kept[user_id, name] = figures


def figures(conn: Conn, user_id: int, name: str) -> Figures | None:
    """A campaign's statistics and charts; None when the user has no such campaign."""
    started = time.time()
    found = reports.stats(conn, queries.Scope(user_id, campaign=name))
    if not found:
        return None
    charts = campaign(conn, user_id, name, found[0])
    return Figures(found[0], charts, started, time.time() - started)


def campaign(conn: Conn, user_id: int, name: str, stats: dict[str, Any]) -> list[Chart]:
    """Every chart of a campaign's page, in the order it shows them."""
    return [
        rates(stats),
        over_time(conn, user_id, name),
        first_open(conn, user_id, name),
        verdicts(stats),
        agents(stats),
        clients(stats),
        links(conn, user_id, name),
    ]
