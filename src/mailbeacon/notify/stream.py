"""The live stream of a user's events (``GET /api/v1/stream``, ``mailbeacon watch``).

Events are read from the store, so a stream sees what every node published, in the order it was
published, and resumes after the last event a client saw (``Last-Event-ID``). A stream looks
again as soon as this process publishes (``Hub.wake``) and at least every ``POLL`` seconds for
what other nodes published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from mailbeacon import background
from mailbeacon.store import notify as store

POLL = 1.0  # seconds
PAGE = 200  # events read at once
STREAM_TYPES = ("email.opened", "email.clicked", "email.bounced", "email.unsubscribed")

Read = Callable[[int, int], Awaitable[list[store.Event]]]  # (after, limit) → events


class Hub:
    """Wakes the streams of this process when events were published."""

    def __init__(self) -> None:
        self._published = asyncio.Event()

    def wake(self) -> None:
        self._published.set()
        self._published = asyncio.Event()

    def next_wake(self) -> asyncio.Event:
        """Set at the next ``wake``: taken before reading, so that no wake-up is missed."""
        return self._published


async def follow(
    read: Read, after: int, hub: Hub, poll: float = POLL
) -> AsyncIterator[store.Event | None]:
    """The events past ``after`` as they come; None after each quiet look (a heartbeat's
    chance)."""
    while True:
        wake = hub.next_wake()
        events = await read(after, PAGE)
        for event in events:
            yield event
        if events:
            after = events[-1].id
            if len(events) == PAGE:
                continue
        yield None
        await background.woken(wake, poll)
