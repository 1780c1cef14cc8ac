"""Every SQL statement of mailbeacon, one function a query, the same text on both stores.

Each function takes a :class:`Conn` first so that it can run on a reader's connection, inside the
writer's transaction, or in a CLI transaction alike.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import psycopg

from mailbeacon.store import partitions
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


class ApiKey(NamedTuple):
    id: int
    prefix: str  # its first characters: the key itself is never stored
    created_at: int


def api_keys_of(conn: Conn, user_id: int) -> list[ApiKey]:
    rows = conn.execute(
        "SELECT id, prefix, created_at FROM api_keys WHERE user_id = ? ORDER BY id", (user_id,)
    )
    return [ApiKey(int(r[0]), r[1], int(r[2])) for r in rows]


def revoke_api_key(conn: Conn, user_id: int, key_id: int) -> bool:
    """Delete one of the user's keys; False when they have no such key."""
    rows = conn.execute(
        "DELETE FROM api_keys WHERE id = ? AND user_id = ? RETURNING id", (key_id, user_id)
    )
    return bool(rows)


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


def track_default(conn: Conn, user_id: int) -> bool:
    row = conn.one("SELECT track_default FROM users WHERE id = ?", (user_id,))
    return bool(row[0]) if row else False


def set_track_default(conn: Conn, user_id: int, on: bool) -> None:
    conn.execute("UPDATE users SET track_default = ? WHERE id = ?", (on, user_id))


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
    sender_ip: str | None = None  # the address it was submitted from (API caller, SMTP client)
    tracking: str = "full"  # privacy.MODES, never "off" (such a message is not registered)


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
            "sent_at, created_at, sender_ip, tracking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(m.id, user_id, recipient_id, m.campaign, m.sender, m.subject, m.sent_at),
                *(now, m.sender_ip, m.tracking),
            ),
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


def message_facts(conn: Conn, message_id: str) -> tuple[int, int, str | None, str] | None:
    """user_id, sent_at, sender_ip and tracking mode of a message, for classifying its hits."""
    row = conn.one(
        "SELECT user_id, sent_at, sender_ip, tracking FROM messages WHERE id = ?", (message_id,)
    )
    return (int(row[0]), int(row[1]), row[2], str(row[3])) if row else None


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
    "via, purpose, verdict, agent, confidence, reasons, client, client_type, os"
)

_FIELDS = HIT_FIELDS.split(", ")
_AT = _FIELDS.index("at")
_CHUNKS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)

# Hits are inserted a batch at a time, in arrival order. The user comes from the message, and a
# hit whose message does not exist (erased) inserts nothing instead of failing its batch.
#
# SQLite: one INSERT of many VALUES rows a chunk: a single statement step, where executemany
# would step (and release the GIL) once a row.
# PostgreSQL, live: one INSERT of the batch as arrays, one array a column: a single round trip,
# with the arrays sent in binary: ``%b``, since ``%s`` has psycopg dump lists of text as text,
# escaping each element by regular expression (930 µs a batch of 31 hits against 150 µs).


# What says who fetched is stored for messages tracked in full only (privacy). A hit row is
# already made so (ingest.hits); the statement makes sure of it whatever path a row came by (a
# hit answered while its message could not be read, spooled, stored later).
_WHO = frozenset({"ip", "user_agent", "accept", "accept_language", "referer", "via", "purpose"})


def _stored(columns: Sequence[str]) -> str:
    """The select list of an insert into hits: ``columns`` beside HIT_FIELDS, messages as m."""
    return ", ".join(
        f"CASE WHEN m.tracking = 'full' THEN {c} ELSE '' END" if f in _WHO else c
        for f, c in zip(_FIELDS, columns, strict=True)
    )


@lru_cache(maxsize=len(_CHUNKS))
def _sqlite_insert(size: int) -> str:
    row = "(" + ", ".join(["?"] * (len(_FIELDS) + 1)) + ")"
    columns = _stored([f"v.column{i + 2}" for i in range(len(_FIELDS))])
    return (
        f"INSERT INTO hits (user_id, {HIT_FIELDS}) SELECT m.user_id, {columns} "
        f"FROM (VALUES {', '.join([row] * size)}) AS v "
        "JOIN messages m ON m.id = v.column2 ORDER BY v.column1"
    )


