"""SQLite's WAL copied into the database file beside the event loop, not on it.

By default the connection whose commit takes the WAL past 1,000 pages copies it back and fsyncs
the database file, in that commit; for the hit writer, that is the event loop, stalled 3–11 ms
several times a second under load. The writer's connection therefore checkpoints never
(``wal_autocheckpoint=0``), and this does it every second on a thread and a connection of its
own. A PASSIVE checkpoint waits for no reader and no writer (https://sqlite.org/c3ref/
wal_checkpoint_v2.html), and SQLite releases the GIL while it copies and syncs.
"""

from __future__ import annotations

import anyio.to_thread

from mailbeacon.background import Periodic
from mailbeacon.store.db import Conn, Database

EVERY = 1.0  # seconds


class Checkpointer(Periodic):
    failed = "a WAL checkpoint"

    def __init__(self, db: Database) -> None:
        super().__init__(EVERY)
        self.db = db
        self._conn: Conn | None = None

    async def round(self) -> None:
        await anyio.to_thread.run_sync(self._checkpoint)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = self.db.connect()
        try:
            self._conn.raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except BaseException:
            conn, self._conn = self._conn, None
            conn.raw.close()
            raise

    async def stop(self) -> None:
        await super().stop()
        if self._conn is not None:
            self._conn.raw.close()
            self._conn = None
