"""Delivery: the background worker of ``serve`` that hands queued copies to the upstream server.

The queue is the store (``outbound``), so nothing is lost when the process stops, however it
stops. A round claims the copies that are due, a few at a time, and sends them concurrently;
claiming leases them (``queries.claim_outbound``), so several nodes on one PostgreSQL never
send one copy at once, and the copies of a node that died are due again when their lease ends.
A copy is therefore sent *at least* once: if the process dies after the upstream server
accepted a copy but before that was recorded, it is sent again after its lease.

Each attempt ends one of three ways (``upstream.Outcome``):

- accepted: the copy is ``sent``, and its message's ``sent_at`` becomes that moment;
- a temporary failure: tried again after a growing delay (``BACKOFF``, with jitter so that
  copies deferred together do not all come back together); once the schedule is used up,
  about three days, the copy bounces;
- refused for good: the copy ``bounced`` with the server's reply, and a recipient refused is
  suppressed, so that campaigns skip them.

It wakes when poked (new copies queued) and every ``poll`` seconds (copies queued by another
process, retries coming due).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Sequence

import anyio.to_thread

from mailbeacon.accounts import now_us
from mailbeacon.notify import events
from mailbeacon.relay import upstream as smtp
from mailbeacon.relay.upstream import Accepted, Deferred, Dkim, Outcome, Refused, Upstream
from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer
from mailbeacon.worker import Worker

log = logging.getLogger(__name__)

SECOND = 1_000_000  # µs
MINUTE, HOUR = 60, 3600  # seconds
# Seconds to wait after each failed attempt: 13 retries over about three days (69 h 21 min
# before jitter); the 14th failure bounces. Close to what MTAs do (Postfix gives up after 5 days).
BACKOFF: tuple[float, ...] = (
    1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 1 * HOUR, 4 * HOUR, *(8 * HOUR,) * 8
)  # fmt: skip
JITTER = 0.2  # each delay is stretched or shrunk by up to this share, at random
LEASE = 5 * MINUTE  # a claimed copy is someone's for this long
CONCURRENCY = 8  # copies in flight at once, each sender on a connection of its own
POLL = 5.0  # seconds between looks at the queue when nobody pokes


def retry_delay(attempts: int, backoff: Sequence[float], rng: random.Random) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones; None: give up."""
    if attempts > len(backoff):
        return None
    return backoff[attempts - 1] * rng.uniform(1 - JITTER, 1 + JITTER)


def bounce(conn: Conn, outbound_id: int, *, error: str, at: int, suppress: bool) -> None:
    """Record a bounce, and publish it (``email.bounced``) in the same transaction."""
    copy = queries.mark_bounced(conn, outbound_id, error=error, at=at, suppress=suppress)
    if copy is not None:
        events.bounced(conn, *copy, error, now=at)


