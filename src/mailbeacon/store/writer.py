"""The one writer of hits: group commit on the event loop.

Requests add their hit to the open batch and wait on a future of their own. While one batch is
being committed, the next one fills; when the commit returns, the waiting requests are answered
and the next batch goes. A request is thus answered only after its hit is durable, while the hits
of all the requests in hand share one commit.

Measured here (wrk, 64 connections), this beats a writer thread: 16k–18k req/s
with a thread (GIL hand-offs and cross-thread wake-ups cost more than the commit) against
22k–28k on the loop.

- SQLite: the commit runs on the loop itself. Committing to a local file waits only for fsync,
  and SQLite gets exactly one writer, this one.
- PostgreSQL: an asynchronous connection sends each batch as one statement (one round trip), so
  that the network, or a server that does not answer, never holds up the event loop.

Other writes (registering messages) go through :meth:`Writer.run`, one transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
import psycopg

from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database

log = logging.getLogger(__name__)

PG_BATCH_TIMEOUT = 5.0  # seconds
DEFAULT_HOLD = 60_000_000  # µs
P = ParamSpec("P")
T = TypeVar("T")


class _Batch:
    """Hits that will share a commit, and the futures their requests wait on."""

    __slots__ = ("rows", "waiters")

    def __init__(self) -> None:
        self.rows: list[Sequence[Any]] = []
        self.waiters: list[asyncio.Future[None]] = []


class Writer:
    """``hold``: µs a hit close to sending is held before it notifies (``--settle-seconds``);
    ``stored`` is called after each batch of hits is committed, and ``observe`` with each batch,
    the seconds its commit took, and whether it failed (metrics)."""

    def __init__(self, db: Database, *, hold: int = DEFAULT_HOLD) -> None:
        self.db = db
        self.hold = hold
        self.stored: Callable[[], None] = lambda: None
        self.observe: Callable[[Sequence[Sequence[Any]], float, bool], None] = lambda *a: None
        self._batch: _Batch | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._sqlite: Conn | None = None
        self._pg: psycopg.AsyncConnection[Any] | None = None
        self._closing: set[asyncio.Future[None]] = set()  # dropped connections being closed
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Commit what is queued, and close the connection."""
        while self._flushing is not None:
            await self._flushing
        if self._sqlite is not None:
            self._sqlite.raw.close()
            self._sqlite = None
        if self._pg is not None:
            await self._pg.close()
            self._pg = None

    async def add_hit(self, row: Sequence[Any]) -> None:
        """Queue a hit (``queries.HIT_FIELDS`` order); return once it is committed."""
        if self.loop is None:
            raise RuntimeError("the writer is not started")
        done = self.loop.create_future()
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
        batch.rows.append(row)
        batch.waiters.append(done)
        if self._flushing is None:
            # Its first step runs after the callbacks already due: the requests in hand join.
            self._flushing = self.loop.create_task(self._flush())
        await done

    async def run(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in a write transaction of its own."""
        if self.db.dialect == "sqlite":
            return self._sqlite_transaction(lambda conn: fn(conn, *a, **kw))
        return await anyio.to_thread.run_sync(lambda: self.db.write(fn, *a, **kw))

    async def _flush(self) -> None:
        try:
            while self._batch is not None:
                batch, self._batch = self._batch, None
                started = time.perf_counter()
                try:
                    await self._store(batch.rows)
                except Exception as exc:
                    log.exception("could not store %d hits", len(batch.rows))
                    outcome: BaseException | None = exc
                else:
                    outcome = None
                    self.stored()
                self.observe(batch.rows, time.perf_counter() - started, outcome is not None)
                for future in batch.waiters:
                    if future.done():  # its request was cancelled (the client went away)
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            self._flushing = None

    async def _store(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.db.dialect == "sqlite":
            self._sqlite_transaction(lambda conn: queries.insert_live_hits(conn, rows, self.hold))
            return
        if self._pg is None:
            async with asyncio.timeout(PG_BATCH_TIMEOUT):
                self._pg = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True)
        pg = self._pg
        insert = asyncio.ensure_future(queries.insert_hits_async(pg, rows, self.hold))
        try:
            # A server that stops answering would hold every waiting pixel: past the limit the
            # batch fails, its requests are answered all the same, and it is logged. The
            # connection is dropped, and closed once the stuck statement gives up.
            await asyncio.wait_for(asyncio.shield(insert), PG_BATCH_TIMEOUT)
        except BaseException:
            self._pg = None
            insert.add_done_callback(lambda done: self._close_after(done, pg))
            raise

    def _close_after(self, insert: asyncio.Future[None], pg: psycopg.AsyncConnection[Any]) -> None:
        if not insert.cancelled():
            insert.exception()  # seen: the batch has already been reported
        closing = asyncio.ensure_future(pg.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _sqlite_transaction(self, fn: Callable[[Conn], T]) -> T:
        if self._sqlite is None:
            self._sqlite = self.db.connect()
        try:
            with self.db.transaction(self._sqlite) as conn:
                return fn(conn)
        except BaseException:
            # The connection may be broken (disk gone); the next transaction reconnects.
            conn, self._sqlite = self._sqlite, None
            conn.raw.close()
            raise
