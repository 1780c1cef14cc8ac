"""SQLite's WAL is copied back by a thread of the server's, not by the hit writer's commits on
the event loop (store.checkpoint)."""

import asyncio
import os
import time
from typing import Any

import pytest

from mailbeacon.store.db import Conn, Database
from mailbeacon.store.writer import Writer

FILLER = 6 * 1024 * 1024  # bytes: past the 1,000 pages (4 MiB) at which a commit checkpoints


def fill(conn: Conn) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    conn.execute("INSERT INTO filler VALUES (?)", (os.urandom(FILLER),))


def autocheckpoint(conn: Conn) -> Any:
    return conn.one("PRAGMA wal_autocheckpoint")


def test_a_running_writer_leaves_checkpoints_to_its_checkpointer(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL checkpoints on its own")
    main = os.path.getsize(db.url)

    async def run() -> tuple[Any, Any, int]:
        writer = Writer(db)
        before_start = await writer.run(autocheckpoint)  # the CLI's: SQLite's own checkpoints
        await writer.stop()
        writer = Writer(db)
        writer.start()
        try:
            running = await writer.run(autocheckpoint)
            await writer.run(fill)
            deadline = time.monotonic() + 10
            while os.path.getsize(db.url) < main + FILLER and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return before_start, running, os.path.getsize(db.url)
        finally:
            await writer.stop()

    before_start, running, copied = asyncio.run(run())
    assert before_start == (1000,)
    assert running == (0,)
    assert copied >= main + FILLER  # the WAL reached the database file all the same


def test_the_wal_starts_over_while_the_writer_keeps_committing(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL checkpoints on its own")
    chunk = 128 * 1024

    def write(conn: Conn) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
        conn.execute("INSERT INTO filler VALUES (?)", (os.urandom(chunk),))

    async def run() -> tuple[int, int]:
        writer = Writer(db)
        writer.start()
        try:
            written = largest = 0
            ends = time.monotonic() + 3.5  # three rounds of the checkpointer and more
            while time.monotonic() < ends:  # commit after commit, as under load
                await writer.run(write)
                written += chunk
                largest = max(largest, os.path.getsize(db.url + "-wal"))
                await asyncio.sleep(0)
            return written, largest
        finally:
            await writer.stop()

    # About a second of commits at most, not all of them: after each round the writer copies
    # the few frames left, and its next commit starts the WAL over.
    written, largest = asyncio.run(run())
    assert largest < written / 2