# The PostgreSQL type of each of HIT_FIELDS, for the arrays.
_PG_TYPES = (
    *("text", "text", "int", "bigint", "text", "text", "text", "text"),
    *("text", "text", "text", "text", "text", "text", "real", "text"),
    *("text", "text", "text"),
)
# Live hits that may notify go into the hit outbox in the same statement (notify.notifier): a
# person's, and every hit of a user with an endpoint subscribed to raw hits. Settling only ever
# makes a verdict ``machine``, so no hit left out could have notified later.
# Hits of anonymous messages notify nobody (privacy): an event would name the message.
_NOTIFIES = (
    "m.tracking <> 'anonymous' AND (h.verdict = 'human' "
    "OR h.user_id IN (SELECT user_id FROM webhooks WHERE raw_hits AND enabled))"
)
# A hit within the hold of its message's sending is due that long after it arrived.
_OUTBOX = (
    "INSERT INTO hit_outbox (hit_id, user_id, due_at) SELECT h.id, h.user_id, "
    "CASE WHEN h.at - m.sent_at < ? THEN h.at + ? ELSE h.at END "
    "FROM {hits} h JOIN messages m ON m.id = h.message_id WHERE {where}"
)
# Clicks go into the settle queue with their hit (classify.settle).
_SETTLE_QUEUE = "INSERT INTO settle_queue (hit_id) SELECT id FROM {hits} WHERE kind = 'click'"
PG_INSERT_HITS = (
    f"WITH inserted AS (INSERT INTO hits (user_id, {HIT_FIELDS}) "
    f"SELECT m.user_id, {_stored(['v.' + f for f in _FIELDS])} "
    "FROM unnest("
    + ", ".join(f"%b::{t}[]" for t in _PG_TYPES)
    + f") WITH ORDINALITY AS v({HIT_FIELDS}, n) "
    "JOIN messages m ON m.id = v.message_id ORDER BY v.n "
    "RETURNING id, user_id, message_id, at, verdict, kind), "
    f"queued AS ({_SETTLE_QUEUE.format(hits='inserted')}), "
    "marked AS (INSERT INTO hit_batches (token, at) VALUES (%s, %s)) "
    + _OUTBOX.format(hits="inserted", where=f"{_NOTIFIES}").replace("?", "%s")
)
_SQLITE_OUTBOX = _OUTBOX.format(hits="hits", where=f"h.id > ? AND ({_NOTIFIES})")


# Large batches from the CLI (replay) go faster through COPY and a temporary table.
_PG_INCOMING = (
    "CREATE TEMPORARY TABLE hits_incoming ("
    + ", ".join(f"{f} {t}" for f, t in zip(_FIELDS, _PG_TYPES, strict=True))
    + ", n BIGINT) ON COMMIT DROP"
)
_PG_FROM_INCOMING = (
    f"WITH inserted AS (INSERT INTO hits (user_id, {HIT_FIELDS}) "
    f"SELECT m.user_id, {_stored(['i.' + f for f in _FIELDS])} "
    "FROM hits_incoming i JOIN messages m ON m.id = i.message_id ORDER BY i.n "
    f"RETURNING id, kind) {_SETTLE_QUEUE.format(hits='inserted')}"
)


def pg_hit_columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The batch as one list a column, for ``PG_INSERT_HITS``."""
    return [list(column) for column in zip(*rows, strict=True)]


async def insert_hits_async(
    conn: psycopg.AsyncConnection[Any], rows: Sequence[Sequence[Any]], hold: int, batch: int
) -> None:
    """``insert_live_hits`` on the server's asynchronous PostgreSQL connection, marked as the
    batch ``batch`` (``hit_batches``)."""
    async with conn.cursor() as cur:
        await cur.execute(
            PG_INSERT_HITS, [*pg_hit_columns(rows), batch, time.time_ns() // 1000, hold, hold]
        )


# --- the spool ----------------------------------------------------------------------------------


class Spooled(NamedTuple):
    """A hit of the node's spool (store.spool)."""

    seq: int
    batch: int | None  # the live batch it was sent in, when that batch may have committed
    row: tuple[Any, ...]


