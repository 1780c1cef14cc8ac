"""The durable outbound queue: what the relay and campaigns hand over, kept in the store until the
upstream server has accepted it or refused it for good."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailbeacon.store import queries
from mailbeacon.store.db import Conn


@dataclass(frozen=True)
class Outgoing:
    """One copy for one recipient, as it will go upstream (bytes, CRLF line ends)."""

    user_id: int
    message_id: str | None  # the tracked message it is; None when relayed untracked
    mail_from: str
    rcpt_to: str
    data: bytes


def enqueue(conn: Conn, items: Sequence[Outgoing], *, now: int) -> list[int]:
    """Queue copies in the caller's transaction, due at once; their queue ids, in order."""
    return queries.enqueue_outbound(
        conn, [(i.user_id, i.message_id, i.mail_from, i.rcpt_to, i.data) for i in items], now=now
    )
