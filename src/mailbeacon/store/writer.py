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

A batch the database cannot take goes to the node's spool (``store.spool``) and its requests are
answered once it is there; while the spool holds anything, new batches join it, and the drainer
moves them to the database, oldest first, as soon as it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
import psycopg

from mailbeacon.background import woken
from mailbeacon.store import queries
from mailbeacon.store.checkpoint import Checkpointer
from mailbeacon.store.db import Conn, Database
from mailbeacon.store.spool import Spool

log = logging.getLogger(__name__)

PG_BATCH_TIMEOUT = 5.0  # seconds
DEFAULT_HOLD = 60_000_000  # µs
DRAIN_BATCH = 500  # spooled hits stored a transaction
DRAIN_RETRY = (0.25, 2.0)  # seconds between tries while the database is out: first, most
BATCHES_KEPT = 86_400_000_000  # µs: a day of hit_batches rows, far longer than any outage drain
STOP_DRAINING = 3.0  # seconds a stopping server goes on draining; the rest waits in the spool
# Failures that say the database is out of reach (try again later), not that it refuses a row.
OUTAGE = (psycopg.OperationalError, sqlite3.OperationalError, OSError, TimeoutError)
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
    ``spool``: the node's spool file (none: a batch the database refuses is lost, and logged).
    ``stored`` is called after each batch of hits is committed (live or drained from the spool),
    ``drained`` after spooled hits were stored (their clicks wait to be settled), and
    ``observe`` with each batch, the seconds its commit took, and whether it failed (metrics)."""

    def __init__(
        self, db: Database, *, hold: int = DEFAULT_HOLD, spool: Path | None = None
    ) -> None:
        self.db = db
        self.hold = hold
        self.spool_path = spool
        self.spool: Spool | None = None
        self.stored: Callable[[], None] = lambda: None
        self.drained: Callable[[], None] = lambda: None
        self.observe: Callable[[Sequence[Sequence[Any]], float, bool], None] = lambda *a: None
        self._drainer: asyncio.Task[None] | None = None
        self._spooled = asyncio.Event()
        self._batch: _Batch | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._sqlite: Conn | None = None
        self._pg: psycopg.AsyncConnection[Any] | None = None
        self._checkpointer: Checkpointer | None = None  # SQLite, once started
        self._closing: set[asyncio.Future[None]] = set()  # dropped connections being closed
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.db.dialect == "sqlite":
            self._checkpointer = Checkpointer(self.db)
            self._checkpointer.start()
        if self.spool_path is not None:
            self.spool = Spool(self.spool_path)
            if self.spool.size:
                log.warning("%d hits wait in the spool from an earlier run", self.spool.size)
            self._drainer = self.loop.create_task(self._drain(self.spool))

    @property
    def spooling(self) -> bool:
        """Whether hits wait in the spool (the database was out of reach, or still is)."""
        return self.spool is not None and self.spool.size > 0

    async def stop(self) -> None:
        """Commit what is queued, drain the spool for a few seconds, and close."""
        while self._flushing is not None:
            await self._flushing
        if self._drainer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), STOP_DRAINING)
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        if self.spool is not None:
            if self.spool.size:
                log.warning("%d hits stay in the spool for the next start", self.spool.size)
            self.spool.close()
            self.spool = None
        if self._checkpointer is not None:
            await self._checkpointer.stop()
            self._checkpointer = None
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
                outcome = await self._commit(batch.rows)
                for future in batch.waiters:
                    if future.done():  # its request was cancelled (the client went away)
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            self._flushing = None

    async def _commit(self, rows: Sequence[Sequence[Any]]) -> BaseException | None:
        """Store a batch, or spool it; what went wrong when it is in neither."""
        if self.spool is not None and self.spool.size:  # behind the spooled, in arrival order
            return self._to_spool(self.spool, rows, None)
        batch = secrets.randbits(63)  # names a PostgreSQL batch in hit_batches
        started = time.perf_counter()
        try:
            if self.db.dialect == "sqlite":
                self._sqlite_transaction(lambda c: queries.insert_live_hits(c, rows, self.hold))
            else:
                await self._on_pg(lambda pg: queries.insert_hits_async(pg, rows, self.hold, batch))
        except Exception as exc:
            self.observe(rows, time.perf_counter() - started, True)
            if self.spool is None:
                log.exception("could not store %d hits", len(rows))
                return exc
            log.warning("could not store %d hits (%s); spooling them", len(rows), _why(exc))
            return self._to_spool(
                self.spool, rows, batch if self.db.dialect == "postgresql" else None
            )
        self.observe(rows, time.perf_counter() - started, False)
        self.stored()
        return None

    def _to_spool(
        self, spool: Spool, rows: Sequence[Sequence[Any]], batch: int | None
    ) -> BaseException | None:
        try:
            spool.add(rows, batch)
        except Exception as exc:
            log.exception("could not spool %d hits either", len(rows))
            return exc
        self._spooled.set()
        return None

    async def _drain(self, spool: Spool) -> None:
        """Move spooled hits to the database, oldest first, once it answers again."""
        retry = DRAIN_RETRY[0]
        careful_until = 0  # after a refused chunk: one hit at a time up to here
        while True:
            if not spool.size:
                await woken(self._spooled, 3600)
                self._spooled.clear()
                if not spool.size and self.db.dialect == "postgresql":
                    try:
                        await self.run(
                            queries.forget_batches, time.time_ns() // 1000 - BATCHES_KEPT
                        )
                    except Exception as exc:  # an outage: another hour
                        log.warning("could not forget old hit batches (%s)", _why(exc))
                continue
            chunk = spool.oldest(1 if careful_until else DRAIN_BATCH)
            if chunk[-1].seq >= careful_until:  # past the chunk refused: whole chunks again
                careful_until = 0
            started = time.perf_counter()
            try:
                await self._store_spooled(spool.id, chunk)
            except OUTAGE as exc:
                if retry == DRAIN_RETRY[0]:
                    log.warning("the database is still out of reach (%s); %d hits spooled",
                                _why(exc), spool.size)  # fmt: skip
                await asyncio.sleep(retry)
                retry = min(retry * 2, DRAIN_RETRY[1])
                continue
            except Exception as exc:
                if len(chunk) > 1:
                    careful_until = chunk[-1].seq
                    continue
                log.error("the database refuses a spooled hit (%s); it is kept aside", _why(exc))
                spool.refuse(chunk[0].seq, chunk[0].row, _why(exc))
                continue
            spool.remove(chunk[-1].seq)
            if retry != DRAIN_RETRY[0] or not spool.size:
                log.info("drained %d spooled hits; %d left", len(chunk), spool.size)
            retry = DRAIN_RETRY[0]
            self.observe([s.row for s in chunk], time.perf_counter() - started, False)
            self.stored()
            self.drained()

    async def _drained(self) -> None:
        while self.spooling:
            await asyncio.sleep(0.05)

    async def _store_spooled(self, spool: str, chunk: Sequence[queries.Spooled]) -> None:
        if self.db.dialect == "sqlite":
            self._sqlite_transaction(
                lambda conn: queries.drain_spooled(conn, spool, chunk, self.hold)
            )
            return
        await self._on_pg(lambda pg: queries.drain_spooled_async(pg, spool, chunk, self.hold))

    async def _on_pg(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]) -> None:
        """Run ``work`` on the asynchronous connection, within ``PG_BATCH_TIMEOUT``."""
        if self._pg is None:
            async with asyncio.timeout(PG_BATCH_TIMEOUT):
                self._pg = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True)
        pg = self._pg
        insert = asyncio.ensure_future(work(pg))
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
            if self._checkpointer is not None:  # it checkpoints, not the event loop
                self._sqlite.raw.execute("PRAGMA wal_autocheckpoint=0")
        try:
            with self.db.transaction(self._sqlite) as conn:
                done = fn(conn)
        except BaseException:
            # The connection may be broken (disk gone); the next transaction reconnects.
            conn, self._sqlite = self._sqlite, None
            conn.raw.close()
            raise
        self._checkpoint_tail(conn)
        return done

    def _checkpoint_tail(self, conn: Conn) -> None:
        """After the checkpointer's round, the frames committed since (store.checkpoint)."""
        checkpointer = self._checkpointer
        if checkpointer is None or not checkpointer.tail_due:
            return
        try:
            checkpointer.tail(conn)
        except sqlite3.Error as exc:  # the hits are stored: only the WAL stays longer
            log.warning("could not checkpoint the WAL's tail (%s)", _why(exc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
