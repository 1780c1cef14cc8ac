"""A background task stops when told, whatever else happens at that moment."""

import asyncio
import time

from mailbeacon.background import Background


class Looper(Background):
    async def _run(self) -> None:
        while True:
            await self._woken(60)


def test_a_poke_at_the_moment_of_stopping_does_not_keep_it_running() -> None:
    # Python 3.11's asyncio.wait_for returns the result of what it waits on when that is done as
    # the cancellation arrives: the cancellation was lost, and `serve` hung on SIGTERM under load
    # (the writer pokes the notifier after each commit).
    async def run() -> float:
        looper = Looper()
        looper.start()
        await asyncio.sleep(0.01)  # waiting to be woken
        looper.poke()
        started = time.monotonic()
        async with asyncio.timeout(5):  # a second cancellation gets through: the test ends
            await looper.stop()
        return time.monotonic() - started

    assert asyncio.run(run()) < 2
