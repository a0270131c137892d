"""Time, injectable: everything time-based in Cadenza asks a ``Clock`` instead of ``time``."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: for deadlines and durations."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch: for what is stored and shown."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""


class SystemClock:
    """The real clock. ``monotonic`` is the event loop's clock when one runs, so timers
    scheduled with ``loop.call_at`` and this clock agree."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