_DRAINED = "SELECT up_to FROM spool_drains WHERE spool = ?"
_MARK_DRAINED = (
    "INSERT INTO spool_drains (spool, up_to) VALUES (?, ?) "
    "ON CONFLICT (spool) DO UPDATE SET up_to = excluded.up_to"
)


def _undrained(
    up_to: Row | None, committed: Iterable[Row], spooled: Sequence[Spooled]
) -> list[tuple[Any, ...]]:
    """The spooled hits not stored yet: past the spool's drained mark, and not of a batch that
    committed after all."""
    done = int(up_to[0]) if up_to else 0
    batches = {int(token) for (token,) in committed}
    return [s.row for s in spooled if s.seq > done and s.batch not in batches]


def drain_spooled(conn: Conn, spool: str, spooled: Sequence[Spooled], hold: int) -> None:
    """Store spooled hits as live ones (SQLite), and move the spool's drained mark past them."""
    tokens = [s.batch for s in spooled if s.batch is not None]
    committed = conn.execute(
        f"SELECT token FROM hit_batches WHERE token IN ({', '.join('?' * len(tokens))})", tokens
    ) if tokens else []  # fmt: skip
    rows = _undrained(conn.one(_DRAINED, (spool,)), committed, spooled)
    if rows:
        insert_live_hits(conn, rows, hold)
    conn.execute(_MARK_DRAINED, (spool, spooled[-1].seq))


async def drain_spooled_async(
    conn: psycopg.AsyncConnection[Any], spool: str, spooled: Sequence[Spooled], hold: int
) -> None:
    """``drain_spooled`` on PostgreSQL, in one transaction of the asynchronous connection."""
    async with conn.transaction():
        up_to = await (await conn.execute(_DRAINED.replace("?", "%s"), (spool,))).fetchone()
        tokens = [s.batch for s in spooled if s.batch is not None]
        found = await conn.execute("SELECT token FROM hit_batches WHERE token = ANY(%s)", (tokens,))
        rows = _undrained(up_to, await found.fetchall(), spooled)
        if rows:
            await insert_hits_async(conn, rows, hold, secrets.randbits(63))
        await conn.execute(_MARK_DRAINED.replace("?", "%s"), (spool, spooled[-1].seq))


def forget_batches(conn: Conn, before: int) -> None:
    conn.execute("DELETE FROM hit_batches WHERE at < ?", (before,))


def insert_live_hits(conn: Conn, rows: Sequence[Sequence[Any]], hold: int) -> None:
    """``insert_hits``, and those that may notify into the hit outbox, held ``hold`` µs when
    close to sending (SQLite; PostgreSQL's live hits go through ``insert_hits_async``)."""
    before = insert_hits(conn, rows)
    conn.execute(_SQLITE_OUTBOX, (hold, hold, before))


def insert_hits(conn: Conn, rows: Sequence[Sequence[Any]]) -> int:
    """Insert hits given as tuples in ``HIT_FIELDS`` order, keeping their order (replayed
    hits: history, which notifies nobody), their clicks into the settle queue. On SQLite, the
    largest hit id before them (theirs are larger: one writer)."""
    if isinstance(conn.raw, psycopg.Connection):
        # History is of months that may have no table yet: made first, they keep the default
        # partition empty (store.partitions).
        partitions.ensure_months(conn, {partitions.Month.of(row[_AT]) for row in rows})
        cur = conn.raw.cursor()
        cur.execute(_PG_INCOMING)
        with cur.copy("COPY hits_incoming FROM STDIN") as copy:
            for n, row in enumerate(rows):
                copy.write_row((*row, n))
        cur.execute(_PG_FROM_INCOMING)
        return 0
    last = conn.one("SELECT MAX(id) FROM hits")
    before = int(last[0]) if last and last[0] is not None else 0
    _insert_sqlite(conn, rows)
    conn.execute(_SETTLE_QUEUE.format(hits="hits") + " AND id > ?", (before,))
    return before


