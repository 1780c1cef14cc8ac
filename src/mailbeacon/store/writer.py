"""The one writer: a thread that owns the write connection and commits in groups.

Requests hand their hit to :meth:`Writer.add_hit` and wait; the thread takes everything queued,
inserts it in one transaction, commits, and only then wakes the waiters, so that a request is
answered after its hit is durable while hundreds of hits share one commit (group commit).
SQLite gets exactly one writer this way; PostgreSQL gets one batched writer per node.
Other writes (registering messages) go through :meth:`Writer.run`, one transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from mailbeacon.store import queries
from mailbeacon.store.db import Conn, Database

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

MAX_BATCH = 2000

_Job = Callable[[Conn], Any]
_STOP = object()


class Writer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="mailbeacon-writer", daemon=True)
        self._conn: Conn | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self) -> None:
        """Drain what is queued, commit it, and stop."""
        self._queue.put(_STOP)
        self._thread.join()

    async def add_hit(self, row: Sequence[Any]) -> None:
        """Queue a hit (``queries.HIT_FIELDS`` order); return once it is committed."""
        future = self._future()
        self._queue.put((row, future))
        await future

    async def run(self, fn: Callable[Concatenate[Conn, P], T], *a: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in a write transaction of its own on the writer thread."""
        future = self._future()
        job: _Job = lambda conn: fn(conn, *a, **kw)  # noqa: E731
        self._queue.put((job, future))
        return await future  # type: ignore[no-any-return]

    def _future(self) -> asyncio.Future[Any]:
        if self.loop is None:
            raise RuntimeError("the writer is not started")
        return self.loop.create_future()

    # --- on the writer thread ---------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            hits = [(row, fut) for row, fut in batch if not callable(row)]
            jobs = [(job, fut) for job, fut in batch if callable(job)]
            if hits:
                self._commit_hits(hits)
            for job, fut in jobs:
                self._commit_job(job, fut)
        if self._conn is not None:
            self._conn.raw.close()

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

    def _commit_hits(self, hits: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        try:
            self._transaction(lambda conn: queries.insert_hits(conn, [row for row, _ in hits]))
        except Exception as exc:
            log.exception("could not store %d hits", len(hits))
            self._settle([fut for _, fut in hits], None, exc)
        else:
            self._settle([fut for _, fut in hits], None, None)

    def _commit_job(self, job: _Job, fut: asyncio.Future[Any]) -> None:
        try:
            result = self._transaction(job)
        except Exception as exc:
            self._settle([fut], None, exc)
        else:
            self._settle([fut], result, None)

    def _settle(
        self, futures: list[asyncio.Future[Any]], result: Any, exc: BaseException | None
    ) -> None:
        def wake() -> None:
            for fut in futures:
                if fut.done():  # the waiting request was cancelled (client went away)
                    continue
                if exc is None:
                    fut.set_result(result)
                else:
                    fut.set_exception(exc)

        if self.loop is not None:
            self.loop.call_soon_threadsafe(wake)
