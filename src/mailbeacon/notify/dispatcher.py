"""The dispatcher: the background worker of ``serve`` that POSTs events to webhook endpoints.

Deliveries are rows of the store, written with their event (``events.publish``), so nothing is
lost however the process stops. A round claims the deliveries that are due, as many as may be in
flight, and attempts them concurrently; claiming leases them (``store.claim_deliveries``), so
several nodes on one PostgreSQL never attempt one delivery at once, and the deliveries of a node
that died are due again when their lease ends. A delivery may thus arrive more than once; its
``webhook-id`` is the same every time, for the receiver to tell (Standard Webhooks).

Each attempt is logged (the endpoint's delivery log) and ends one way:

- ``2xx``: delivered;
- anything else — ``3xx`` included (a redirect is never followed: its target would escape the
  address check), a timeout, a refused connection or address — is tried again on Svix's
  schedule (``BACKOFF``: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, each ±20%),
  and after the 8th attempt the delivery has ``failed``. ``429`` and ``503`` may ask for a later
  retry with ``Retry-After``, which is honoured up to the delay after the next;
- ``410 Gone`` disables the endpoint at once: the receiver says it is gone for good.

An endpoint that has known only failures for ``FAILING_LIMIT`` (5 days) is disabled too, and its
owner told by email. A disabled endpoint's deliveries wait, pending; enabling it again makes
them due at once.

It wakes when poked (events published) and every ``poll`` seconds (retries coming due, events
published by another process).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from mailbeacon import __version__
from mailbeacon.accounts import now_us
from mailbeacon.notify import alerts, http, webhooks
from mailbeacon.notify.alerts import Mailer
from mailbeacon.notify.events import payload
from mailbeacon.relay.deliverer import retry_delay
from mailbeacon.reports import iso
from mailbeacon.store import webhooks as store
from mailbeacon.store.db import Conn
from mailbeacon.store.webhooks import DeliveryState, Due
from mailbeacon.store.writer import Writer
from mailbeacon.worker import Worker

log = logging.getLogger(__name__)

SECOND = 1_000_000  # µs
MINUTE, HOUR, DAY = 60, 3600, 86400  # seconds
# Seconds to wait after each failed attempt (Svix's schedule, which Standard Webhooks follows):
# 8 attempts over about 27 hours; the 8th failure is final.
BACKOFF: tuple[float, ...] = (5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR)
FAILING_LIMIT = 5 * DAY  # an endpoint failing for this long is disabled
LEASE = 2 * MINUTE  # a claimed delivery is someone's for this long: well over the timeout
CONCURRENCY = 8  # deliveries in flight at once
POLL = 5.0  # seconds between looks at the deliveries when nobody pokes
USER_AGENT = f"mailbeacon-webhooks/{__version__}"
DISABLED = """\
mailbeacon stopped sending events to your webhook {id}
({url}): {reason}

Its pending deliveries wait for it; events published while it is disabled are not sent to it.
Once it answers again, enable it: PATCH /api/v1/webhooks/{id} with {{"enabled": true}}, or
`mailbeacon webhooks enable {id}`. Its delivery log says what went wrong:
GET /api/v1/webhooks/{id}/deliveries, or `mailbeacon webhooks deliveries {id}`."""


def retry_after(value: str | None, now: int) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (a number, or an HTTP date); None when
    there is none that makes sense."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now / SECOND)


def next_delay(
    attempts: int, backoff: Sequence[float], rng: random.Random, asked: float | None
) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones (None: no more). A
    ``Retry-After`` (``asked``) may put it off, but not past the delay after the next one."""
    delay = retry_delay(attempts, backoff, rng)
    if delay is None or asked is None:
        return delay
    cap = backoff[min(attempts, len(backoff) - 1)]
    return max(delay, min(asked, cap))


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to."""

    status: int | None  # None: no answer
    error: str | None  # None: delivered
    retry_after: float | None = None  # seconds, when a 429 or 503 asked

    @classmethod
    def of(cls, answer: http.Answer, now: int) -> Outcome:
        status = answer.status
        if 200 <= status < 300:
            return cls(status, None)
        if 300 <= status < 400:
            where = answer.headers.get("location", "")
            return cls(status, f"answered {status}, a redirect to {where!r}: redirects are not "
                               "followed; subscribe the URL it points to")  # fmt: skip
        if status == 410:
            return cls(status, "answered 410 Gone: the endpoint is disabled")
        excerpt = " ".join(answer.excerpt.decode("utf-8", "replace").split())[:200]
        asked = (
            retry_after(answer.headers.get("retry-after"), now) if status in (429, 503) else None
        )
        return cls(status, f"answered {status}" + (f": {excerpt}" if excerpt else ""), asked)


def record(
    conn: Conn,
    due: Due,
    outcome: Outcome,
    *,
    at: int,
    duration_us: int,
    retry_at: int | None,
    mailer: Mailer,
) -> None:
    """Log an attempt and settle its delivery (``retry_at`` None: no more attempts); keep the
    endpoint's record of failures, and disable it when it is gone or has failed for too long."""
    store.log_attempt(conn, due.id, at=at, status=outcome.status, error=outcome.error,
                      duration_us=duration_us)  # fmt: skip
    state: DeliveryState = (
        "delivered" if outcome.error is None else "failed" if retry_at is None else "pending"
    )
    if not store.settle_attempt(conn, due.id, state=state, next_attempt_at=retry_at or at):
        return  # settled already (the lease ran out under a slow attempt), or deleted
    if outcome.error is None:
        store.webhook_succeeded(conn, due.webhook_id)
        return
    since = store.webhook_failed(conn, due.webhook_id, at=at)
    if outcome.status == 410:
        store.disable_webhook(conn, due.webhook_id, f"it answered 410 Gone on {iso(at)}")
        return
    if since is None or at - since < FAILING_LIMIT * SECOND:
        return
    days = (at - since) // (DAY * SECOND)
    reason = f"every delivery failed for {days} days, since {iso(since)}: {outcome.error}"
    if store.disable_webhook(conn, due.webhook_id, reason):  # once, whatever was in flight
        subject = f"Your webhook to {urlsplit(due.url).netloc} is disabled"
        text = DISABLED.format(id=due.webhook_id, url=due.url, reason=reason)
        alerts.tell_owner(conn, due.user_id, subject, text, mailer=mailer, now=at)


