"""Every SQL statement of mailbeacon, one function a query, the same text on both stores.

Each function takes a :class:`Conn` first so that it can run on a reader's connection, inside the
writer's transaction, or in a CLI transaction alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg

from mailbeacon.store.db import Conn, Row

# --- users and API keys ---------------------------------------------------------------------


class DuplicateUser(Exception):
    pass


def create_user(conn: Conn, email: str, *, is_admin: bool, now: int) -> int:
    if conn.one("SELECT id FROM users WHERE email = ?", (email,)):
        raise DuplicateUser(email)
    [(user_id,)] = conn.execute(
        "INSERT INTO users (email, is_admin, created_at) VALUES (?, ?, ?) RETURNING id",
        (email, is_admin, now),
    )
    return int(user_id)


def add_api_key(conn: Conn, user_id: int, key_hash: str, prefix: str, *, now: int) -> None:
    conn.execute(
        "INSERT INTO api_keys (user_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?)",
        (user_id, key_hash, prefix, now),
    )


def user_for_key(conn: Conn, key_hash: str) -> tuple[int, str] | None:
    row = conn.one(
        "SELECT u.id, u.email FROM api_keys k JOIN users u ON u.id = k.user_id "
        "WHERE k.key_hash = ?",
        (key_hash,),
    )
    return (int(row[0]), str(row[1])) if row else None


def user_by_email(conn: Conn, email: str) -> int | None:
    row = conn.one("SELECT id FROM users WHERE email = ?", (email,))
    return int(row[0]) if row else None


def first_admin(conn: Conn) -> int | None:
    row = conn.one("SELECT id FROM users WHERE is_admin ORDER BY id LIMIT 1")
    return int(row[0]) if row else None


def count_users(conn: Conn) -> int:
    row = conn.one("SELECT COUNT(*) FROM users")
    return int(row[0]) if row else 0


# --- messages and links ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewMessage:
    id: str
    recipient: str
    campaign: str | None
    sender: str
    subject: str
    sent_at: int
    links: Sequence[str]  # by position


def save_messages(conn: Conn, user_id: int, messages: Iterable[NewMessage], *, now: int) -> None:
    for m in messages:
        [(recipient_id,)] = conn.execute(
            "INSERT INTO recipients (user_id, address, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, address) DO UPDATE SET address = excluded.address "
            "RETURNING id",
            (user_id, m.recipient, now),
        )
        conn.execute(
            "INSERT INTO messages (id, user_id, recipient_id, campaign, sender, subject, "
            "sent_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (m.id, user_id, recipient_id, m.campaign, m.sender, m.subject, m.sent_at, now),
        )
        if m.links:
            conn.executemany(
                "INSERT INTO links (message_id, position, url) VALUES (?, ?, ?)",
                [(m.id, position, url) for position, url in enumerate(m.links)],
            )


def link_url(conn: Conn, message_id: str, position: int) -> str | None:
    row = conn.one(
        "SELECT url FROM links WHERE message_id = ? AND position = ?", (message_id, position)
    )
    return str(row[0]) if row else None


def links_of(conn: Conn, message_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT url FROM links WHERE message_id = ? ORDER BY position", (message_id,)
    )
    return [str(r[0]) for r in rows]


MESSAGE_COLUMNS = (
    "m.id, r.address, m.campaign, m.sender, m.subject, m.sent_at, m.created_at, "
    "(SELECT COUNT(*) FROM hits h WHERE h.message_id = m.id AND h.kind = 'open'), "
    "(SELECT COUNT(*) FROM hits h WHERE h.message_id = m.id AND h.kind = 'click')"
)


def message(conn: Conn, user_id: int, message_id: str) -> Row | None:
    return conn.one(
        f"SELECT {MESSAGE_COLUMNS} FROM messages m JOIN recipients r ON r.id = m.recipient_id "
        "WHERE m.id = ? AND m.user_id = ?",
        (message_id, user_id),
    )


# --- hits -----------------------------------------------------------------------------------

HIT_FIELDS = (
    "message_id, kind, link, at, method, ip, user_agent, accept, accept_language, referer, "
    "via, purpose, verdict, agent, confidence, reasons"
)

_FIELDS = HIT_FIELDS.split(", ")
_CHUNKS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)

# Hits are inserted a batch at a time, in arrival order. The user comes from the message, and a
# hit whose message does not exist (erased) inserts nothing instead of failing its batch.
#
# SQLite: one INSERT of many VALUES rows a chunk: a single statement step, where executemany
# would step (and release the GIL) once a row.
# PostgreSQL, live: one INSERT of the batch as arrays, one array a column: a single round trip,
# with the arrays sent in binary (psycopg dumps them three times faster than as text).


@lru_cache(maxsize=len(_CHUNKS))
def _sqlite_insert(size: int) -> str:
    row = "(" + ", ".join(["?"] * (len(_FIELDS) + 1)) + ")"
    columns = ", ".join(f"v.column{i + 2}" for i in range(len(_FIELDS)))
    return (
        f"INSERT INTO hits (user_id, {HIT_FIELDS}) SELECT m.user_id, {columns} "
        f"FROM (VALUES {', '.join([row] * size)}) AS v "
        "JOIN messages m ON m.id = v.column2 ORDER BY v.column1"
    )


# The PostgreSQL type of each of HIT_FIELDS, for the arrays.
_PG_TYPES = (
    *("text", "text", "int", "bigint", "text", "text", "text", "text"),
    *("text", "text", "text", "text", "text", "text", "real", "text"),
)
PG_INSERT_HITS = (
    f"INSERT INTO hits (user_id, {HIT_FIELDS}) "
    f"SELECT m.user_id, {', '.join('v.' + f for f in _FIELDS)} "
    "FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _PG_TYPES)
    + f") WITH ORDINALITY AS v({HIT_FIELDS}, n) "
    "JOIN messages m ON m.id = v.message_id ORDER BY v.n"
)


# Large batches from the CLI (replay) go faster through COPY and a temporary table.
_PG_INCOMING = (
    "CREATE TEMPORARY TABLE hits_incoming ("
    + ", ".join(f"{f} {t}" for f, t in zip(_FIELDS, _PG_TYPES, strict=True))
    + ", n BIGINT) ON COMMIT DROP"
)
_PG_FROM_INCOMING = (
    f"INSERT INTO hits (user_id, {HIT_FIELDS}) "
    f"SELECT m.user_id, {', '.join('i.' + f for f in _FIELDS)} "
    "FROM hits_incoming i JOIN messages m ON m.id = i.message_id ORDER BY i.n"
)


def pg_hit_columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The batch as one list a column, for ``PG_INSERT_HITS``."""
    return [list(column) for column in zip(*rows, strict=True)]


