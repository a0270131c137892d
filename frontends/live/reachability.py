"""Whether the platform answers, shared by every caller of one frontend, so that a chat
catches up as soon as the platform is back instead of when its own backoff ends.

Each caller that fails with a network error or a 5xx says ``failed()`` and waits its backoff
with ``wait(delay)``; any call that gets an answer says ``answered()`` (the long poll counts).
While the platform is down, one waiting caller at a time is woken every ``probe_every``
seconds to try again (its call is the probe), and the first answer wakes every waiter at
once. They then go through their rooms' pacing as usual, so catching up stays within the
rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

PROBE_EVERY = 0.5  # seconds between tries while the platform does not answer


class Reachability:
    def __init__(self, clock: Clock, probe_every: float = PROBE_EVERY) -> None:
        self.clock = clock
        self.probe_every = probe_every
        self.down = False
        self._back = asyncio.Event()  # set when an answer ends the current outage
        self._probing = False  # a waiter is the one to try next
        self._last_try = float("-inf")

    def answered(self) -> None:
        """A call got an answer (any answer but "too many requests")."""
        self._last_try = self.clock.monotonic()
        if self.down:
            self.down = False
            self._back.set()

    def failed(self) -> None:
        """A call got no answer (network error, time-out) or a 5xx."""
        self._last_try = self.clock.monotonic()
        if not self.down:
            self.down = True
            self._back = asyncio.Event()

    async def wait(self, delay: float) -> None:
        """Wait out a failed call's backoff of ``delay`` seconds, less when the platform
        answers meanwhile or when this caller is the next to try."""
        if not self.down:
            await self.clock.sleep(delay)
            return
        probing = not self._probing and (
            self._last_try + self.probe_every < self.clock.monotonic() + delay)
        if probing:
            self._probing = True
            delay = max(0.0, self._last_try + self.probe_every - self.clock.monotonic())
        back = asyncio.ensure_future(self._back.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait((back, sleep), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if probing:
                self._probing = False
            for task in (back, sleep):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
