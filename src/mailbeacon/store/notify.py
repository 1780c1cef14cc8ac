"""SQL of notifications: the hit outbox, events, and their deliveries to webhook endpoints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from mailbeacon.store.db import Conn

# PostgreSQL: events are published one transaction at a time (a transaction-scoped advisory
# lock), so that their ids commit in order and a stream that has read up to an id never misses
# a smaller one committed later; and so that two nodes never both take a message's open for its
# first. SQLite has one writer anyway.
_PUBLISH_LOCK = 0x6D62_6576  # "mbev"


def lock_publishing(conn: Conn) -> None:
    """Publish alone until the transaction ends (PostgreSQL; SQLite writes alone anyway)."""
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_PUBLISH_LOCK,))


class Subscription(NamedTuple):
    webhook_id: str
    events: frozenset[str]


def subscriptions(conn: Conn, user_id: int) -> list[Subscription]:
    """The user's enabled endpoints and the event types each subscribes to."""
    rows = conn.execute(
        "SELECT id, events FROM webhooks WHERE user_id = ? AND enabled ORDER BY id", (user_id,)
    )
    return [Subscription(r[0], frozenset(json.loads(r[1]))) for r in rows]


def publish(
    conn: Conn,
    user_id: int,
    event_type: str,
    message_id: str | None,
    data: str,
    *,
    public_id: str,
    now: int,
    endpoints: Sequence[Subscription] | None = None,
) -> int:
    """Insert an event and a delivery to each enabled endpoint of the user subscribed to its
    type (``endpoints``: the user's ``subscriptions``, when the caller has them), due now; the
    event's id."""
    lock_publishing(conn)
    [(event_id,)] = conn.execute(
        "INSERT INTO events (public_id, user_id, type, message_id, created_at, data) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (public_id, user_id, event_type, message_id, now, data),
    )
    if endpoints is None:
        endpoints = subscriptions(conn, user_id)
    subscribed = [(e.webhook_id, event_id, now, now) for e in endpoints if event_type in e.events]
    if subscribed:
        conn.executemany(
            "INSERT INTO deliveries (webhook_id, event_id, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?)",
            subscribed,
        )
    return int(event_id)


class Event(NamedTuple):
    id: int
    public_id: str
    type: str
    message_id: str | None
    created_at: int
    data: str  # JSON


EVENT_COLUMNS = "id, public_id, type, message_id, created_at, data"


def events_after(
    conn: Conn, user_id: int, after: int, limit: int, types: tuple[str, ...] = ()
) -> list[Event]:
    """The user's events with ids past ``after``, oldest first; of ``types`` when given."""
    where = "user_id = ? AND id > ?"
    if types:
        where += f" AND type IN ({', '.join('?' * len(types))})"
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id LIMIT ?",
        (user_id, after, *types, limit),
    )
    return [Event._make(r) for r in rows]


def last_event_id(conn: Conn, user_id: int) -> int:
    row = conn.one("SELECT MAX(id) FROM events WHERE user_id = ?", (user_id,))
    return int(row[0]) if row and row[0] is not None else 0


def has_event(conn: Conn, message_id: str, event_type: str) -> bool:
    return (
        conn.one(
            "SELECT 1 FROM events WHERE message_id = ? AND type = ? LIMIT 1",
            (message_id, event_type),
        )
        is not None
    )


def event_data(conn: Conn, ids: list[int]) -> list[tuple[int, str]]:
    """(id, data JSON) of events, in the order of ``ids``."""
    if not ids:
        return []
    rows = conn.execute(
        f"SELECT id, data FROM events WHERE id IN ({', '.join('?' * len(ids))})", ids
    )
    by_id = {int(r[0]): r[1] for r in rows}
    return [(i, by_id[i]) for i in ids if i in by_id]


def message_facts(conn: Conn, message_id: str) -> tuple[str, str | None] | None:
    """subject, campaign of a message."""
    row = conn.one("SELECT subject, campaign FROM messages WHERE id = ?", (message_id,))
    return (str(row[0]), row[1]) if row else None


def user_email(conn: Conn, user_id: int) -> str | None:
    row = conn.one("SELECT email FROM users WHERE id = ?", (user_id,))
    return str(row[0]) if row else None


def add_to_digest(conn: Conn, event_id: int, user_id: int, now: int) -> None:
    conn.execute(
        "INSERT INTO alert_digest (event_id, user_id, created_at) VALUES (?, ?, ?)",
        (event_id, user_id, now),
    )


def digests_due(conn: Conn, waited_since: int) -> list[int]:
    """Users whose oldest alert waiting for a digest is from ``waited_since`` or before."""
    rows = conn.execute(
        "SELECT user_id FROM alert_digest GROUP BY user_id HAVING MIN(created_at) <= ? "
        "ORDER BY user_id",
        (waited_since,),
    )
    return [int(r[0]) for r in rows]


