"""Send a campaign: every recipient of a list gets their own rendered, tracked copy, queued.

Copies are made outside any transaction (``copies``: pure work, most of the time); then one
short transaction a batch registers the messages, records each recipient in ``campaign_sends``
and queues the copies. The ``campaign_sends`` row and the queue row commit together, so a send
that stops anywhere (a template that fails for a row, Ctrl-C, ``kill -9``, the database gone)
and is run again skips exactly the recipients already queued: nobody gets a campaign twice,
nobody is left out.

Delivery is not done here: ``mailbeacon serve`` takes the copies from the queue.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from mailbeacon.accounts import now_us
from mailbeacon.relay.queue import Outgoing, enqueue
from mailbeacon.send.copies import CONSENT_URL, UNSUBSCRIBE_URL, Copy, CopyMaker, Made, Makers
from mailbeacon.send.recipients import Recipient
from mailbeacon.store import privacy as privacy_store
from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database

RESERVED = (UNSUBSCRIBE_URL, CONSENT_URL)  # variables a list's columns may not be named
BATCH = 50  # copies a transaction: ~7 MB of 100 KB messages, the write lock held ~20 ms


@dataclass
class Summary:
    campaign: str
    rows: int
    queued: int = 0
    already_sent: int = 0  # queued by an earlier run
    suppressed: list[tuple[str, str]] = field(default_factory=list)  # address, reason
    bad: list[tuple[int, str]] = field(default_factory=list)  # line, why


class SendStopped(Exception):
    """A recipient's copy could not be made (a template failed for their row). Everything queued
    before them stays queued; the send goes on from them when it is run again."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class _Batch:
    size: int  # recipients of the list it covers
    skipped: list[tuple[Recipient, str]]  # suppressed, and why
    made: Future[Made]


class CampaignSend:
    """One run of a campaign for one user; ``summary`` says what it did, even if it stopped."""

    def __init__(
        self,
        db: Database,
        maker: CopyMaker,
        user_id: int,
        *,
        rows: int,
        rate: float | None = None,  # copies a second handed to the queue; None: no limit
    ) -> None:
        self.db = db
        self.maker = maker
        self.user_id = user_id
        self.rate = rate
        # Under a rate, a batch holds at most a quarter of a second's worth.
        self.batch = BATCH if rate is None else max(1, min(BATCH, int(rate / 4)))
        self.summary = Summary(maker.campaign, rows)
        self._handed = 0
        self._started = 0.0

    def run(
        self, recipients: Sequence[Recipient], advance: Callable[[int], None] = lambda n: None
    ) -> Summary:
        """Queue a copy for each recipient not yet queued; raises ``SendStopped``."""
        done = self.db.read(queries.campaign_progress, self.user_id, self.maker.campaign)
        todo = [r for r in recipients if done.get(r.key) != "queued"]
        self.summary.already_sent += len(recipients) - len(todo)
        advance(len(recipients) - len(todo))
        conn = self.db.connect()
        try:
            with Makers(self.maker, len(todo)) as makers:
                # Workers make the next batches while this one commits; never more than a few
                # ahead, so that a long list never sits in memory all made.
                ahead = 2 * makers.workers if makers.workers > 1 else 1
                pending: deque[_Batch] = deque()
                for batch in self._batches(todo, makers):
                    pending.append(batch)
                    if len(pending) >= ahead:
                        self._commit(conn, pending.popleft(), advance)
                while pending:
                    self._commit(conn, pending.popleft(), advance)
        finally:
            conn.raw.close()
        return self.summary

    def _batches(self, todo: Sequence[Recipient], makers: Makers) -> Iterator[_Batch]:
        for start in range(0, len(todo), self.batch):
            chunk = todo[start : start + self.batch]
            suppressed = self.db.read(
                queries.suppressed_among, self.user_id, [r.key for r in chunk]
            )
            skipped = [(r, suppressed[r.key]) for r in chunk if r.key in suppressed]
            wanted = [r for r in chunk if r.key not in suppressed]
            modes = self.db.read(
                privacy_store.modes, self.user_id, [r.address for r in wanted], self.maker.tracking
            )
            yield _Batch(len(chunk), skipped, makers.submit(wanted, modes))

    def _commit(self, conn: Conn, batch: _Batch, advance: Callable[[int], None]) -> None:
        made = batch.made.result()
        copies, skipped = made.copies, batch.skipped
        if made.failed is not None:
            # Those suppressed after the row that failed are recorded when the send goes on.
            skipped = [(r, why) for r, why in skipped if r.line < made.failed[0]]
        self._pace(len(copies))
        name, user_id, now = self.maker.campaign, self.user_id, now_us()
        with self.db.transaction(conn):
            for recipient, _ in skipped:
                queries.campaign_suppressed(conn, user_id, name, recipient.key, now=now)
            claimed = [c for c in copies if self._claim(conn, c, now)]
            queries.save_messages(conn, user_id, [c.message for c in claimed], now=now)
            sender = self.maker.sender.addr_spec
            outgoing = [
                Outgoing(user_id, c.message.id, sender, c.recipient.address, c.data)
                for c in claimed
            ]
            enqueue(conn, outgoing, now=now)
        self.summary.queued += len(claimed)
        self.summary.already_sent += len(copies) - len(claimed)
        self.summary.suppressed += [(r.address, reason) for r, reason in skipped]
        if made.failed is not None:
            raise SendStopped(*made.failed)
        advance(batch.size)

    def _claim(self, conn: Conn, copy: Copy, now: int) -> bool:
        """Another run of the same campaign may have queued them meanwhile."""
        return queries.claim_campaign_send(
            conn, self.user_id, self.maker.campaign, copy.recipient.key, copy.message.id, now=now
        )

    def _pace(self, count: int) -> None:
        """Hand copies to the queue no faster than the rate: a batch waits for the last one's
        share of time."""
        if self.rate is None or not count:
            return
        if not self._handed:
            self._started = time.monotonic()
        wait = self._started + self._handed / self.rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._handed += count
