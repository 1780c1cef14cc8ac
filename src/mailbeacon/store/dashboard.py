"""SQL of the dashboard's pages: lists to search, and what a campaign's charts show."""

from __future__ import annotations

from typing import Any, NamedTuple

from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Row
from mailbeacon.store.notify import EVENT_COLUMNS, Event

# A message's open state (reports.open_state) in SQL, from its hits: a person's open; a
# person's click; any hit that is not the sender's own.
_HUMAN_OPEN = (
    "EXISTS (SELECT 1 FROM hits h WHERE h.message_id = m.id AND h.kind = 'open' "
    "AND h.verdict = 'human')"
)
_HUMAN_CLICK = (
    "EXISTS (SELECT 1 FROM hits h WHERE h.message_id = m.id AND h.kind = 'click' "
    "AND h.verdict = 'human')"
)
_ANY = "EXISTS (SELECT 1 FROM hits h WHERE h.message_id = m.id AND h.verdict <> 'self')"
STATES = {
    "opened": _HUMAN_OPEN,
    "inferred": f"NOT {_HUMAN_OPEN} AND {_HUMAN_CLICK}",
    "machine_only": f"NOT {_HUMAN_OPEN} AND NOT {_HUMAN_CLICK} AND {_ANY}",
    "not_opened": f"NOT {_ANY}",
}


class Listed(NamedTuple):
    id: str
    recipient: str
    subject: str
    campaign: str | None
    sent_at: int
    created_at: int
    opened: bool
    clicked: bool
    fetched: bool  # any hit but the sender's own


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def messages(
    conn: Conn,
    user_id: int,
    *,
    text: str = "",
    campaign: str = "",
    state: str = "",
    before: tuple[int, str] | None = None,
    limit: int = 50,
) -> list[Listed]:
    """The user's messages, newest first, whose recipient or subject contains ``text``, of a
    campaign, in an open state (``STATES``); the page before (created_at, id) ``before``."""
    where: list[str] = ["m.user_id = ?"]
    params: list[Any] = [user_id]
    if text:
        where.append("(lower(r.address) LIKE ? ESCAPE '\\' OR lower(m.subject) LIKE ? ESCAPE '\\')")
        params += [_like(text), _like(text)]
    if campaign:
        where.append("m.campaign = ?")
        params.append(campaign)
    if state:
        where.append(STATES[state])
    if before is not None:
        where.append("(m.created_at < ? OR (m.created_at = ? AND m.id < ?))")
        params += [before[0], before[0], before[1]]
    rows = conn.execute(
        f"SELECT m.id, r.address, m.subject, m.campaign, m.sent_at, m.created_at, "
        f"{_HUMAN_OPEN}, {_HUMAN_CLICK}, {_ANY} "
        "FROM messages m JOIN recipients r ON r.id = m.recipient_id "
        f"WHERE {' AND '.join(where)} ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
        (*params, limit),
    )
    return [Listed._make((*r[:6], bool(r[6]), bool(r[7]), bool(r[8]))) for r in rows]


def campaigns(conn: Conn, user_id: int) -> list[Row]:
    """name, messages, first and last sending time of each of the user's campaigns, newest
    first."""
    return conn.execute(
        "SELECT campaign, COUNT(*), MIN(sent_at), MAX(sent_at) FROM messages "
        "WHERE user_id = ? AND campaign IS NOT NULL GROUP BY campaign ORDER BY MAX(sent_at) DESC",
        (user_id,),
    )


_CAMPAIGN_OPENS = (
    "FROM hits h WHERE h.message_id IN (SELECT id FROM messages WHERE user_id = ? "
    "AND campaign = ?) AND h.kind = 'open' AND h.verdict = 'human'"
)


def campaign_span(conn: Conn, user_id: int, campaign: str) -> tuple[int, int] | None:
    """When the campaign's first message was sent, and its last person's open (µs)."""
    row = conn.one(
        f"SELECT MIN(m.sent_at), (SELECT MAX(h.at) {_CAMPAIGN_OPENS}) "
        "FROM messages m WHERE m.user_id = ? AND m.campaign = ?",
        (user_id, campaign, user_id, campaign),
    )
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1] if row[1] is not None else row[0])


def opens_over_time(
    conn: Conn, user_id: int, campaign: str, start: int, width: int
) -> list[tuple[int, int]]:
    """People's opens in buckets of ``width`` µs from ``start``: (bucket, opens)."""
    rows = conn.execute(
        f"SELECT (h.at - ?) / ? AS bucket, COUNT(*) {_CAMPAIGN_OPENS} "
        "GROUP BY bucket ORDER BY bucket",
        (start, width, user_id, campaign),
    )
    return [(int(b), int(n)) for b, n in rows]


