"""What the API and the CLI show: hits as events, messages, and campaign statistics."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from mailbeacon.stats.estimate import ASSUMPTIONS, Seen, estimate
from mailbeacon.store import notify, privacy, queries
from mailbeacon.store.db import Conn, Row


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def event(row: Row) -> dict[str, Any]:
    """A hit as the API shows it (``queries.EVENT_COLUMNS`` order)."""
    (id_, message_id, kind, _link, at, method, ip, user_agent, _accept, _lang, _referer, _via,
     _purpose, verdict, agent, confidence, reasons, client, client_type, os, revised_by,
     revised_at, url) = row  # fmt: skip
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
        "revised_by": revised_by,
        "revised_at": iso(revised_at) if revised_at is not None else None,
        "client": {"name": client, "type": client_type, "os": os},
        "ip": ip,
        "user_agent": user_agent,
    }
    if kind == "click":
        out["url"] = url
    return out


def open_state(hits: list[dict[str, Any]]) -> str:
    """``opened`` (a person's open was seen), ``inferred`` (a person clicked, so opened),
    ``machine_only`` (fetched, but never by a person), ``not_opened`` (nothing, or only the
    sender's own views)."""
    human = {h["kind"] for h in hits if h["verdict"] == "human"}
    if "open" in human:
        return "opened"
    if "click" in human:
        return "inferred"
    return "machine_only" if any(h["verdict"] != "self" for h in hits) else "not_opened"


def message(conn: Conn, user_id: int, message_id: str) -> dict[str, Any] | None:
    row = queries.message(conn, user_id, message_id)
    if row is None:
        return None
    id_, recipient, campaign, sender, subject, sent_at, created_at, _opens, _clicks = row
    hits = [event(r) for r in queries.hits_of(conn, id_)]
    verdicts = Counter(f"{h['kind']}:{h['verdict']}" for h in hits)
    state = open_state(hits)
    return {
        "id": id_,
        "recipient": recipient,
        "from": sender,
        "subject": subject,
        "campaign": campaign,
        "sent_at": iso(sent_at),
        "created_at": iso(created_at),
        "opened": state in ("opened", "inferred"),
        "state": state,
        "tracking": privacy.message_tracking(conn, id_),
        "unsubscribed": queries.unsubscribed_by(conn, id_),
        "alerts_muted": notify.muted(conn, id_),
        "counts": {
            "opens": verdicts["open:human"],
            "clicks": verdicts["click:human"],
            "all_opens": sum(v for k, v in verdicts.items() if k.startswith("open:")),
            "all_clicks": sum(v for k, v in verdicts.items() if k.startswith("click:")),
            "by_verdict": {k: verdicts[k] for k in sorted(verdicts)},
        },
        "links": queries.links_of(conn, id_),
        "hits": hits,
        "delivery": delivery(conn, id_),
    }


def delivery(conn: Conn, message_id: str) -> dict[str, Any] | None:
    """Where the message's copy stands in the outbound queue; None when it was never queued
    (registered through the API and sent by the caller)."""
    row = queries.delivery_of(conn, message_id)
    if row is None:
        return None
    state, attempts, sent_at, last_error = row
    return {
        "state": state,
        "attempts": attempts,
        "sent_at": iso(sent_at) if sent_at is not None else None,
        "last_error": last_error,
    }


def bounces(conn: Conn, user_id: int, after: tuple[int, int], limit: int) -> dict[str, Any]:
    """The user's copies refused for good, in the order they bounced; ``next`` is the cursor."""
    rows = queries.bounces(conn, user_id, after, limit)
    return {
        "bounces": [
            {"recipient": rcpt_to, "message_id": message_id, "time": iso(at), "error": error}
            for _id, rcpt_to, message_id, at, error in rows
        ],
        "next": f"{rows[-1][3]}.{rows[-1][0]}" if rows else f"{after[0]}.{after[1]}",
    }


def events(conn: Conn, user_id: int, after: int, limit: int) -> dict[str, Any]:
    rows = queries.events(conn, user_id, after, limit)
    return {
        "events": [event(r) for r in rows],
        "next": str(rows[-1][0]) if rows else str(after),
    }


def _rate(n: int, delivered: int) -> float:
    return round(n / delivered, 4) if delivered else 0.0


def stats(conn: Conn, scope: queries.Scope) -> list[dict[str, Any]]:
    """Honest statistics per campaign (or for one recipient's messages).

    - ``naive_open_rate``: any pixel fetch, robots included: what most tools show.
    - ``observed_open_rate``: recipients with a human open.
    - ``inferred_open_rate``: … or a human click (a click implies an open).
    - ``estimated_open_rate``: … plus the opens nobody can see, with a 95% interval and the
      estimator's assumptions (``stats.estimate``).
    - ``click_rate``: recipients with a human click. Unique figures are per recipient.
    """
    hits: dict[Any, dict[str, Counter[str]]] = {}
    for key, kind, verdict, agent, n in queries.hit_counts(conn, scope):
        counts = hits.setdefault(key, {"by_verdict": Counter(), "by_agent": Counter()})
        counts["by_verdict"][f"{kind}:{verdict}"] += int(n)
        counts["by_agent"][f"{kind}:{agent}"] += int(n)
    clients: dict[Any, list[dict[str, Any]]] = {}
    for key, client, client_type, os, n in queries.client_counts(conn, scope):
        clients.setdefault(key, []).append(
            {"client": client, "type": client_type, "os": os, "recipients": int(n)}
        )
    out = []
    for (
        key,
        delivered,
        fetched,
        opened,
        clicked,
        inferred,
        mpp,
        mpp_inferred,
        *visible,
    ) in queries.seen(conn, scope):
        opened_v, clicked_v, both_v, outlook, thunderbird = visible
        guess = estimate(
            Seen(delivered, inferred, mpp, mpp_inferred, opened_v, clicked_v, both_v,
                 {"outlook": outlook, "thunderbird": thunderbird})
        )  # fmt: skip
        named: dict[str, Any] = {} if scope.recipient is not None else {"campaign": key}
        out.append(
            named
            | {
                "delivered": delivered,
                "naive_open_rate": _rate(fetched, delivered),
                "observed_open_rate": _rate(opened, delivered),
                "inferred_open_rate": _rate(inferred, delivered),
                "estimated_open_rate": guess.rate,
                "estimated_open_rate_interval": [guess.low, guess.high],
                "click_rate": _rate(clicked, delivered),
                "unique_opens": opened,
                "unique_clicks": clicked,
                "naive_unique_opens": fetched,
                "privacy_protected": mpp,
                "hits": {k: dict(v) for k, v in hits.get(key, {}).items()}
                or {"by_verdict": {}, "by_agent": {}},
                "clients": clients.get(key, []),
                "assumptions": list(ASSUMPTIONS),
            }
        )
    return out
