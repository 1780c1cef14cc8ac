"""Retention: hits older than ``--retention-days`` and operational rows older than
``--ops-retention-days`` are removed, by ``mailbeacon prune`` and hourly by ``serve``.

Hits are the record everything else is computed from (rates, charts, ``explain``), so by default
they are kept forever: removing them changes a campaign's figures, which is the user's choice to
make. The operational rows (the delivery log, published events, sent alert emails) only say what
happened lately, and go after 30 days. Expired sessions and failed sign-ins older than the
throttle's window are never read again, and always go.

On PostgreSQL the hits of a month entirely before the cut go by dropping the month's table
(``store.partitions``); what is left before the cut (the month the cut falls in, the default
partition) is deleted like SQLite's: in batches of ``BATCH`` rows, a transaction each, so that
the writer of hits never waits long. ``serve`` also keeps the months ahead created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

import anyio.from_thread
import anyio.to_thread

from mailbeacon import sessions
from mailbeacon.accounts import now_us
from mailbeacon.background import Periodic
from mailbeacon.settings import Settings
from mailbeacon.store import leases, partitions
from mailbeacon.store import retention as store
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer

log = logging.getLogger(__name__)

DAY = 86_400_000_000  # µs
BATCH = 5_000  # rows a transaction
JOB = "retention"  # its lease
PERIOD = 3_600.0  # seconds: serve prunes once an hour, on one node
POLL = 300.0  # seconds between a node's looks at whether the hour's run is taken
T = TypeVar("T")


class Write(Protocol):
    """Runs ``fn(conn)`` in a write transaction of its own."""

    def __call__(self, fn: Callable[[Conn], T], /) -> T: ...


@dataclass(frozen=True)
class Step:
    what: str  # as reported
    rule: store.Rule
    cut: int  # µs: older rows go


def steps(settings: Settings, now: int) -> list[Step]:
    """What goes, at ``now``, by the settings: a window of 0 days keeps its rows forever."""
    found = []
    if settings.retention_days > 0:
        found.append(Step("hits", store.HITS, now - int(settings.retention_days * DAY)))
    found.append(Step("hits past their user's own window", store.USER_HITS, now))
    if settings.ops_retention_days > 0:
        cut = now - int(settings.ops_retention_days * DAY)
        found += [
            Step("delivery attempts", store.DELIVERY_ATTEMPTS, cut),
            Step("webhook deliveries", store.DELIVERIES, cut),
            Step("events", store.EVENTS, cut),
            Step("sent alerts and untracked mail", store.SENT_UNTRACKED, cut),
        ]
    found += [
        Step("expired sessions", store.SESSIONS, now),
        Step("failed sign-ins", store.LOGIN_FAILURES, now - sessions.WINDOW),
    ]
    return found


@dataclass
class Plan:
    """What a run would remove: rows by step, and (PostgreSQL) the months of hits to drop."""

    steps: list[tuple[Step, int]]
    months: list[tuple[partitions.Month, int]] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """Rows to remove by what, in the order of the steps."""
        found = {step.what: rows for step, rows in self.steps}
        if self.months:
            found["hits"] = found.get("hits", 0) + sum(rows for _, rows in self.months)
        return found


def plan(conn: Conn, found: list[Step]) -> Plan:
    """Count what ``found`` would remove (a read)."""
    result = Plan([])
    for step in found:
        if step.rule is store.HITS and conn.dialect == "postgresql":
            old = store.partition_counts(conn, step.cut)
            result.months = [
                (m, old.get(m.table, 0)) for m in partitions.months(conn) if m.end <= step.cut
            ]
            left = sum(old.values()) - sum(n for _, n in result.months)
            result.steps.append((step, left))
        else:
            result.steps.append((step, store.count(conn, step.rule, step.cut)))
    return result


@dataclass
class Report:
    removed: dict[str, int] = field(default_factory=dict)  # rows, by what
    months: list[str] = field(default_factory=list)  # PostgreSQL: the tables of hits dropped

    def add(self, what: str, rows: int) -> None:
        self.removed[what] = self.removed.get(what, 0) + rows


def prune(
    found: Plan,
    write: Write,
    *,
    advance: Callable[[str, int], None] = lambda what, rows: None,
    stopping: Callable[[], bool] = lambda: False,
) -> Report:
    """Remove what ``found`` counted (and what became old since), a transaction a month of hits
    dropped and a transaction a batch; ``advance`` is told of each. Cut short by ``stopping``,
    it leaves the rest for the next run."""
    report = Report()
    for month, rows in found.months:
        if stopping():
            return report
        write(partial(partitions.drop_month, month=month))
        report.months.append(month.table)
        report.add("hits", rows)
        advance("hits", rows)
    for step, rows in found.steps:
        after = store.START
        while rows and not stopping():
            removed, after = write(
                partial(store.delete_batch, rule=step.rule, cut=step.cut, after=after, limit=BATCH)
            )
            report.add(step.what, removed)
            advance(step.what, removed)
            if after == store.START:
                break
    return report


def keep_ahead(conn: Conn, now: int) -> list[partitions.Month]:
    """PostgreSQL: create the current month's table of hits and the next ones, if missing."""
    if conn.dialect != "postgresql":
        return []
    partitions.lock_briefly(conn)
    return partitions.ensure_months(conn, partitions.months_ahead(now))


def describe(report: Report) -> str:
    parts = [f"{rows} {what}" for what, rows in report.removed.items() if rows]
    if report.months:
        parts.append(f"monthly tables of hits dropped: {', '.join(report.months)}")
    return "; ".join(parts) or "nothing"


class Retention(Periodic):
    """Prunes once an hour in the background of ``serve``, on one node of those sharing the
    database: a round first claims the job's lease for the hour (never released: the others
    find it taken until the hour is over, and one of them runs the next). Each node looks every
    ``poll`` seconds, so a node that stops hands the job on within that. Stopping lets the
    batch in progress finish (it runs on a thread that cancelling would orphan)."""

    failed = "retention"

    def __init__(
        self,
        db: Database,
        writer: Writer,
        settings: Settings,
        *,
        poll: float = POLL,
        period: float = PERIOD,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.db = db
        self.writer = writer
        self.settings = settings
        self.period = period
        self.clock = clock
        super().__init__(poll)

    async def round(self) -> Report | None:
        """Prune if this node gets the hour's lease; what it removed, or None."""
        now = self.clock()
        until = now + int(self.period * 1_000_000)
        if not await self.writer.run(leases.claim, JOB, now=now, until=until):
            return None
        await self.writer.run(keep_ahead, now)
        found = await anyio.to_thread.run_sync(self.db.read, plan, steps(self.settings, now))
        report = await anyio.to_thread.run_sync(
            lambda: prune(found, self._write, stopping=lambda: self._stopping)
        )
        if report.removed or report.months:
            log.info("retention removed %s", describe(report))
        return report

    def _write(self, fn: Callable[[Conn], T]) -> T:
        # From prune's thread: through the writer, which on SQLite is the only one.
        return anyio.from_thread.run(self.writer.run, fn)
