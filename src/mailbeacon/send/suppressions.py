"""Who is not sent campaigns any more: unsubscribes (and bounces), listed and lifted.

A recipient unsubscribes with the link in their message's ``List-Unsubscribe`` header (or in its
body): ``/u/{token}``, a token of kind ``u`` for the message, so it names the message's user and
recipient without anything else in the URL, and cannot be forged or guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailbeacon.notify import events
from mailbeacon.reports import iso
from mailbeacon.store import queries
from mailbeacon.store.db import Conn
from mailbeacon.tracking.tokens import Signer

UNSUBSCRIBED = "unsubscribed"
BOUNCED = "bounced"


def unsubscribe_url(signer: Signer, public_url: str, message_id: str) -> str:
    return f"{public_url}/u/{signer.sign('u', message_id)}"


@dataclass(frozen=True)
class Subscriber:
    """Whom an unsubscribe link is for, as its page shows them."""

    address: str
    sender: str
    unsubscribed: bool  # suppressed already, for whatever reason


def subscriber(conn: Conn, message_id: str) -> Subscriber | None:
    found = queries.unsubscribe_target(conn, message_id)
    if found is None:
        return None
    _, address, sender, reason = found
    return Subscriber(address, sender, reason is not None)


def unsubscribe(conn: Conn, message_id: str, *, now: int) -> Subscriber | None:
    """Suppress the message's recipient for its user; again does nothing. None: no such message."""
    found = queries.unsubscribe_target(conn, message_id)
    if found is None:
        return None
    user_id, address, sender, reason = found
    queries.add_suppression(conn, user_id, address, UNSUBSCRIBED, message_id, now=now)
    if reason is None:  # told once, however often the link is used
        events.unsubscribed(conn, user_id, address, message_id, now=now)
    return Subscriber(address, sender, True)


def listing(conn: Conn, user_id: int, after: str, limit: int) -> dict[str, Any]:
    """A page of the user's suppressed addresses, by address, as the API shows them."""
    rows = queries.suppressions(conn, user_id, after, limit)
    return {
        "suppressions": [
            {"address": address, "reason": reason, "message_id": message_id, "time": iso(at)}
            for address, reason, message_id, at in rows
        ],
        "next": rows[-1][0] if len(rows) == limit else None,
    }


def lift(conn: Conn, user_id: int, address: str) -> bool:
    """Send to the address again; False if it was not suppressed."""
    return queries.lift_suppression(conn, user_id, address)
