"""The events mailbeacon tells about, and publishing one.

An event is published once, in the transaction of what caused it (a settled hit, a bounce, an
unsubscribe): it gets its place in the user's stream (``events.id``, the stream's event id) and
one delivery per webhook endpoint of the user that subscribes to its type. Payloads have the
Standard Webhooks shape ``{"type", "timestamp", "data"}``; ``data`` is one of the typed dicts
below, which the OpenAPI document and the README describe from these definitions.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict, get_args

from mailbeacon.reports import iso
from mailbeacon.store import notify as store
from mailbeacon.store.db import Conn

EventType = Literal[
    "email.opened", "email.clicked", "email.hit", "email.bounced", "email.unsubscribed"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
HIT: EventType = "email.hit"


class Client(TypedDict):
    """The mail client or browser the hit came from, as far as it can be told."""

    name: str  # e.g. "Apple Mail", "Outlook", "Gmail": empty when unknown
    type: str  # desktop | mobile | webmail | proxy | browser | "" (unknown)
    os: str


class HitData(TypedDict):
    """``email.opened``, ``email.clicked`` (a person's hits only) and ``email.hit`` (every hit,
    whatever its verdict)."""

    message_id: str
    recipient: str
    subject: str
    campaign: str | None
    hit_id: int
    kind: Literal["open", "click"]
    url: str | None  # the link followed, for clicks
    time: str  # ISO 8601, UTC: when the hit arrived
    seconds_after_sending: float
    verdict: Literal["human", "machine", "self", "unknown"]
    agent: str
    confidence: float
    client: Client
    first: bool  # the message's first event of this type (email.opened, email.clicked)


class BounceData(TypedDict):
    """``email.bounced``: the upstream server refused the copy for good, or its retries ran
    out."""

    message_id: str | None  # None for an untracked copy
    recipient: str
    subject: NotRequired[str]
    campaign: NotRequired[str | None]
    error: str  # the server's reply, or why mailbeacon gave up


class UnsubscribeData(TypedDict):
    """``email.unsubscribed``: the recipient used the message's unsubscribe link or its
    one-click ``List-Unsubscribe``."""

    message_id: str
    recipient: str
    subject: str
    campaign: str | None


DATA_TYPES: dict[str, type] = {
    "email.opened": HitData,
    "email.clicked": HitData,
    "email.hit": HitData,
    "email.bounced": BounceData,
    "email.unsubscribed": UnsubscribeData,
}


def payload(event_type: str, created_at: int, data: str) -> bytes:
    """The body of a webhook delivery and of a stream event: ``data`` is the stored JSON."""
    return (
        f'{{"type":{json.dumps(event_type)},"timestamp":{json.dumps(iso(created_at))},'
        f'"data":{data}}}'
    ).encode()


def publish(
    conn: Conn,
    user_id: int,
    event_type: EventType,
    message_id: str | None,
    data: HitData | BounceData | UnsubscribeData | dict[str, Any],
    *,
    now: int,
    endpoints: Sequence[store.Subscription] | None = None,
) -> int:
    """Publish an event in the caller's transaction; its id (the stream's event id).
    ``endpoints``: the user's ``store.subscriptions``, when the caller has read them."""
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    public_id = "msg_" + secrets.token_urlsafe(18)
    return store.publish(
        conn, user_id, event_type, message_id, encoded, public_id=public_id, now=now,
        endpoints=endpoints,
    )  # fmt: skip


def bounced(
    conn: Conn, user_id: int, recipient: str, message_id: str | None, error: str, *, now: int
) -> None:
    """Publish ``email.bounced`` in the transaction that records the bounce."""
    data = BounceData(message_id=message_id, recipient=recipient, error=error)
    facts = store.message_facts(conn, message_id) if message_id else None
    if facts is not None:
        data["subject"], data["campaign"] = facts
    publish(conn, user_id, "email.bounced", message_id, data, now=now)


def unsubscribed(conn: Conn, user_id: int, recipient: str, message_id: str, *, now: int) -> None:
    """Publish ``email.unsubscribed`` in the transaction that records it."""
    subject, campaign = store.message_facts(conn, message_id) or ("", None)
    data = UnsubscribeData(
        message_id=message_id, recipient=recipient, subject=subject, campaign=campaign
    )
    publish(conn, user_id, "email.unsubscribed", message_id, data, now=now)
