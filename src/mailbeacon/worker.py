"""The background workers of ``serve`` that work through a queue kept in the store: the deliverer
of queued mail (``relay.deliverer``) and the dispatcher of webhooks (``notify.dispatcher``).

Both claim what is due with a lease, so that several nodes share one queue and what a node that
died had claimed is due again once its lease ends; both try failures again after a growing delay
with jitter. A worker runs a round (``deliver_due``) when it starts, when it is poked (work was
queued), and every ``poll`` seconds (work queued by another process, retries coming due).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence

from mailbeacon.background import woken

log = logging.getLogger(__name__)


class Worker:
    """``start`` on the event loop, ``poke`` from anywhere, ``stop`` to end; a subclass does a
    round's work in ``deliver_due``."""

    def __init__(
        self,
        *,
        concurrency: int,
        poll: float,
        lease: float,
        backoff: Sequence[float],
        timeout: float,
        clock: Callable[[], int],
        rng: random.Random | None,
    ) -> None:
        self.concurrency = concurrency  # attempts in flight at once
        self.poll = poll  # seconds between rounds when nobody pokes
        self.lease = lease  # seconds a claim lasts
        self.backoff = tuple(backoff)  # seconds to wait after each failed attempt
        self.timeout = timeout  # seconds an attempt may take
        self.clock = clock  # µs
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrecy)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def deliver_due(self) -> int:
        """Work until nothing is due; the number of attempts made."""
        raise NotImplementedError

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = self._loop.create_task(self._run())

    def poke(self) -> None:
        """Work was queued: look now. Safe from any thread, and before ``start`` (starting looks
        anyway)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self, grace: float = 4.0) -> None:
        """Claim nothing more; let the attempts in flight finish for up to ``grace`` seconds, then
        cancel them (they are made again after their lease)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._finish()

    async def _finish(self) -> None:
        """What is left to do once the rounds have ended (before the writer stops)."""

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:  # the database out of reach, say: the next poll tries again
                log.exception("working through the queue failed; it is tried again")
            await self._sleep()

    async def _sleep(self) -> None:
        """Until poked, or ``poll`` seconds."""
        await woken(self._wake, self.poll)