def _insert_sqlite(conn: Conn, rows: Sequence[Sequence[Any]]) -> None:
    start = 0
    for size in _CHUNKS:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            # Straight to SQLite: hit rows are storable text already (ingest.hits.clean), and
            # this is the pixel's path.
            conn.raw.execute(
                _sqlite_insert(size), [x for n, row in enumerate(chunk) for x in (n, *row)]
            )
            start += size


EVENT_COLUMNS = (
    "h.id, "
    + ", ".join(f"h.{f}" for f in HIT_FIELDS.split(", "))
    + ", h.revised_by, h.revised_at, l.url"
)
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


class Scope(NamedTuple):
    """Which messages statistics cover: a user's, by campaign (``campaign`` None: every
    campaign, each apart) or of one recipient (all together)."""

    user_id: int
    campaign: str | None = None
    recipient: str | None = None

    def where(self) -> tuple[str, str, tuple[Any, ...]]:
        """The grouping key, the condition on ``m`` (messages) and ``r`` (recipients), and its
        parameters."""
        if self.recipient is not None:
            return "r.address", "m.user_id = ? AND r.address = ?", (self.user_id, self.recipient)
        if self.campaign is not None:
            return "m.campaign", "m.user_id = ? AND m.campaign = ?", (self.user_id, self.campaign)
        return "m.campaign", "m.user_id = ?", (self.user_id,)


# One row a message: what its hits showed (1/0), then summed by group. ``mpp``: Apple's
# protection fetched its pixel; outlook/thunderbird: a human open by a client that blocks images.
_PER_MESSAGE = (
    "SELECT {key} AS grp, m.id, "
    # Delivered: registered through the API, or accepted by the upstream server. A copy still
    # queued, or bounced, is in no rate's denominator (it cannot have been opened either).
    "CASE WHEN EXISTS (SELECT 1 FROM outbound o WHERE o.message_id = m.id "
    "AND o.state <> 'sent') THEN 0 ELSE 1 END AS delivered, "
    "MAX(CASE WHEN h.kind = 'open' THEN 1 ELSE 0 END) AS fetched, "
    "MAX(CASE WHEN h.kind = 'open' AND h.verdict = 'human' THEN 1 ELSE 0 END) AS opened, "
    "MAX(CASE WHEN h.kind = 'click' AND h.verdict = 'human' THEN 1 ELSE 0 END) AS clicked, "
    "MAX(CASE WHEN h.agent = 'apple_mpp' THEN 1 ELSE 0 END) AS mpp, "
    "MAX(CASE WHEN h.kind = 'open' AND h.verdict = 'human' AND h.agent = 'outlook' "
    "THEN 1 ELSE 0 END) AS outlook, "
    "MAX(CASE WHEN h.kind = 'open' AND h.verdict = 'human' AND h.agent = 'thunderbird' "
    "THEN 1 ELSE 0 END) AS thunderbird "
    "FROM messages m JOIN recipients r ON r.id = m.recipient_id "
    # A message sent with tracking off is in no rate: nothing of it could be seen.
    "LEFT JOIN hits h ON h.message_id = m.id WHERE m.tracking <> 'off' AND {where} "
    "GROUP BY m.id{group}"
)
_SEEN = (
    "SELECT grp, SUM(delivered), SUM(fetched), SUM(opened), SUM(clicked), "
    "SUM(CASE WHEN opened = 1 OR clicked = 1 THEN 1 ELSE 0 END), "
    "SUM(mpp), SUM(CASE WHEN mpp = 1 AND (opened = 1 OR clicked = 1) THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN mpp = 0 THEN opened ELSE 0 END), "
    "SUM(CASE WHEN mpp = 0 THEN clicked ELSE 0 END), "
    "SUM(CASE WHEN mpp = 0 THEN opened * clicked ELSE 0 END), "
    "SUM(CASE WHEN mpp = 0 THEN outlook ELSE 0 END), "
    "SUM(CASE WHEN mpp = 0 THEN thunderbird ELSE 0 END) "
    "FROM ({per_message}) AS per_message GROUP BY grp ORDER BY grp"
)


