"""The notifier: turns hits whose verdict has settled into events, alerts and deliveries.

A hit that may notify (a person's, or any hit of a user who subscribed to raw hits) is put in
the hit outbox by the very statement that stores it (``queries.insert_live_hits``), so a hit
that was answered is never lost to notifications either. The notifier takes it from there once
its verdict can be trusted:

- a hit long enough after sending (``--settle-seconds``, 60 s by default) is due at once: a
  known mail client opening a message an hour after it was sent is a person;
- a hit closer to sending is held until that long after it arrived. A security gateway fetches
  the pixel a median 9 s after delivery and sweeps every link a median 33 s later (RESEARCH.md
  §1, security gateways: putyourlightson craft-campaign #546); the sweep is what unmasks the
  pixel fetch (``classify.settle``), and an alert sent before it would be a lie;
- a click waits for settling to have looked at it (about 1.5 s): it may be the first of a sweep.

Then the hit's current verdict decides: ``human`` publishes ``email.opened`` or
``email.clicked`` (and may alert the sender); anything else publishes nothing but the raw
``email.hit`` for those who asked for it. Each round is one transaction: the events, their
deliveries, the alerts and the removal from the outbox commit together, so a crash repeats a
round rather than losing or doubling it. On PostgreSQL the outbox rows are locked with ``SKIP
LOCKED``: several nodes notify side by side, each hit once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mailbeacon.accounts import now_us
from mailbeacon.background import Background
from mailbeacon.notify import alerts
from mailbeacon.notify.events import HIT, Client, EventType, HitData, publish
from mailbeacon.reports import iso
from mailbeacon.store import notify as store
from mailbeacon.store.db import Conn
from mailbeacon.store.writer import Writer

log = logging.getLogger(__name__)

SECOND = 1_000_000  # µs
BATCH = 100  # hits a round: a round holds the event loop (SQLite) for a few ms
POLL = 1.0  # seconds between looks when nobody pokes: held hits come due by the clock
PAUSE = 0.25  # seconds at least between rounds: under load, a round takes many hits at once


def hit_data(hit: store.DueHit, *, first: bool) -> HitData:
    return HitData(
        message_id=hit.message_id,
        recipient=hit.recipient,
        subject=hit.subject,
        campaign=hit.campaign,
        hit_id=hit.hit_id,
        kind="click" if hit.kind == "click" else "open",
        url=hit.url,
        time=iso(hit.at),
        seconds_after_sending=round((hit.at - hit.sent_at) / SECOND, 3),
        verdict=hit.verdict,  # type: ignore[typeddict-item]  # one of the four, by the schema
        agent=hit.agent,
        confidence=hit.confidence,
        client=Client(name=hit.client, type=hit.client_type, os=hit.os),
        first=first,
    )


class _Round:
    """One round's publishing, remembering what it read: a burst of opens of one message, or of
    one user's messages, reads the message's earlier events and the user's endpoints once."""

    def __init__(self, conn: Conn, now: int) -> None:
        self.conn = conn
        self.now = now
        self._published: dict[tuple[str, str], bool] = {}  # (message, type) → one exists
        self._endpoints: dict[int, list[store.Subscription]] = {}

    def has(self, message_id: str, event_type: str) -> bool:
        key = (message_id, event_type)
        if key not in self._published:
            self._published[key] = store.has_event(self.conn, message_id, event_type)
        return self._published[key]

    def publish(self, hit: store.DueHit, event_type: EventType) -> tuple[int, HitData]:
        data = hit_data(hit, first=not self.has(hit.message_id, event_type))
        if hit.user_id not in self._endpoints:
            self._endpoints[hit.user_id] = store.subscriptions(self.conn, hit.user_id)
        event_id = publish(
            self.conn, hit.user_id, event_type, hit.message_id, data, now=self.now,
            endpoints=self._endpoints[hit.user_id],
        )  # fmt: skip
        self._published[hit.message_id, event_type] = True
        return event_id, data


def notify_round(conn: Conn, *, now: int, mailer: alerts.Mailer) -> tuple[int, int]:
    """One round in the caller's transaction: (hits taken from the outbox, events published)."""
    store.lock_publishing(conn)  # whether an open is the message's first is then certain
    due = store.due_hits(conn, now=now, limit=BATCH)
    run = _Round(conn, now)
    published = 0
    for hit in due:
        if hit.raw_hits:
            run.publish(hit, HIT)
            published += 1
        if hit.verdict != "human":
            continue
        event_type: EventType = "email.clicked" if hit.kind == "click" else "email.opened"
        first_engagement = not (
            run.has(hit.message_id, "email.opened") or run.has(hit.message_id, "email.clicked")
        )
        event_id, data = run.publish(hit, event_type)
        published += 1
        when = alerts.alerts(hit.alerts, first_engagement=first_engagement, event_type=event_type)
        if when and not hit.muted:
            alerts.queue_alert(conn, hit.user_id, event_id, data, when=when, mailer=mailer, now=now)
    store.take_from_outbox(conn, [h.hit_id for h in due])
    published += alerts.send_digests(conn, mailer=mailer, now=now)
    return len(due), published


class Notifier(Background):
    """Runs notification rounds in the background of ``serve``: when poked (hits stored), and
    every ``poll`` seconds (held hits coming due, hits stored by other nodes). After a round
    that published, ``published`` is called (wake the webhook dispatcher, the streams and the
    deliverer of alerts)."""

    def __init__(
        self,
        writer: Writer,
        *,
        mailer: alerts.Mailer,
        published: Callable[[], None] = lambda: None,
        poll: float = POLL,
        pause: float = PAUSE,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.writer = writer
        self.mailer = mailer
        self.published = published
        self.poll = poll
        self.pause = pause
        self.clock = clock
        super().__init__()

    async def notify_due(self) -> int:
        """Rounds until nothing is due; the events published."""
        total = 0
        while True:
            taken, published = await self.writer.run(
                notify_round, now=self.clock(), mailer=self.mailer
            )
            total += published
            if published:
                self.published()
            if taken < BATCH:
                return total
            # On SQLite a round runs on the event loop: let the requests waiting meanwhile in
            # (and their hits be stored) before the next.
            await asyncio.sleep(0)

    async def _run(self) -> None:
        while True:
            await self._woken(self.poll)
            try:
                await self.notify_due()
            except Exception:
                log.exception("notifying failed; it is tried again in a moment")
            await asyncio.sleep(self.pause)