class Deliverer(Worker):
    """Sends the outbound queue upstream, in the background of ``serve`` (``start``/``stop``,
    ``poke`` when copies were queued) or until nothing is due (``deliver_due``)."""

    def __init__(
        self,
        db: Database,
        writer: Writer,
        upstream: Upstream | None,
        *,
        dkim: Dkim | None = None,
        helo: str = "localhost",
        tls: ssl.SSLContext | None = None,
        concurrency: int = CONCURRENCY,
        poll: float = POLL,
        lease: float = LEASE,
        backoff: Sequence[float] = BACKOFF,
        timeout: float = smtp.TIMEOUT,
        clock: Callable[[], int] = now_us,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency, poll=poll, lease=lease, backoff=backoff,
                         timeout=timeout, clock=clock, rng=rng)  # fmt: skip
        self.db = db
        self.writer = writer
        self.upstream = upstream
        self.dkim = dkim
        self.helo = helo
        self.tls = tls  # None: the system's authorities (see upstream.tls_context)
        self._accepted: list[tuple[int, int]] = []  # (copy, when) accepted, not yet recorded
        self._recording: asyncio.Task[None] | None = None

    async def _finish(self) -> None:
        if self._recording is not None:  # what was accepted is written before the writer stops
            await self._recording

    async def _run(self) -> None:
        if self.upstream is None:
            await self._warn_when_mail_waits()
            return
        log.info("delivering queued mail through %s", self.upstream)
        await super()._run()

    async def _warn_when_mail_waits(self) -> None:
        """Without an upstream, mail stays queued: say so once, when there is some."""
        while not self._stopping:
            self._wake.clear()
            try:
                waiting = await anyio.to_thread.run_sync(self.db.read, queries.outbound_waiting)
            except Exception:
                log.exception("could not look at the outbound queue")
                waiting = 0
            if waiting:
                log.warning(
                    "%d copies are queued but not sent: there is no upstream server to send them "
                    "through; set --upstream smtp://user:password@host:port",
                    waiting,
                )
                return
            await self._sleep()

    async def deliver_due(self) -> int:
        """Send every copy due now, until none is due and none in flight; the number of
        attempts made. ``concurrency`` senders each keep one connection to the upstream server
        for the whole round; copies are claimed a few at a time, just ahead of them, so that
        none waits out its lease in memory."""
        upstream = self.upstream
        if upstream is None:
            return 0
        due: asyncio.Queue[queries.Queued | None] = asyncio.Queue(maxsize=self.concurrency)
        loop = asyncio.get_running_loop()
        senders = [loop.create_task(self._sender(upstream, due)) for _ in range(self.concurrency)]
        attempts = 0
        try:
            while not self._stopping and not all(t.done() for t in senders):
                claimed = await self._claim(self.concurrency * 2)
                if not claimed:
                    break
                for copy in claimed:
                    await due.put(copy)
                attempts += len(claimed)
            for _ in senders:
                await due.put(None)
            await asyncio.gather(*senders)
            if self._recording is not None:  # the round ends once its outcomes are written
                await self._recording
        finally:
            for task in senders:  # cancelled (stop): what was in flight comes back after its lease
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        return attempts

    async def _sender(self, upstream: Upstream, due: asyncio.Queue[queries.Queued | None]) -> None:
        session = smtp.Session(upstream, helo=self.helo, tls=self.tls, timeout=self.timeout)
        try:
            while (copy := await due.get()) is not None:
                await self._deliver(session, copy)
        finally:
            await session.close()

    async def _claim(self, limit: int) -> list[queries.Queued]:
        now = self.clock()
        until = now + int(self.lease * SECOND)
        try:
            return await self.writer.run(queries.claim_outbound, now=now, until=until, limit=limit)
        except Exception:
            log.exception("could not claim queued copies; trying again in %s s", self.poll)
            return []

    async def _deliver(self, session: smtp.Session, copy: queries.Queued) -> None:
        upstream = session.upstream
        try:
            data = copy.data
            if self.dkim is not None:
                data = await anyio.to_thread.run_sync(self.dkim.sign, data)
            # The whole attempt ends well within the lease: no other node takes the copy over
            # while this one may still be sending it.
            async with asyncio.timeout(self.lease / 2):
                outcome = await session.send(copy.mail_from, copy.rcpt_to, data)
        except TimeoutError:
            outcome = Deferred(f"no answer from {upstream} within {self.lease / 2:.0f} s")
        except Exception as exc:
            log.exception("sending copy %d failed unexpectedly", copy.id)
            outcome = Deferred(f"unexpected error: {exc!r}")
        try:
            await self._record(copy, outcome)
        except Exception:
            log.exception("could not record the outcome of copy %d; it is tried again", copy.id)

    async def _record_sent(self) -> None:
        """Acceptances are written together: one transaction for all those that came while the
        previous one committed (a commit a copy was a quarter of delivery's CPU, measured with
        py-spy against a local Postfix). One lost in a crash before it is written is sent again
        after its lease, like any copy whose acceptance was not recorded."""
        try:
            while self._accepted:
                accepted, self._accepted = self._accepted, []
                try:
                    await self.writer.run(queries.mark_all_sent, accepted)
                except Exception:
                    log.exception("could not record %d sent copies; they are sent again later",
                                  len(accepted))  # fmt: skip
        finally:
            self._recording = None

    async def _record(self, copy: queries.Queued, outcome: Outcome) -> None:
        now = self.clock()
        match outcome:
            case Accepted(at=at):
                self._accepted.append((copy.id, at))
                if self._recording is None:
                    self._recording = asyncio.get_running_loop().create_task(self._record_sent())
            case Refused(error=error, recipient=recipient):
                log.warning("copy %d to %s bounced: %s", copy.id, copy.rcpt_to, error)
                await self.writer.run(bounce, copy.id, error=error, at=now, suppress=recipient)
            case Deferred(error=error):
                delay = retry_delay(copy.attempts + 1, self.backoff, self.rng)
                if delay is None:
                    error = f"gave up after {copy.attempts + 1} attempts: {error}"
                    log.warning("copy %d to %s bounced: %s", copy.id, copy.rcpt_to, error)
                    await self.writer.run(bounce, copy.id, error=error, at=now, suppress=False)
                    return
                log.info("copy %d to %s deferred (%s); next attempt in %.0f s",
                         copy.id, copy.rcpt_to, error, delay)  # fmt: skip
                retry_at = now + int(delay * SECOND)
                await self.writer.run(
                    queries.mark_deferred, copy.id, error=error, retry_at=retry_at
                )
