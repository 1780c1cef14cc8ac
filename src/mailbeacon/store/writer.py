"""The one writer: it owns the write connection and commits in groups.

Requests add their hit to the open batch and wait on a future of their own; the writer takes the
batch, inserts it in one transaction, commits, and only then resolves the futures, so that a
request is answered after its hit is durable while many hits share one commit (group commit).
Other writes (registering messages) go through :meth:`Writer.run`, one transaction each.

Where the commits run depends on the store:

- SQLite (``inline``): on the event loop itself, as a callback scheduled when a batch opens, so
  that every request already being handled joins it. Committing to a local file only waits for
  fsync, and a second thread costs more: measured here (wrk, 64 connections), the pixel did
  16k–18k req/s with a writer thread (GIL hand-offs, cross-thread wake-ups) and 22k–28k inline.
- PostgreSQL: on a thread of its own, so that network round trips, or a server that does not
  answer, never hold up the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

_Job = Callable[[Conn], Any]


class _Batch:
    """Hits that will share a commit, and the futures their requests wait on."""

    __slots__ = ("rows", "waiters")

    def __init__(self) -> None:
        self.rows: list[Sequence[Any]] = []
        self.waiters: list[asyncio.Future[Any]] = []


class Writer:
    def __init__(self, db: Database, *, inline: bool | None = None) -> None:
        self.db = db
        self.inline = db.dialect == "sqlite" if inline is None else inline
        self._lock = threading.Lock()  # guards _batch and _jobs between the loop and the thread
        self._wakeup = threading.Event()
        self._batch: _Batch | None = None
        self._jobs: collections.deque[tuple[_Job, asyncio.Future[Any]]] = collections.deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mailbeacon-writer", daemon=True)
        self._conn: Conn | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if not self.inline:
            self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, and stop."""
        self._stopping = True
        if self.inline:
            self._commit_pending()
            self._close()
        else:
            self._wakeup.set()
            self._thread.join()

    async def add_hit(self, row: Sequence[Any]) -> None:
        """Queue a hit (``queries.HIT_FIELDS`` order); return once it is committed."""
        done = self._running_loop().create_future()
        with self._lock:
            batch = self._batch
            if batch is None:
                batch = self._batch = _Batch()
                if self.inline:
                    # After the callbacks already due: the requests in hand join this batch.
                    self._running_loop().call_soon(self._commit_pending)
                else:
                    self._wakeup.set()
            batch.rows.append(row)
            batch.waiters.append(done)
        await done

    async def run(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in a write transaction of its own on the writer thread."""
        job: _Job = lambda conn: fn(conn, *a, **kw)  # noqa: E731
        if self.inline:
            return self._transaction(job)  # type: ignore[no-any-return]
        future: asyncio.Future[T] = self._running_loop().create_future()
        with self._lock:
            self._jobs.append((job, future))
        self._wakeup.set()
        return await future

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError("the writer is not started")
        return self.loop

    # --- on the loop (inline) or on the writer thread -----------------------------------------

    def _commit_pending(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, None
        if batch is not None:
            self._commit_hits(batch)

    def _loop(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()  # before taking the work: a later set() is not lost
            with self._lock:
                jobs = list(self._jobs)
                self._jobs.clear()
                idle = self._batch is None and not jobs
            self._commit_pending()
            for job, future in jobs:
                self._commit_job(job, future)
            if self._stopping and idle:
                break
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.raw.close()
            self._conn = None

    def _transaction(self, fn: _Job) -> Any:
        if self._conn is None:
            self._conn = self.db.connect()
        try:
            with self.db.transaction(self._conn) as conn:
                return fn(conn)
        except BaseException:
            # The connection may be broken (server gone, disk full); start afresh next time.
            try:
                self._conn.raw.close()
            finally:
                self._conn = None
            raise

    def _commit_hits(self, batch: _Batch) -> None:
        try:
            self._transaction(lambda conn: queries.insert_hits(conn, batch.rows))
        except Exception as exc:
            log.exception("could not store %d hits", len(batch.rows))
            self._settle(batch.waiters, None, exc)
        else:
            self._settle(batch.waiters, None, None)

    def _commit_job(self, job: _Job, future: asyncio.Future[Any]) -> None:
        try:
            result = self._transaction(job)
        except Exception as exc:
            self._settle([future], None, exc)
        else:
            self._settle([future], result, None)

    def _settle(
        self, futures: list[asyncio.Future[Any]], result: Any, exc: BaseException | None
    ) -> None:
        def wake() -> None:
            for future in futures:
                if future.done():  # its request was cancelled (the client went away)
                    continue
                if exc is None:
                    future.set_result(result)
                else:
                    future.set_exception(exc)

        if self.inline:
            wake()
        elif self.loop is not None:
            self.loop.call_soon_threadsafe(wake)
