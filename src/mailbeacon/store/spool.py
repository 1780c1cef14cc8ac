"""The node's spool: hits the database could not take, kept on the node's own disk until it can.

When a batch of hits cannot be stored (PostgreSQL unreachable or not answering, SQLite locked
past its timeout), the writer appends it here and answers its requests: a pixel never waits on
an outage, and what it answered is durable all the same. While the spool holds anything, new
hits join its end, so that hits reach the database in the order they arrived; the drainer
(``store.writer``) moves them across, oldest first, once the database answers again.

The spool is a SQLite file of its own (``DATA/spool.db``): appends are transactions with
``synchronous=FULL``, so a spooled hit survives ``kill -9`` and a power cut. One process uses a
spool at a time (an exclusive ``flock``): two nodes draining one spool could store a hit twice.
Rows the database refuses outright (not an outage: a value it will never take) are moved aside
to ``refused``, kept and counted, so that one bad row cannot hold up the rest.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailbeacon.store.queries import Spooled


class SpoolError(Exception):
    """The spool cannot be used (another process holds it); the message says what to do."""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise SpoolError(
                f"another process uses the spool {path}: give each node its own --data"
            ) from None
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spooled (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "batch INTEGER, row TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id TEXT NOT NULL)")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("SELECT id FROM spool").fetchone() is None:
                self._db.execute("INSERT INTO spool (id) VALUES (?)", (secrets.token_hex(8),))
        # Its name in the database's drained marks (queries.drain_spooled).
        self.id: str = self._db.execute("SELECT id FROM spool").fetchone()[0]
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refused (seq INTEGER PRIMARY KEY, row TEXT NOT NULL, "
            "error TEXT NOT NULL)"
        )
        self.size = self._count("spooled")
        self.refused = self._count("refused")

    def _count(self, table: str) -> int:
        (n,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(n)

    def add(self, rows: Sequence[Sequence[Any]], batch: int | None) -> None:
        """Append hits (``queries.HIT_FIELDS`` order), durably, before their requests are
        answered; ``batch``: the live batch they were sent in, if it may have committed."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO spooled (batch, row) VALUES (?, ?)",
                [(batch, json.dumps(list(r))) for r in rows],
            )
        self.size += len(rows)

    def oldest(self, limit: int) -> list[Spooled]:
        """Up to ``limit`` spooled hits, the first spooled first."""
        found = self._db.execute(
            "SELECT seq, batch, row FROM spooled ORDER BY seq LIMIT ?", (limit,)
        )
        return [Spooled(seq, batch, tuple(json.loads(row))) for seq, batch, row in found]

    def remove(self, up_to: int) -> None:
        """Forget the hits up to ``up_to`` (stored in the database by now)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM spooled WHERE seq <= ?", (up_to,))
        self.size = self._count("spooled")

    def refuse(self, seq: int, row: Sequence[Any], error: str) -> None:
        """Move a hit the database refuses aside, with the reason."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO refused (seq, row, error) VALUES (?, ?, ?)",
                (seq, json.dumps(list(row)), error),
            )
            self._db.execute("DELETE FROM spooled WHERE seq = ?", (seq,))
        self.size -= 1
        self.refused += 1

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)  # and with it the lock