def seen(conn: Conn, scope: Scope) -> list[tuple[Any, ...]]:
    """Per group: key, delivered, fetched, opened, clicked, inferred, mpp, mpp_inferred,
    opened/clicked/both outside Apple's protection, outlook and thunderbird opens seen there."""
    key, where, params = scope.where()
    per_message = _PER_MESSAGE.format(key=key, where=where, group=f", {key}")
    return [tuple(int(v or 0) if i else v for i, v in enumerate(row))
            for row in conn.execute(_SEEN.format(per_message=per_message), params)]  # fmt: skip


_HITS_IN_SCOPE = (
    "FROM hits h JOIN messages m ON m.id = h.message_id JOIN recipients r ON r.id = m.recipient_id"
)


def hit_counts(conn: Conn, scope: Scope) -> list[Row]:
    """Per group: key, kind, verdict, agent, hits."""
    key, where, params = scope.where()
    columns = f"{key}, h.kind, h.verdict, h.agent"
    return conn.execute(
        f"SELECT {columns}, COUNT(*) {_HITS_IN_SCOPE} WHERE {where} "
        f"GROUP BY {columns} ORDER BY {key}, h.kind, COUNT(*) DESC",
        params,
    )


def client_counts(conn: Conn, scope: Scope) -> list[Row]:
    """Per group: key, client, client type, OS, recipients who opened with it (human opens)."""
    key, where, params = scope.where()
    columns = f"{key}, h.client, h.client_type, h.os"
    return conn.execute(
        f"SELECT {columns}, COUNT(DISTINCT h.message_id) {_HITS_IN_SCOPE} "
        f"WHERE {where} AND h.verdict = 'human' AND h.kind = 'open' "
        f"GROUP BY {columns} ORDER BY {key}, COUNT(DISTINCT h.message_id) DESC",
        params,
    )


# --- settling -------------------------------------------------------------------------------


class SettleHit(NamedTuple):
    id: int
    message_id: str
    kind: str
    link: int | None
    at: int
    ip: str
    verdict: str
    agent: str
    reasons: str
    revised_by: str | None


class SettleContext(NamedTuple):
    sent_at: int
    hits: list[SettleHit]


_SETTLE_COLUMNS = "id, message_id, kind, link, at, ip, verdict, agent, reasons, revised_by"


_QUEUED = (
    "SELECT {columns} FROM settle_queue q JOIN hits h ON h.id = q.hit_id "
    "ORDER BY q.hit_id LIMIT ?{lock}"
)
# On PostgreSQL, a settler locks the clicks it takes until its transaction ends, and passes over
# those another node's settler holds.
_QUEUED_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE OF q SKIP LOCKED"}


def queued_clicks(conn: Conn, limit: int) -> list[SettleHit]:
    """Up to ``limit`` clicks of the settle queue, the oldest first."""
    columns = ", ".join(f"h.{c}" for c in _SETTLE_COLUMNS.split(", "))
    rows = conn.execute(_QUEUED.format(columns=columns, lock=_QUEUED_LOCK[conn.dialect]), (limit,))
    return [SettleHit(*r) for r in rows]


def hits_near(
    conn: Conn, message_id: str, since: int, until: int, limit: int, *, kind: str
) -> SettleContext:
    """The message's time of sending, and its hits of ``kind`` between two times."""
    row = conn.one("SELECT sent_at FROM messages WHERE id = ?", (message_id,))
    rows = conn.execute(
        f"SELECT {_SETTLE_COLUMNS} FROM hits WHERE message_id = ? AND at >= ? AND at <= ? "
        "AND kind = ? ORDER BY at LIMIT ?",
        (message_id, since, until, kind, limit),
    )
    return SettleContext(int(row[0]) if row else 0, [SettleHit(*r) for r in rows])


