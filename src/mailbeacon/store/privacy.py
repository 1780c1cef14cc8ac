"""The store's side of privacy: tracking modes and consent, a recipient's data exported or
erased (``mailbeacon.privacy`` says what the modes mean)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailbeacon.privacy import Mode, recipient_mode, strictest
from mailbeacon.store.db import Conn
from mailbeacon.store.queries import HIT_FIELDS


def user_privacy(conn: Conn, user_id: int) -> tuple[Mode, bool, int]:
    """The user's default mode, whether they require consent, and their retention in days
    (0: the server's)."""
    row = conn.one(
        "SELECT tracking, consent_required, retention_days FROM users WHERE id = ?", (user_id,)
    )
    if row is None:
        return "full", False, 0
    return strictest(str(row[0])), bool(row[1]), int(row[2])


def set_user_privacy(
    conn: Conn, user_id: int, *, tracking: Mode, consent_required: bool, retention_days: int
) -> None:
    conn.execute(
        "UPDATE users SET tracking = ?, consent_required = ?, retention_days = ? WHERE id = ?",
        (tracking, consent_required, retention_days, user_id),
    )


def modes(
    conn: Conn, user_id: int, addresses: Sequence[str], asked: Mode | None = None
) -> dict[str, Mode]:
    """Each address's mode for a send: the strictest of the user's, the send's (``asked``) and
    the recipient's own, consent included."""
    default, required, _ = user_privacy(conn, user_id)
    send = strictest(default, asked or "full")
    known: dict[str, Mode] = {}
    lowered = sorted({a.lower() for a in addresses})
    for start in range(0, len(lowered), 500):
        chunk = lowered[start : start + 500]
        rows = conn.execute(
            "SELECT lower(address), tracking, consent FROM recipients WHERE user_id = ? "
            f"AND lower(address) IN ({', '.join('?' * len(chunk))})",
            (user_id, *chunk),
        )
        for address, tracking, consent in rows:
            known[str(address)] = recipient_mode(str(tracking), str(consent), required)
    unknown = recipient_mode("full", "unknown", required)
    return {a: strictest(send, known.get(a.lower(), unknown)) for a in addresses}


def _recipient(conn: Conn, user_id: int, address: str, now: int) -> int:
    """The recipient's id, the row made if there is none (addresses compare lowercased)."""
    row = conn.one(
        "SELECT id FROM recipients WHERE user_id = ? AND lower(address) = ? ORDER BY id LIMIT 1",
        (user_id, address.lower()),
    )
    if row is not None:
        return int(row[0])
    [(id_,)] = conn.execute(
        "INSERT INTO recipients (user_id, address, created_at) VALUES (?, ?, ?) RETURNING id",
        (user_id, address, now),
    )
    return int(id_)


def set_consent(
    conn: Conn, user_id: int, address: str, state: str, source: str, *, now: int
) -> None:
    conn.execute(
        "UPDATE recipients SET consent = ?, consent_at = ?, consent_source = ? WHERE id = ?",
        (state, now, source, _recipient(conn, user_id, address, now)),
    )


def set_recipient_tracking(conn: Conn, user_id: int, address: str, mode: Mode, *, now: int) -> None:
    conn.execute(
        "UPDATE recipients SET tracking = ? WHERE id = ?",
        (mode, _recipient(conn, user_id, address, now)),
    )


def message_tracking(conn: Conn, message_id: str) -> str:
    row = conn.one("SELECT tracking FROM messages WHERE id = ?", (message_id,))
    return str(row[0]) if row else "off"


def consent_target(conn: Conn, message_id: str) -> tuple[int, str, str, str] | None:
    """The user, recipient address, sender and recipient's consent of a message (the consent
    link in it); None for a message unknown, or anonymous (it names nobody)."""
    row = conn.one(
        "SELECT m.user_id, r.address, m.sender, r.consent FROM messages m "
        "JOIN recipients r ON r.id = m.recipient_id WHERE m.id = ? AND m.tracking <> 'anonymous'",
        (message_id,),
    )
    return (int(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None


def recipient_privacy(conn: Conn, user_id: int, address: str) -> dict[str, object] | None:
    """A recipient's mode and consent, as the API shows them; None if never seen."""
    row = conn.one(
        "SELECT address, tracking, consent, consent_at, consent_source FROM recipients "
        "WHERE user_id = ? AND lower(address) = ? ORDER BY id LIMIT 1",
        (user_id, address.lower()),
    )
    if row is None:
        return None
    keys = ("address", "tracking", "consent", "consent_at", "consent_source")
    return dict(zip(keys, row, strict=True))


# One recipient's messages, of one user: ``?`` the user, ``?`` the lowercased address.
_MESSAGES = (
    "SELECT m.id FROM messages m JOIN recipients r ON r.id = m.recipient_id "
    "WHERE m.user_id = ? AND lower(r.address) = ?"
)


def export(conn: Conn, user_id: int, address: str) -> dict[str, list[dict[str, Any]]]:
    """Everything kept about one recipient of a user, table by table (times in µs)."""
    key = (user_id, address.lower())

    def rows(columns: str, rest: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        names = columns.split(", ")
        found = conn.execute(f"SELECT {columns} {rest}", params)
        return [dict(zip(names, row, strict=True)) for row in found]

    mine = f"message_id IN ({_MESSAGES})"
    found = {
        "recipient": rows(
            "address, tracking, consent, consent_at, consent_source, created_at",
            "FROM recipients WHERE user_id = ? AND lower(address) = ?",
            key,
        ),
        "messages": rows(
            "id, campaign, sender, subject, sent_at, tracking, created_at",
            f"FROM messages WHERE id IN ({_MESSAGES}) ORDER BY created_at",
            key,
        ),
        "links": rows(
            "message_id, position, url",
            f"FROM links WHERE {mine} ORDER BY message_id, position",
            key,
        ),
        "hits": rows(
            f"id, {HIT_FIELDS}, revised_by, revised_at", f"FROM hits WHERE {mine} ORDER BY id", key
        ),
        "events": rows(
            "public_id, type, message_id, created_at, data",
            f"FROM events WHERE user_id = ? AND {mine} ORDER BY id",
            (user_id, *key),
        ),
        "copies": rows(
            "id, message_id, mail_from, rcpt_to, state, attempts, sent_at, last_error",
            f"FROM outbound WHERE user_id = ? AND ({mine} OR lower(rcpt_to) = ?) ORDER BY id",
            (user_id, *key, key[1]),
        ),
        "suppressions": rows(
            "address, reason, message_id, created_at",
            "FROM suppressions WHERE user_id = ? AND lower(address) = ?",
            key,
        ),
        "campaign_sends": rows(
            "campaign, address, message_id, state, created_at",
            "FROM campaign_sends WHERE user_id = ? AND lower(address) = ?",
            key,
        ),
    }
    for event in found["events"]:
        event["data"] = json.loads(event["data"])
    return found


def erase(conn: Conn, user_id: int, address: str) -> dict[str, int]:
    """Remove one recipient of a user everywhere: hits and their queues, events with their
    webhook deliveries and digests, copies in the outbound queue, campaign records, kept
    figures of their campaigns (computed again), and the recipient. A suppression stays (it is
    what keeps them from being mailed again). How many rows of each went."""
    key = (user_id, address.lower())
    removed: dict[str, int] = {}

    def delete(name: str, sql: str, params: Sequence[Any]) -> None:
        removed[name] = len(conn.execute(sql + " RETURNING 1", params))

    hits = f"SELECT id FROM hits WHERE message_id IN ({_MESSAGES})"
    delete("hit_outbox", f"DELETE FROM hit_outbox WHERE hit_id IN ({hits})", key)
    delete("settle_queue", f"DELETE FROM settle_queue WHERE hit_id IN ({hits})", key)
    delete("hits", f"DELETE FROM hits WHERE message_id IN ({_MESSAGES})", key)
    delete(
        "events",  # their deliveries, attempts and digest rows go with them (foreign keys)
        f"DELETE FROM events WHERE user_id = ? AND message_id IN ({_MESSAGES})",
        (user_id, *key),
    )
    delete(
        "copies",
        f"DELETE FROM outbound WHERE user_id = ? AND (message_id IN ({_MESSAGES}) "
        "OR lower(rcpt_to) = ?)",
        (user_id, *key, key[1]),
    )
    delete(
        "campaign_figures",
        "DELETE FROM campaign_figures WHERE user_id = ? AND campaign IN (SELECT campaign "
        f"FROM messages WHERE id IN ({_MESSAGES}))",
        (user_id, *key),
    )
    delete(
        "campaign_sends",
        "DELETE FROM campaign_sends WHERE user_id = ? AND lower(address) = ?",
        key,
    )
    delete("messages", f"DELETE FROM messages WHERE id IN ({_MESSAGES})", key)  # links go too
    delete("recipients", "DELETE FROM recipients WHERE user_id = ? AND lower(address) = ?", key)
    return removed