def digest_items(conn: Conn, user_id: int) -> list[int]:
    rows = conn.execute(
        "SELECT event_id FROM alert_digest WHERE user_id = ? ORDER BY event_id", (user_id,)
    )
    return [int(r[0]) for r in rows]


def clear_digest(conn: Conn, user_id: int, event_ids: list[int]) -> None:
    conn.executemany(
        "DELETE FROM alert_digest WHERE user_id = ? AND event_id = ?",
        [(user_id, i) for i in event_ids],
    )


class DueHit(NamedTuple):
    """A hit of the outbox whose verdict has settled, with what its events say about it."""

    hit_id: int
    user_id: int
    kind: str
    url: str | None
    at: int
    verdict: str
    agent: str
    confidence: float
    client: str
    client_type: str
    os: str
    message_id: str
    sent_at: int
    subject: str
    campaign: str | None
    muted: bool
    recipient: str
    alerts: str  # the user's alert mode
    owner: str  # the user's email address
    raw_hits: bool  # the user has an endpoint subscribed to every hit


# A hit is due once its hold has passed (``due_at``) and, for a click, once settling has looked
# at it (it may be one of a sweep).
_DUE = (
    "SELECT o.hit_id, o.user_id, h.kind, l.url, h.at, h.verdict, h.agent, h.confidence, "
    "h.client, h.client_type, h.os, m.id, m.sent_at, m.subject, m.campaign, m.muted, "
    "r.address, u.alerts, u.email, "
    "EXISTS (SELECT 1 FROM webhooks w "
    "WHERE w.user_id = o.user_id AND w.raw_hits AND w.enabled) "
    "FROM hit_outbox o JOIN hits h ON h.id = o.hit_id JOIN messages m ON m.id = h.message_id "
    "JOIN recipients r ON r.id = m.recipient_id JOIN users u ON u.id = o.user_id "
    "LEFT JOIN links l ON l.message_id = h.message_id AND l.position = h.link "
    "WHERE o.due_at <= ? "
    "AND (h.kind = 'open' OR NOT EXISTS (SELECT 1 FROM settle_queue q WHERE q.hit_id = h.id)) "
    "ORDER BY o.due_at LIMIT ?{lock}"
)
_DUE_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE OF o SKIP LOCKED"}


def due_hits(conn: Conn, *, now: int, limit: int) -> list[DueHit]:
    """Up to ``limit`` hits of the outbox that are due, oldest first; on PostgreSQL locked, so
    that two nodes never take the same."""
    rows = conn.execute(_DUE.format(lock=_DUE_LOCK[conn.dialect]), (now, limit))
    return [DueHit._make((*r[:15], bool(r[15]), *r[16:19], bool(r[19]))) for r in rows]


def take_from_outbox(conn: Conn, hit_ids: list[int]) -> None:
    conn.executemany("DELETE FROM hit_outbox WHERE hit_id = ?", [(i,) for i in hit_ids])


def alert_mode(conn: Conn, user_id: int) -> str:
    row = conn.one("SELECT alerts FROM users WHERE id = ?", (user_id,))
    return str(row[0]) if row else "off"


def set_alert_mode(conn: Conn, user_id: int, mode: str) -> None:
    conn.execute("UPDATE users SET alerts = ? WHERE id = ?", (mode, user_id))


def muted(conn: Conn, message_id: str) -> bool:
    row = conn.one("SELECT muted FROM messages WHERE id = ?", (message_id,))
    return bool(row[0]) if row else False


def set_muted(conn: Conn, user_id: int, message_id: str, on: bool) -> bool:
    """Mute or unmute the user's message's alerts; False when the user has no such message."""
    row = conn.one(
        "UPDATE messages SET muted = ? WHERE id = ? AND user_id = ? RETURNING id",
        (on, message_id, user_id),
    )
    return row is not None


def mute_target(conn: Conn, message_id: str) -> tuple[str, str, bool] | None:
    """recipient, subject and whether alerts are muted, of a message."""
    row = conn.one(
        "SELECT r.address, m.subject, m.muted FROM messages m "
        "JOIN recipients r ON r.id = m.recipient_id WHERE m.id = ?",
        (message_id,),
    )
    return (str(row[0]), str(row[1]), bool(row[2])) if row else None


def mute_message(conn: Conn, message_id: str) -> tuple[str, str] | None:
    """Mute a message's alerts (a signed link: no user to check); its recipient and subject."""
    conn.execute("UPDATE messages SET muted = TRUE WHERE id = ?", (message_id,))
    found = mute_target(conn, message_id)
    return found[:2] if found else None
