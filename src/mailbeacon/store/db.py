"""Connections to SQLite or PostgreSQL behind one small interface.

Queries are written once with ``?`` placeholders (see ``queries.py``); :class:`Conn` turns them into
``%s`` for psycopg. Reads run on per-thread connections; writes go through the single writer
(``writer.py``) when the server runs, or straight through :meth:`Database.transaction` from the CLI.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import psycopg

from mailbeacon.store.migrations import MIGRATIONS
from mailbeacon.text import storable, unstorable

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]
P = ParamSpec("P")
T = TypeVar("T")

# Errors a caller may see from either backend when the database misbehaves (disk full, server
# gone, lock timeout). Tracking routes catch these, log them and still answer.
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class Conn:
    """A connection that speaks one placeholder style on both backends."""

    def __init__(self, raw: sqlite3.Connection | psycopg.Connection[Any], dialect: Dialect):
        self.raw = raw
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return _pg(sql) if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self.raw.cursor()
        cur.execute(self._sql(sql), _storable(params))
        return list(cur.fetchall()) if cur.description else []

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.cursor().executemany(self._sql(sql), (_storable(r) for r in rows))


def _storable(params: Sequence[Any]) -> Sequence[Any]:
    """Text that reached a query from a request (an id in a path, a search) can hold what no
    store takes (``text.storable``): it becomes U+FFFD, and matches nothing, rather than fail."""
    if any(isinstance(p, str) and unstorable(p) for p in params):
        return [storable(p) if isinstance(p, str) else p for p in params]
    return params


class Database:
    """One database, SQLite (a file path) or PostgreSQL (a ``postgresql://`` URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect: Dialect = (
            "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        )
        self._local = threading.local()
        self._readers: list[Conn] = []
        self._lock = threading.Lock()

    def connect(self, *, autocommit: bool = False) -> Conn:
        if self.dialect == "postgresql":
            pg = psycopg.connect(self.url, autocommit=autocommit, connect_timeout=5)
            return Conn(pg, "postgresql")
        Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(self.url, isolation_level=None, check_same_thread=False)
        # WAL lets readers run beside the one writer; FULL makes every commit durable, not just
        # safe against a crash of the process (the writer commits in groups, so it is cheap).
        # A writer waiting for the lock (the CLI writing while `serve` runs) waits 5 s at most.
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("PRAGMA busy_timeout=5000")
        raw.execute("PRAGMA foreign_keys=ON")
        return Conn(raw, "sqlite")

    @contextmanager
    def transaction(self, conn: Conn | None = None) -> Iterator[Conn]:
        """A write transaction, committed on success and rolled back on error."""
        own = conn is None
        conn = conn or self.connect()
        try:
            if conn.dialect == "sqlite":
                conn.raw.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.raw.rollback()
                raise
            conn.raw.commit()
        finally:
            if own:
                conn.raw.close()

    def write(self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in its own write transaction (CLI and tests)."""
        with self.transaction() as conn:
            return fn(conn, *args, **kw)

    def read(self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` on this thread's read connection. A connection the server
        ended since its last use (a restart, a failover) is replaced and the read tried once
        more: reads are idempotent, and the first after an outage should not fail for it."""
        while True:
            conn, fresh = self._reader()
            try:
                return fn(conn, *args, **kw)
            except DatabaseError:
                ended = isinstance(conn.raw, psycopg.Connection) and conn.raw.broken
                self._local.conn = None  # a broken connection is not reused
                conn.raw.close()
                if fresh or not ended:
                    raise

    def _reader(self) -> tuple[Conn, bool]:
        """This thread's read connection, and whether it was made just now."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, False
        conn = self._local.conn = self.connect(autocommit=True)
        with self._lock:
            self._readers.append(conn)
        return conn, True

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every reader's connection (a later read opens a new one)."""
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.raw.close()
        self._local = threading.local()

    def migrate(self) -> int:
        """Bring the schema up to date; return the version reached."""
        with self.transaction() as conn:
            if conn.dialect == "postgresql":
                # Several nodes may start at once: one migrates, the others wait for it.
                conn.execute("SELECT pg_advisory_xact_lock(7151)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements(conn.dialect):
                    conn.execute(statement)
                if migration.then is not None:
                    migration.then(conn)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
        return MIGRATIONS[-1].version