async def insert_hits_async(
    conn: psycopg.AsyncConnection[Any], rows: Sequence[Sequence[Any]]
) -> None:
    """``insert_hits`` on the server's asynchronous PostgreSQL connection (autocommit)."""
    async with conn.cursor(binary=True) as cur:
        await cur.execute(PG_INSERT_HITS, pg_hit_columns(rows))


def insert_hits(conn: Conn, rows: Sequence[Sequence[Any]]) -> None:
    """Insert hits given as tuples in ``HIT_FIELDS`` order, keeping their order."""
    if isinstance(conn.raw, psycopg.Connection):
        cur = conn.raw.cursor()
        cur.execute(_PG_INCOMING)
        with cur.copy("COPY hits_incoming FROM STDIN") as copy:
            for n, row in enumerate(rows):
                copy.write_row((*row, n))
        cur.execute(_PG_FROM_INCOMING)
        return
    start = 0
    for size in _CHUNKS:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            conn.execute(
                _sqlite_insert(size), [x for n, row in enumerate(chunk) for x in (n, *row)]
            )
            start += size


EVENT_COLUMNS = "h.id, " + ", ".join(f"h.{f}" for f in HIT_FIELDS.split(", ")) + ", l.url"
_EVENT_FROM = "FROM hits h LEFT JOIN links l ON l.message_id = h.message_id AND l.position = h.link"


def hits_of(conn: Conn, message_id: str) -> list[Row]:
    return conn.execute(
        f"SELECT {EVENT_COLUMNS} {_EVENT_FROM} WHERE h.message_id = ? ORDER BY h.id",
        (message_id,),
    )


def events(conn: Conn, user_id: int, after: int, limit: int) -> list[Row]:
    return conn.execute(
        f"SELECT {EVENT_COLUMNS} {_EVENT_FROM} WHERE h.user_id = ? AND h.id > ? "
        "ORDER BY h.id LIMIT ?",
        (user_id, after, limit),
    )


# --- statistics -----------------------------------------------------------------------------


def campaign_counts(conn: Conn, user_id: int, campaign: str | None) -> list[Row]:
    """Per campaign (all when ``campaign`` is None): name, delivered, messages opened, messages
    clicked, open hits, click hits. Messages sent outside a campaign are grouped under NULL."""
    where = "m.user_id = ?" + ("" if campaign is None else " AND m.campaign = ?")
    params: tuple[Any, ...] = (user_id, user_id) + (() if campaign is None else (campaign,))
    return conn.execute(
        "SELECT m.campaign, COUNT(*), "
        "SUM(CASE WHEN h.opens > 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN h.clicks > 0 THEN 1 ELSE 0 END), "
        "COALESCE(SUM(h.opens), 0), COALESCE(SUM(h.clicks), 0) "
        "FROM messages m LEFT JOIN ("
        "  SELECT message_id, "
        "  SUM(CASE WHEN kind = 'open' THEN 1 ELSE 0 END) AS opens, "
        "  SUM(CASE WHEN kind = 'click' THEN 1 ELSE 0 END) AS clicks "
        "  FROM hits WHERE user_id = ? GROUP BY message_id"
        f") h ON h.message_id = m.id WHERE {where} "
        "GROUP BY m.campaign ORDER BY m.campaign",
        params,
    )