class Dispatcher(Worker):
    """Delivers events to webhook endpoints, in the background of ``serve`` (``start``/``stop``,
    ``poke`` when events were published) or until nothing is due (``deliver_due``)."""

    def __init__(
        self,
        writer: Writer,
        mailer: Mailer,
        *,
        allow_private: bool = False,
        tls: ssl.SSLContext | None = None,
        concurrency: int = CONCURRENCY,
        poll: float = POLL,
        lease: float = LEASE,
        backoff: Sequence[float] = BACKOFF,
        timeout: float = http.TIMEOUT,
        clock: Callable[[], int] = now_us,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency, poll=poll, lease=lease, backoff=backoff,
                         timeout=timeout, clock=clock, rng=rng)  # fmt: skip
        self.writer = writer
        self.mailer = mailer
        self.allow_private = allow_private
        self.tls = tls  # None: certifi's authorities
        self.attempted: Callable[[bool], None] = lambda delivered: None  # metrics

    async def deliver_due(self) -> int:
        """Attempt every delivery due now, ``concurrency`` at a time, until none is due and
        none in flight; the number of attempts made. Deliveries are claimed as attempts end,
        never more than can be in flight, so that none waits out its lease in memory."""
        attempts = 0
        in_flight: set[asyncio.Task[None]] = set()
        poster = http.Poster(allow_private=self.allow_private, timeout=self.timeout,
                             tls=self.tls, connections=self.concurrency)  # fmt: skip
        async with poster:
            try:
                while True:
                    if not self._stopping and len(in_flight) < self.concurrency:
                        claimed = await self._claim(self.concurrency - len(in_flight))
                        in_flight |= {
                            asyncio.create_task(self._deliver(poster, d)) for d in claimed
                        }
                        attempts += len(claimed)
                    if not in_flight:
                        return attempts
                    _, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
            finally:  # cancelled (stop): what was in flight is attempted again after its lease
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _claim(self, limit: int) -> list[Due]:
        now = self.clock()
        until = now + int(self.lease * SECOND)
        try:
            return await self.writer.run(store.claim_deliveries, now=now, until=until, limit=limit)
        except Exception:
            log.exception("could not claim webhook deliveries; trying again in %s s", self.poll)
            return []

    async def _deliver(self, poster: http.Poster, due: Due) -> None:
        at = self.clock()
        body = payload(due.event_type, due.created_at, due.data)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": due.event_id,
            "webhook-timestamp": str(at // SECOND),
            "webhook-signature": webhooks.signature(due.secrets, due.event_id, at, body),
        }
        started = time.monotonic()
        try:
            outcome = Outcome.of(await poster.post(due.url, headers, body), at)
        except http.Unreachable as exc:
            outcome = Outcome(None, str(exc))
        except Exception as exc:
            log.exception("delivering %s to %s failed unexpectedly", due.event_id, due.webhook_id)
            outcome = Outcome(None, f"unexpected error: {exc!r}")
        duration_us = int((time.monotonic() - started) * SECOND)
        self.attempted(outcome.error is None)
        retry_at = None
        if outcome.error is not None:
            delay = next_delay(due.attempts + 1, self.backoff, self.rng, outcome.retry_after)
            retry_at = None if delay is None else at + int(delay * SECOND)
            log.info("webhook %s: delivery %d failed (%s); %s", due.webhook_id, due.id,
                     outcome.error, "no more attempts" if delay is None
                     else f"next attempt in {delay:.0f} s")  # fmt: skip
        try:
            await self.writer.run(record, due, outcome, at=at, duration_us=duration_us,
                                  retry_at=retry_at, mailer=self.mailer)  # fmt: skip
        except Exception:
            log.exception("could not record an attempt of delivery %d; it is made again", due.id)