def first_open_delays(conn: Conn, user_id: int, campaign: str) -> list[int]:
    """For each message a person opened: µs from its sending to the first such open."""
    rows = conn.execute(
        f"SELECT MIN(h.at) - (SELECT sent_at FROM messages WHERE id = h.message_id) "
        f"{_CAMPAIGN_OPENS} GROUP BY h.message_id",
        (user_id, campaign),
    )
    return [int(r[0]) for r in rows]


def top_links(conn: Conn, user_id: int, campaign: str, limit: int = 10) -> list[Row]:
    """url, people's clicks, recipients who clicked, of the campaign's most clicked links."""
    return conn.execute(
        "SELECT l.url, COUNT(*), COUNT(DISTINCT h.message_id) FROM hits h "
        "JOIN links l ON l.message_id = h.message_id AND l.position = h.link "
        "WHERE h.message_id IN (SELECT id FROM messages WHERE user_id = ? AND campaign = ?) "
        "AND h.kind = 'click' AND h.verdict = 'human' "
        "GROUP BY l.url ORDER BY COUNT(*) DESC, l.url LIMIT ?",
        (user_id, campaign, limit),
    )


def human_today(conn: Conn, user_id: int, since: int) -> dict[str, Any]:
    """People's opens and clicks published since ``since`` (µs): counts and recipients."""
    rows = conn.execute(
        "SELECT type, COUNT(*), COUNT(DISTINCT message_id) FROM events "
        "WHERE user_id = ? AND created_at >= ? AND type IN ('email.opened', 'email.clicked') "
        "GROUP BY type",
        (user_id, since),
    )
    found = {t: (int(n), int(m)) for t, n, m in rows}
    opens, opened = found.get("email.opened", (0, 0))
    clicks, clicked = found.get("email.clicked", (0, 0))
    return {"opens": opens, "opened": opened, "clicks": clicks, "clicked": clicked}


def latest_events(conn: Conn, user_id: int, limit: int, types: tuple[str, ...]) -> list[Event]:
    """The user's newest events of ``types``, newest first."""
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE user_id = ? "
        f"AND type IN ({', '.join('?' * len(types))}) ORDER BY id DESC LIMIT ?",
        (user_id, *types, limit),
    )
    return [Event._make(r) for r in rows]


def mark_self(
    conn: Conn, user_id: int, message_id: str, hit_id: int, *, reasons: str, now: int
) -> bool:
    """The sender says a hit of theirs was them: it becomes ``self``. False: no such hit."""
    row = conn.one(
        "SELECT 1 FROM hits WHERE id = ? AND message_id = ? AND user_id = ?",
        (hit_id, message_id, user_id),
    )
    if row is None:
        return False
    revised = queries.Revised(hit_id, "sender", 1.0, reasons)
    queries.revise_hits(conn, [revised], "marked_by_sender", now, verdict="self")
    return True


class Kept(NamedTuple):
    computed_at: int
    took_us: int
    figures: str  # JSON


def kept_figures(conn: Conn, user_id: int, campaign: str) -> Kept | None:
    row = conn.one(
        "SELECT computed_at, took_us, figures FROM campaign_figures "
        "WHERE user_id = ? AND campaign = ?",
        (user_id, campaign),
    )
    return Kept(int(row[0]), int(row[1]), row[2]) if row else None


def keep_figures(
    conn: Conn, user_id: int, campaign: str, *, computed_at: int, took_us: int, figures: str
) -> None:
    conn.execute(
        "INSERT INTO campaign_figures (user_id, campaign, computed_at, took_us, figures) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, campaign) DO UPDATE SET "
        "computed_at = excluded.computed_at, took_us = excluded.took_us, "
        "figures = excluded.figures",
        (user_id, campaign, computed_at, took_us, figures),
    )


def viewed(conn: Conn, user_id: int, campaign: str, at: int) -> None:
    conn.execute(
        "UPDATE campaign_figures SET viewed_at = ? WHERE user_id = ? AND campaign = ?",
        (at, user_id, campaign),
    )


def figures_due(
    conn: Conn, *, now: int, min_messages: int, min_age: int, reuse: int, watched_since: int
) -> list[tuple[int, str]]:
    """(user, campaign) whose figures should be computed in the background: large campaigns
    without any yet, and those looked at lately whose figures are older than ``reuse`` times
    their cost (at least ``min_age`` µs)."""
    rows = conn.execute(
        "SELECT m.user_id, m.campaign FROM messages m LEFT JOIN campaign_figures f "
        "ON f.user_id = m.user_id AND f.campaign = m.campaign WHERE m.campaign IS NOT NULL "
        "GROUP BY m.user_id, m.campaign, f.computed_at, f.took_us, f.viewed_at "
        "HAVING (f.computed_at IS NULL AND COUNT(*) >= ?) OR (f.viewed_at >= ? "
        "AND ? - f.computed_at > CASE WHEN f.took_us * ? > ? THEN f.took_us * ? ELSE ? END)",
        (min_messages, watched_since, now, reuse, min_age, reuse, min_age),
    )
    return [(int(r[0]), str(r[1])) for r in rows]
