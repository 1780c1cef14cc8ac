"""SQL of webhook endpoints, their deliveries and the delivery log.

Deliveries are created by ``notify.publish`` (one per subscribed endpoint, in the event's own
transaction); here they are claimed, attempted and settled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal, NamedTuple

from mailbeacon.store.db import Conn, Row


class Secret(NamedTuple):
    """A signing secret; a rotated-out one keeps signing until ``expires_at`` (µs)."""

    value: str  # whsec_…
    expires_at: int | None  # None: the current secret


class Endpoint(NamedTuple):
    id: str
    user_id: int
    owner: str  # the user's email address
    url: str
    events: tuple[str, ...]
    secrets: tuple[Secret, ...]  # the newest first
    enabled: bool
    disabled_reason: str | None
    failing_since: int | None  # µs: the first failure since the last success
    created_at: int


def _secrets_json(secrets: Sequence[Secret]) -> str:
    return json.dumps([{"secret": s.value, "expires_at": s.expires_at} for s in secrets])


def _secrets(text: str) -> tuple[Secret, ...]:
    return tuple(Secret(s["secret"], s["expires_at"]) for s in json.loads(text))


_ENDPOINT = (
    "SELECT w.id, w.user_id, u.email, w.url, w.events, w.secrets, w.enabled, w.disabled_reason, "
    "w.failing_since, w.created_at FROM webhooks w JOIN users u ON u.id = w.user_id"
)


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        row[0], int(row[1]), row[2], row[3], tuple(json.loads(row[4])), _secrets(row[5]),
        bool(row[6]), row[7], row[8], int(row[9]),
    )  # fmt: skip


def insert_webhook(
    conn: Conn,
    webhook_id: str,
    user_id: int,
    url: str,
    events: Sequence[str],
    *,
    raw_hits: bool,
    secret: str,
    now: int,
) -> Endpoint:
    conn.execute(
        "INSERT INTO webhooks (id, user_id, url, events, raw_hits, secrets, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (webhook_id, user_id, url, json.dumps(list(events)), raw_hits,
         _secrets_json([Secret(secret, None)]), now),
    )  # fmt: skip
    [row] = conn.execute(f"{_ENDPOINT} WHERE w.id = ?", (webhook_id,))
    return _endpoint(row)


def webhooks(conn: Conn, user_id: int | None) -> list[Endpoint]:
    """The endpoints of a user (None: of everyone), oldest first."""
    if user_id is None:
        return [_endpoint(r) for r in conn.execute(f"{_ENDPOINT} ORDER BY w.created_at, w.id")]
    rows = conn.execute(f"{_ENDPOINT} WHERE w.user_id = ? ORDER BY w.created_at, w.id", (user_id,))
    return [_endpoint(r) for r in rows]


def webhook(conn: Conn, webhook_id: str, user_id: int | None) -> Endpoint | None:
    """An endpoint, if it exists and (unless ``user_id`` is None) belongs to that user."""
    row = conn.one(f"{_ENDPOINT} WHERE w.id = ?", (webhook_id,))
    if row is None or (user_id is not None and int(row[1]) != user_id):
        return None
    return _endpoint(row)


def delete_webhook(conn: Conn, webhook_id: str) -> None:
    """With its deliveries and their log (ON DELETE CASCADE)."""
    conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))


def change_webhook(
    conn: Conn, webhook_id: str, *, url: str, events: Sequence[str], raw_hits: bool
) -> None:
    conn.execute(
        "UPDATE webhooks SET url = ?, events = ?, raw_hits = ? WHERE id = ?",
        (url, json.dumps(list(events)), raw_hits, webhook_id),
    )


def set_secrets(conn: Conn, webhook_id: str, secrets: Sequence[Secret]) -> None:
    conn.execute(
        "UPDATE webhooks SET secrets = ? WHERE id = ?", (_secrets_json(secrets), webhook_id)
    )


def enable_webhook(conn: Conn, webhook_id: str, *, now: int) -> None:
    """Enabled again, with a clean record; the deliveries it kept pending are due now."""
    conn.execute(
        "UPDATE webhooks SET enabled = TRUE, disabled_reason = NULL, failing_since = NULL "
        "WHERE id = ?",
        (webhook_id,),
    )
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ? WHERE webhook_id = ? AND state = 'pending'",
        (now, webhook_id),
    )


def disable_webhook(conn: Conn, webhook_id: str, reason: str) -> bool:
    """Whether it was enabled until now."""
    row = conn.one(
        "UPDATE webhooks SET enabled = FALSE, disabled_reason = ? WHERE id = ? AND enabled "
        "RETURNING id",
        (reason, webhook_id),
    )
    return row is not None


class Due(NamedTuple):
    """A delivery claimed for an attempt, with what the attempt needs."""

    id: int
    attempts: int  # made before this one
    webhook_id: str
    user_id: int
    url: str
    secrets: tuple[Secret, ...]
    event_id: str  # the event's public id: the webhook-id header, the same on every attempt
    event_type: str
    created_at: int  # the event's time: the payload's timestamp
    data: str  # JSON


# As queries.claim_outbound: claiming pushes the next attempt past a lease, so that no other
# claimer sees the delivery as due, and a claimer that dies leaves it due again after the lease.
# The deliveries of a disabled endpoint stay pending but are passed over.
_CLAIM = (
    "UPDATE deliveries SET next_attempt_at = ? WHERE id IN ("
    "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? "
    "AND webhook_id IN (SELECT id FROM webhooks WHERE enabled) "
    "ORDER BY next_attempt_at LIMIT ?{lock}) RETURNING id"
)
_CLAIM_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


def claim_deliveries(conn: Conn, *, now: int, until: int, limit: int) -> list[Due]:
    """Up to ``limit`` deliveries due at ``now``, the longest due first, leased ``until``."""
    ids = [int(r[0]) for r in conn.execute(_CLAIM.format(lock=_CLAIM_LOCK[conn.dialect]),
                                           (until, now, limit))]  # fmt: skip
    if not ids:
        return []
    rows = conn.execute(
        "SELECT d.id, d.attempts, w.id, w.user_id, w.url, w.secrets, e.public_id, e.type, "
        "e.created_at, e.data FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        f"JOIN events e ON e.id = d.event_id WHERE d.id IN ({', '.join('?' * len(ids))}) "
        "ORDER BY d.next_attempt_at, d.id",
        ids,
    )
    return [
        Due(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], _secrets(r[5]), r[6], r[7], int(r[8]),
            r[9])
        for r in rows
    ]  # fmt: skip


def log_attempt(
    conn: Conn,
    delivery_id: int,
    *,
    at: int,
    status: int | None,
    error: str | None,
    duration_us: int,
) -> None:
    """Add an attempt to the endpoint's delivery log (unless the endpoint is gone since)."""
    conn.execute(
        "INSERT INTO delivery_attempts (delivery_id, webhook_id, at, status, error, duration_us) "
        "SELECT id, webhook_id, ?, ?, ?, ? FROM deliveries WHERE id = ?",
        (at, status, error, duration_us, delivery_id),
    )


