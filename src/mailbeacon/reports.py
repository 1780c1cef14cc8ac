"""What the API and the CLI show: hits as events, messages, and campaign statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Row


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def event(row: Row) -> dict[str, Any]:
    """A hit as the API shows it (``queries.EVENT_COLUMNS`` order)."""
    (id_, message_id, kind, _link, at, method, ip, user_agent, _accept, _lang, _referer, _via,
     _purpose, verdict, agent, confidence, reasons, url) = row  # fmt: skip
    out: dict[str, Any] = {
        "id": id_,
        "message_id": message_id,
        "time": iso(at),
        "kind": kind,
        "method": method,
        "verdict": verdict,
        "agent": agent,
        "confidence": confidence,
        "reasons": json.loads(reasons),
        "ip": ip,
        "user_agent": user_agent,
    }
    if kind == "click":
        out["url"] = url
    return out


def message(conn: Conn, user_id: int, message_id: str) -> dict[str, Any] | None:
    row = queries.message(conn, user_id, message_id)
    if row is None:
        return None
    id_, recipient, campaign, sender, subject, sent_at, created_at, opens, clicks = row
    return {
        "id": id_,
        "recipient": recipient,
        "from": sender,
        "subject": subject,
        "campaign": campaign,
        "sent_at": iso(sent_at),
        "created_at": iso(created_at),
        "opened": opens > 0,
        "counts": {"opens": opens, "clicks": clicks},
        "links": queries.links_of(conn, id_),
        "hits": [event(r) for r in queries.hits_of(conn, id_)],
    }


def events(conn: Conn, user_id: int, after: int, limit: int) -> dict[str, Any]:
    rows = queries.events(conn, user_id, after, limit)
    return {
        "events": [event(r) for r in rows],
        "next": str(rows[-1][0]) if rows else str(after),
    }


def campaign_stats(conn: Conn, user_id: int, campaign: str | None = None) -> list[dict[str, Any]]:
    """Per campaign: deliveries, unique and total opens and clicks, the naive open rate.

    "Unique" is per recipient (each message has one). Every pixel fetch counts here, robots
    included; that is what most tools show, and why it is called naive.
    """
    out = []
    for name, *counts in queries.campaign_counts(conn, user_id, campaign):
        # PostgreSQL sums to NUMERIC; both stores give whole numbers.
        delivered, opened, clicked, opens, clicks = (int(c or 0) for c in counts)
        out.append(
            {
                "campaign": name,
                "delivered": delivered,
                "unique_opens": opened,
                "unique_clicks": clicked,
                "opens": opens,
                "clicks": clicks,
                "naive_open_rate": round(opened / delivered, 4) if delivered else 0.0,
                "naive_click_rate": round(clicked / delivered, 4) if delivered else 0.0,
            }
        )
    return out