class Revised(NamedTuple):
    """A hit's new agent, confidence and reasons (classify.settle.Revision has the same)."""

    hit_id: int
    agent: str
    confidence: float
    reasons: str


def revise_hits(
    conn: Conn, revisions: Sequence[Any], by: str, now: int, *, verdict: str = "machine"
) -> None:
    """Give hits a later verdict, ``machine`` unless said, revised ``by`` a rule of settling or
    by the sender; ``revisions`` have hit_id, agent, confidence and reasons (``Revised``)."""
    if revisions:
        conn.executemany(
            "UPDATE hits SET verdict = ?, agent = ?, confidence = ?, reasons = ?, "
            "revised_by = ?, revised_at = ? WHERE id = ?",
            [(verdict, r.agent, r.confidence, r.reasons, by, now, r.hit_id) for r in revisions],
        )


def mark_settled(conn: Conn, hit_ids: Sequence[int]) -> None:
    """Take settled clicks out of the settle queue."""
    conn.executemany("DELETE FROM settle_queue WHERE hit_id = ?", [(i,) for i in hit_ids])


# --- the outbound queue -----------------------------------------------------------------------


def enqueue_outbound(
    conn: Conn, rows: Sequence[tuple[int, str | None, str, str, bytes]], *, now: int
) -> list[int]:
    """Rows of (user_id, message_id, mail_from, rcpt_to, data); their ids, in order."""
    ids = []
    for user_id, message_id, mail_from, rcpt_to, data in rows:
        [(id_,)] = conn.execute(
            "INSERT INTO outbound (user_id, message_id, mail_from, rcpt_to, data, "
            "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (user_id, message_id, mail_from, rcpt_to, data, now, now),
        )
        ids.append(int(id_))
    return ids


class Queued(NamedTuple):
    """A copy claimed for an attempt to send it."""

    id: int
    user_id: int
    message_id: str | None
    mail_from: str
    rcpt_to: str
    data: bytes
    attempts: int


# Claiming pushes the copies' next attempt past a lease, in one short transaction: no other
# claimer (another node) sees them as due any more, and if this one dies with them, they are due
# again once the lease is over. On PostgreSQL, SKIP LOCKED lets claimers pass over each other's
# rows instead of queueing behind them; SQLite has one writer at a time anyway.
_CLAIM = (
    "UPDATE outbound SET next_attempt_at = ? WHERE id IN ("
    "SELECT id FROM outbound WHERE state = 'queued' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at LIMIT ?{lock}) "
    "RETURNING id, user_id, message_id, mail_from, rcpt_to, data, attempts"
)
_CLAIM_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


def claim_outbound(conn: Conn, *, now: int, until: int, limit: int) -> list[Queued]:
    """Up to ``limit`` copies due at ``now``, the longest due first, leased ``until``."""
    rows = conn.execute(_CLAIM.format(lock=_CLAIM_LOCK[conn.dialect]), (until, now, limit))
    return [Queued(int(r[0]), int(r[1]), r[2], r[3], r[4], bytes(r[5]), int(r[6])) for r in rows]


# Once a copy is done (sent or bounced), next_attempt_at keeps the time of its last attempt.
# Each outcome is recorded only while the copy is still queued: should a lease run out under a
# slow attempt and another node send the copy too, the first outcome stands.


def mark_sent(conn: Conn, outbound_id: int, *, at: int) -> None:
    """Accepted upstream at ``at``: the message's sending time becomes that moment, which
    classification measures from (a scanner's fetch seconds after delivery)."""
    row = conn.one(
        "UPDATE outbound SET state = 'sent', sent_at = ?, next_attempt_at = ?, "
        "attempts = attempts + 1, last_error = NULL WHERE id = ? AND state = 'queued' "
        "RETURNING message_id",
        (at, at, outbound_id),
    )
    if row is not None and row[0] is not None:
        conn.execute("UPDATE messages SET sent_at = ? WHERE id = ?", (at, row[0]))


