"""Webhook endpoints: subscribing one, its signing secrets and their rotation, its delivery log.

A user subscribes a URL to some of the event types (``events.EVENT_TYPES``); each event of those
types is then POSTed to it, signed the Standard Webhooks way (https://www.standardwebhooks.com):
``webhook-signature`` holds a ``v1,<base64 HMAC-SHA256>`` of ``{webhook-id}.{webhook-timestamp}.
{body}`` for each live secret. Rotating a secret keeps the old one signing for a day beside the
new, so that a receiver can switch without refusing a single delivery.
"""

from __future__ import annotations

import base64
import secrets
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from mailbeacon.notify.events import EVENT_TYPES, HIT
from mailbeacon.reports import iso
from mailbeacon.store import webhooks as store
from mailbeacon.store.db import Conn
from mailbeacon.store.webhooks import Endpoint, Secret

SECOND = 1_000_000  # µs
OVERLAP = 24 * 3600 * SECOND  # how long a rotated-out secret keeps signing
MAX_URL = 2000  # characters


class Invalid(ValueError):
    """A URL or a list of event types that cannot be subscribed; the message says why."""


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise Invalid("url: expected an http:// or https:// URL as a string")
    if len(url) > MAX_URL:
        raise Invalid(f"url: at most {MAX_URL} characters")
    if not url.isascii() or any(c in string.whitespace or not c.isprintable() for c in url):
        raise Invalid(
            "url: only printable ASCII without spaces: percent-encode the path, and write an "
            "international host name in its xn-- form"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"url: {url!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (raises on a port that is not one)
    except ValueError as exc:
        raise Invalid(f"url: {url!r} has a bad port: {exc}") from None
    if not parts.hostname:
        raise Invalid(f"url: {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url: a user or password in the URL is not sent; leave them out")
    return url


def check_events(events: Any) -> list[str]:
    """The event types subscribed to, each once, in ``EVENT_TYPES`` order."""
    known = ", ".join(EVENT_TYPES)
    if not isinstance(events, list) or not events:
        raise Invalid(f"events: expected a non-empty list of event types, from: {known}")
    for event in events:
        if event not in EVENT_TYPES:
            raise Invalid(f"events: {event!r} is not an event type; known: {known}")
    return [e for e in EVENT_TYPES if e in events]


def new_secret() -> str:
    """``whsec_`` and 32 random bytes in base64, as Standard Webhooks' libraries take it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create(conn: Conn, user_id: int, url: Any, events: Any, *, now: int) -> tuple[Endpoint, str]:
    """Subscribe ``url`` to ``events``: the endpoint and its secret (shown this once)."""
    url, events = check_url(url), check_events(events)
    webhook_id, secret = "wh_" + secrets.token_urlsafe(12), new_secret()
    endpoint = store.insert_webhook(
        conn, webhook_id, user_id, url, events, raw_hits=HIT in events, secret=secret, now=now
    )
    return endpoint, secret


def change(
    conn: Conn,
    webhook_id: str,
    user_id: int | None,
    *,
    url: Any = None,
    events: Any = None,
    enabled: bool | None = None,
    now: int,
) -> Endpoint | None:
    """Change what is given of an endpoint's URL, events and state (None: no such endpoint).
    Enabling makes the deliveries it kept pending due now."""
    endpoint = store.webhook(conn, webhook_id, user_id)
    if endpoint is None:
        return None
    if url is not None or events is not None:
        url = endpoint.url if url is None else check_url(url)
        events = endpoint.events if events is None else check_events(events)
        store.change_webhook(conn, webhook_id, url=url, events=events, raw_hits=HIT in events)
    if enabled is True and not endpoint.enabled:
        store.enable_webhook(conn, webhook_id, now=now)
    elif enabled is False and endpoint.enabled:
        store.disable_webhook(conn, webhook_id, f"disabled by its owner on {iso(now)}")
    return store.webhook(conn, webhook_id, user_id)


def delete(conn: Conn, webhook_id: str, user_id: int | None) -> bool:
    """Delete an endpoint with its pending deliveries and its log; whether it existed."""
    if store.webhook(conn, webhook_id, user_id) is None:
        return False
    store.delete_webhook(conn, webhook_id)
    return True


def rotate_secret(conn: Conn, webhook_id: str, user_id: int | None, *, now: int) -> str | None:
    """A new secret that signs from now on; the current one keeps signing for ``OVERLAP``.
    The new secret (shown this once), or None: no such endpoint."""
    endpoint = store.webhook(conn, webhook_id, user_id)
    if endpoint is None:
        return None
    secret = new_secret()
    kept = [
        s._replace(expires_at=now + OVERLAP) if s.expires_at is None else s
        for s in live_secrets(endpoint.secrets, now)
    ]
    store.set_secrets(conn, webhook_id, [Secret(secret, None), *kept])
    return secret


def live_secrets(secrets: tuple[Secret, ...], now: int) -> list[Secret]:
    return [s for s in secrets if s.expires_at is None or s.expires_at > now]


def signature(secrets: tuple[Secret, ...], event_id: str, at: int, body: bytes) -> str:
    """The ``webhook-signature`` header: a ``v1,…`` for each live secret, the newest first,
    over the webhook-id, the timestamp (``at``, whole seconds) and the body."""
    moment = datetime.fromtimestamp(at // SECOND, UTC)
    text = body.decode()
    return " ".join(
        Webhook(s.value).sign(event_id, moment, text) for s in live_secrets(secrets, at)
    )


def describe(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API and ``--json`` show it: never its secrets."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": None if endpoint.failing_since is None else iso(endpoint.failing_since),
        "created_at": iso(endpoint.created_at),
    }


def delivery_log(
    conn: Conn, webhook_id: str, user_id: int | None, after: int, limit: int
) -> dict[str, Any] | None:
    """A page of the endpoint's attempts, oldest first; ``next`` is the cursor (None: no such
    endpoint)."""
    if store.webhook(conn, webhook_id, user_id) is None:
        return None
    rows = store.attempts(conn, webhook_id, after, limit)
    return {
        "deliveries": [
            {
                "id": a.id,
                "delivery_id": a.delivery_id,
                "event_type": a.event_type,
                "webhook_id": a.event_id,
                "time": iso(a.at),
                "status": a.status,
                "error": a.error,
                "duration_ms": round(a.duration_us / 1000, 1),
                "state": a.state,
            }
            for a in rows
        ],
        "next": str(rows[-1].id) if rows else str(after),
    }
