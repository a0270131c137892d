"""Telling strangers politely that the bot is not theirs: once an hour at most.

A stranger who keeps writing (or pressing buttons) gets one answer an hour, not one per
message, and a flood of distinct strangers gets at most a few answers a minute, the rest only
counted: so refusals cost neither memory nor API calls. The same rule decides when a refusal
is logged. Every frontend uses it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

REFUSAL_EVERY = 3600.0  # seconds between two refusals to the same user
REFUSALS_PER_MINUTE = 20  # refusals (replies and log lines) to all strangers together
REMEMBERED = 10_000  # strangers remembered at most; the oldest are forgotten first


class Refusals:
    """Remembers when each refused user was last told, so a stranger who keeps writing (or
    pressing buttons) gets one answer an hour, not one per message; and a flood of distinct
    strangers gets at most ``per_minute`` answers a minute, the rest only counted."""

    def __init__(self, clock: Clock, every: float = REFUSAL_EVERY,
                 per_minute: float = REFUSALS_PER_MINUTE, capacity: int = REMEMBERED) -> None:
        self.clock = clock
        self.every = every
        self.capacity = capacity
        self.interval = 60.0 / per_minute
        self.burst = max(1, int(per_minute // 4))
        self._told: OrderedDict[str, float] = OrderedDict()  # oldest first
        self._tat = float("-inf")  # the shared budget (GCRA, as in ``pacing``)
        self.suppressed = 0  # refusals skipped since the last one that went out

    def due(self, user_id: str) -> bool:
        """Whether to answer (and log) this user now; counts the answer when it is."""
        now = self.clock.monotonic()
        while self._told and now - next(iter(self._told.values())) >= self.every:
            self._told.popitem(last=False)
        if user_id in self._told or self._tat - (self.burst - 1) * self.interval > now:
            self.suppressed += 1
            return False
        self._tat = max(self._tat, now) + self.interval
        self._told[user_id] = now
        while len(self._told) > self.capacity:
            self._told.popitem(last=False)
        return True

    def take_suppressed(self) -> int:
        """How many refusals were skipped since the last call (for the next log line)."""
        count, self.suppressed = self.suppressed, 0
        return count

    def __len__(self) -> int:
        return len(self._told)