def mark_all_sent(conn: Conn, accepted: Sequence[tuple[int, int]]) -> None:
    """``mark_sent`` for (outbound id, accepted at) pairs, in one transaction."""
    for outbound_id, at in accepted:
        mark_sent(conn, outbound_id, at=at)


def mark_deferred(conn: Conn, outbound_id: int, *, error: str, retry_at: int) -> None:
    conn.execute(
        "UPDATE outbound SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
        "WHERE id = ? AND state = 'queued'",
        (retry_at, error, outbound_id),
    )


def mark_bounced(
    conn: Conn, outbound_id: int, *, error: str, at: int, suppress: bool
) -> tuple[int, str, str | None] | None:
    """Refused for good (or given up on); with ``suppress``, campaigns skip the recipient.
    The copy's user, recipient and message; None when it was no longer queued."""
    row = conn.one(
        "UPDATE outbound SET state = 'bounced', attempts = attempts + 1, next_attempt_at = ?, "
        "last_error = ? WHERE id = ? AND state = 'queued' RETURNING user_id, rcpt_to, message_id",
        (at, error, outbound_id),
    )
    if row is None:
        return None
    if suppress:
        add_suppression(conn, int(row[0]), str(row[1]), "bounced", row[2], now=at)
    return int(row[0]), str(row[1]), row[2]


def outbound_waiting(conn: Conn) -> int:
    row = conn.one("SELECT COUNT(*) FROM outbound WHERE state = 'queued'")
    return int(row[0]) if row else 0


def delivery_of(conn: Conn, message_id: str) -> Row | None:
    """state, attempts, sent_at, last_error of the message's copy (the latest, if several)."""
    return conn.one(
        "SELECT state, attempts, sent_at, last_error FROM outbound WHERE message_id = ? "
        "ORDER BY id DESC LIMIT 1",
        (message_id,),
    )


def bounces(conn: Conn, user_id: int, after: tuple[int, int], limit: int) -> list[Row]:
    """id, rcpt_to, message_id, time, error of the user's bounced copies, in the order they
    bounced, after the (time, id) ``after``: a copy that bounces after days of retries comes
    after those already listed, whatever its id."""
    return conn.execute(
        "SELECT id, rcpt_to, message_id, next_attempt_at, last_error FROM outbound "
        "WHERE user_id = ? AND state = 'bounced' AND (next_attempt_at, id) > (?, ?) "
        "ORDER BY next_attempt_at, id LIMIT ?",
        (user_id, *after, limit),
    )


# --- campaigns and suppressions ---------------------------------------------------------------
# Suppressed addresses are written lowercased and compared lowercased: whoever wrote a row
# (an unsubscribe, a bounce), "Ann@Example.com" and "ann@example.com" are one recipient.


def campaign_progress(conn: Conn, user_id: int, campaign: str) -> dict[str, str]:
    """The addresses a campaign has dealt with so far, and how: ``queued`` or ``suppressed``."""
    rows = conn.execute(
        "SELECT address, state FROM campaign_sends WHERE user_id = ? AND campaign = ?",
        (user_id, campaign),
    )
    return {str(address): str(state) for address, state in rows}


def claim_campaign_send(
    conn: Conn, user_id: int, campaign: str, address: str, message_id: str, *, now: int
) -> bool:
    """Mark ``address`` queued in the campaign; False if it already was (by another run).

    An address recorded as suppressed is claimed: its suppression was lifted since."""
    row = conn.one(
        "INSERT INTO campaign_sends (user_id, campaign, address, message_id, state, created_at) "
        "VALUES (?, ?, ?, ?, 'queued', ?) "
        "ON CONFLICT (user_id, campaign, address) DO UPDATE SET message_id = excluded.message_id, "
        "state = 'queued', created_at = excluded.created_at "
        "WHERE campaign_sends.state = 'suppressed' RETURNING address",
        (user_id, campaign, address, message_id, now),
    )
    return row is not None


