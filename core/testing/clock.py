"""A clock that moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Generator
from typing import Any

DEFAULT_WALL = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: what time() says at monotonic 0


class ManualClock:
    """Cadenza's ``Clock`` (``cadenza.api.Clock``) under a test's control.

    ``monotonic()`` starts at ``start`` and ``time()`` at ``wall``; both move together, and
    only through ``advance``. ``await sleep(seconds)`` returns once ``advance`` has moved the
    clock ``seconds`` past the moment it was called: a timeout controller's 30-minute deadline
    passes in a microsecond of real time. Only what asks this clock is affected: the agent
    subprocess, the kill grace after SIGTERM and the event loop keep real time.

    ``advance(seconds)`` wakes every sleeper whose time has come, in the order of their due
    times (each sees ``monotonic()`` at the end of the advance). It returns an awaitable:
    ``await clock.advance(60)`` also lets the woken tasks run before the test goes on, and a
    plain ``clock.advance(60)`` leaves that to the test's next ``await``.
    """

    def __init__(self, start: float = 0.0, wall: float = DEFAULT_WALL) -> None:
        self._now = start
        self._offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waker))
        await waker  # a cancelled sleep cancels its waker, which ``advance`` then skips

    @property
    def sleepers(self) -> list[float]:
        """The due times (on ``monotonic()``) of the sleeps waiting now, soonest first."""
        return sorted(due for due, _, waker in self._sleepers if not waker.done())

    def advance(self, seconds: float) -> _Settle:
        """Move the clock ``seconds`` forward and wake the sleepers now due, in order."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds:g} s)")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, waker = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not waker.done():
                waker.set_result(None)
        self._now = target
        return _Settle()

    def set(self, monotonic: float) -> _Settle:
        """Move the clock forward to ``monotonic`` (never back)."""
        return self.advance(max(monotonic - self._now, 0.0))


class _Settle:
    """What ``advance`` returns: awaiting it lets the tasks it woke run (a few loop turns)."""

    def __await__(self) -> Generator[Any, None, None]:
        for _ in range(SETTLE_TURNS):
            yield from asyncio.sleep(0).__await__()


SETTLE_TURNS = 20  # loop iterations: a woken task, the hooks it calls and the tasks they start
