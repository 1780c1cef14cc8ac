"""SQLite's WAL copied into the database file beside the event loop, not on it.

By default the connection whose commit takes the WAL past 1,000 pages copies it back and fsyncs
the database file, in that commit; for the hit writer, that is the event loop, stalled 3–11 ms
several times a second under load. The writer's connection therefore checkpoints never
(``wal_autocheckpoint=0``), and this does it every second on a thread and a connection of its
own. A PASSIVE checkpoint waits for no reader and no writer (https://sqlite.org/c3ref/
wal_checkpoint_v2.html), and SQLite releases the GIL while it copies and syncs.

The WAL starts over from its beginning only when a write transaction begins with every frame
copied back, and under load the writer has always committed again since the thread's round (the
WAL grew to 585 MB in 25 s). So after each round the writer copies, on its own connection, the
few frames committed meanwhile (``tail``): a small checkpoint once a second on the event loop
(40–130 frames against 5,000–7,000 for the round, at 20k hits/s).
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
        self.tail_due = False

    async def round(self) -> None:
        await anyio.to_thread.run_sync(self._checkpoint)
        self.tail_due = True

    def tail(self, writer: Conn) -> None:
        """Copy what the writer committed since the round, so that its next write starts the
        WAL over (on the writer's connection, outside a transaction)."""
        self.tail_due = False
        writer.raw.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
