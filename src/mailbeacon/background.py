"""A task in the background of ``serve`` that wakes when poked: ``start`` on the event loop,
``poke`` from it, ``stop`` to cancel (what it does is transactional: a round cut short is
done again by the next)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


async def woken(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set, or ``timeout`` seconds have passed.

    Not asyncio.wait_for: on Python 3.11 a wait that ends as it is cancelled swallows the
    cancellation, and a task being stopped goes on for ever (tests.test_background).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class Background:
    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self) -> None:
        self._wake.set()

    async def _woken(self, timeout: float | None = None) -> None:
        """Until poked (or ``timeout`` seconds have passed); the poke is then used up."""
        await woken(self._wake, timeout)
        self._wake.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError


class Periodic(Background):
    """A ``round`` as it starts, then every ``poll`` seconds and when poked; a round that fails is
    logged (``failed`` says what failed) and done again at the next. ``stop`` lets the round in
    progress finish, which looks at ``_stopping`` to end early: its reads run on threads that
    cancelling would orphan."""

    failed = "a background round"

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self._stopping = False
        super().__init__()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.round()
            except Exception:
                log.exception("%s failed; it is tried again at the next round", self.failed)
            await self._woken(self.poll)

    async def round(self) -> object:
        raise NotImplementedError