DeliveryState = Literal["pending", "delivered", "failed"]


def settle_attempt(
    conn: Conn, delivery_id: int, *, state: DeliveryState, next_attempt_at: int
) -> bool:
    """Count an attempt: the delivery is done (``delivered``, ``failed``; ``next_attempt_at``
    then keeps the time of the last attempt) or due again. Only while it is pending: should a
    lease run out under a slow attempt and another claimer attempt it too, the first outcome
    stands. Whether it counted."""
    row = conn.one(
        "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ? "
        "WHERE id = ? AND state = 'pending' RETURNING id",
        (state, next_attempt_at, delivery_id),
    )
    return row is not None


def webhook_succeeded(conn: Conn, webhook_id: str) -> None:
    conn.execute("UPDATE webhooks SET failing_since = NULL WHERE id = ?", (webhook_id,))


def webhook_failed(conn: Conn, webhook_id: str, *, at: int) -> int | None:
    """Note a failure; since when the endpoint has been failing (None: it is gone)."""
    row = conn.one(
        "UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ? "
        "RETURNING failing_since",
        (at, webhook_id),
    )
    return int(row[0]) if row else None


class Attempt(NamedTuple):
    """One line of an endpoint's delivery log."""

    id: int
    delivery_id: int
    event_type: str
    event_id: str  # the webhook-id header
    at: int
    status: int | None
    error: str | None
    duration_us: int
    state: DeliveryState  # the delivery's state now


def attempts(conn: Conn, webhook_id: str, after: int, limit: int) -> list[Attempt]:
    """The endpoint's attempts with ids past ``after``, oldest first."""
    rows = conn.execute(
        "SELECT a.id, a.delivery_id, e.type, e.public_id, a.at, a.status, a.error, "
        "a.duration_us, d.state FROM delivery_attempts a "
        "JOIN deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id "
        "WHERE a.webhook_id = ? AND a.id > ? ORDER BY a.id LIMIT ?",
        (webhook_id, after, limit),
    )
    return [
        Attempt(int(r[0]), int(r[1]), r[2], r[3], int(r[4]),
                None if r[5] is None else int(r[5]), r[6], int(r[7]), r[8])
        for r in rows
    ]  # fmt: skip
