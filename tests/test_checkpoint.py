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