def campaign_suppressed(conn: Conn, user_id: int, campaign: str, address: str, *, now: int) -> None:
    conn.execute(
        "INSERT INTO campaign_sends (user_id, campaign, address, message_id, state, created_at) "
        "VALUES (?, ?, ?, NULL, 'suppressed', ?) "
        "ON CONFLICT (user_id, campaign, address) DO NOTHING",
        (user_id, campaign, address, now),
    )


def suppressed_among(conn: Conn, user_id: int, addresses: Sequence[str]) -> dict[str, str]:
    """Which of these (lowercased) addresses are suppressed, and why."""
    if not addresses:
        return {}
    rows = conn.execute(
        "SELECT lower(address), reason FROM suppressions WHERE user_id = ? "
        f"AND lower(address) IN ({', '.join('?' * len(addresses))})",
        (user_id, *addresses),
    )
    return {str(address): str(reason) for address, reason in rows}


def add_suppression(
    conn: Conn, user_id: int, address: str, reason: str, message_id: str | None, *, now: int
) -> None:
    """Suppress an address (lowercased); an address already suppressed keeps its first reason."""
    conn.execute(
        "INSERT INTO suppressions (user_id, address, reason, message_id, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, address) DO NOTHING",
        (user_id, address.lower(), reason, message_id, now),
    )


def unsubscribe_target(conn: Conn, message_id: str) -> tuple[int, str, str, str | None] | None:
    """A message's user, recipient and sender, and the recipient's suppression reason if any."""
    row = conn.one(
        "SELECT m.user_id, r.address, m.sender, "
        "(SELECT s.reason FROM suppressions s WHERE s.user_id = m.user_id "
        "AND lower(s.address) = lower(r.address) LIMIT 1) "
        "FROM messages m JOIN recipients r ON r.id = m.recipient_id WHERE m.id = ?",
        (message_id,),
    )
    return (int(row[0]), str(row[1]), str(row[2]), row[3]) if row else None


def unsubscribed_by(conn: Conn, message_id: str) -> bool:
    """Whether a recipient unsubscribed through this message (and it still stands)."""
    row = conn.one(
        "SELECT 1 FROM messages m JOIN recipients r ON r.id = m.recipient_id "
        "JOIN suppressions s ON s.user_id = m.user_id AND lower(s.address) = lower(r.address) "
        "WHERE m.id = ? AND s.message_id = m.id AND s.reason = 'unsubscribed'",
        (message_id,),
    )
    return row is not None


def suppressions(conn: Conn, user_id: int, after: str, limit: int) -> list[Row]:
    """address, reason, message_id, created_at: by address, those after ``after``."""
    return conn.execute(
        "SELECT address, reason, message_id, created_at FROM suppressions "
        "WHERE user_id = ? AND address > ? ORDER BY address LIMIT ?",
        (user_id, after, limit),
    )


def lift_suppression(conn: Conn, user_id: int, address: str) -> bool:
    rows = conn.execute(
        "DELETE FROM suppressions WHERE user_id = ? AND lower(address) = ? RETURNING address",
        (user_id, address.lower()),
    )
    return bool(rows)


# --- operations -----------------------------------------------------------------------------


def queue_depths(conn: Conn) -> dict[str, int]:
    """What waits in the store's queues: copies to send, webhook deliveries (pending, and given
    up on), hits to notify, and disabled webhook endpoints."""
    row = conn.one(
        "SELECT (SELECT COUNT(*) FROM outbound WHERE state = 'queued'), "
        "(SELECT COUNT(*) FROM deliveries WHERE state = 'pending'), "
        "(SELECT COUNT(*) FROM deliveries WHERE state = 'failed'), "
        "(SELECT COUNT(*) FROM hit_outbox), "
        "(SELECT COUNT(*) FROM webhooks WHERE NOT enabled)"
    )
    names = ("outbound", "deliveries", "deliveries_failed", "hit_outbox", "webhooks_disabled")
    return dict(zip(names, (int(v) for v in row or (0,) * len(names)), strict=True))
