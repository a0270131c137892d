"""Keeping within a platform's flood limits on our side, so the API never has to say 429.

A platform allows a few calls a second in one room, maybe fewer in a group, and some number a
second overall (``transport.Limits``). Each scope is a token bucket in its virtual-scheduling
form (GCRA): a caller learns when its call may go. A call is counted in its room and in the
shared bucket when it actually goes, not when its slot came due: after the event loop stalled
(50 agents starting at once), the calls that came due meanwhile still go one interval apart
instead of together. A 429 that gets through anyway blocks its room for the ``retry_after``
it asked for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock
    from cadenza.frontends.live.transport import Limits


@dataclass
class Bucket:
    """``burst`` calls at once, then one every ``interval`` seconds."""

    interval: float
    burst: int = 1
    tat: float = float("-inf")  # theoretical arrival time of the next conforming call

    def delay(self, now: float) -> float:
        """How long a call at ``now`` has to wait."""
        return max(0.0, self.tat - (self.burst - 1) * self.interval - now)

    def commit(self, at: float) -> None:
        """Count a call made at ``at``."""
        self.tat = max(self.tat, at) + self.interval


@dataclass
class RoomPace:
    """The limits of one room."""

    chat: Bucket
    group: Bucket | None = None
    blocked_until: float = 0.0  # set by a 429's retry_after
    rate_limited: int = field(default=0)  # 429s received for this room

    def delay(self, now: float) -> float:
        waits = [self.chat.delay(now), self.blocked_until - now]
        if self.group is not None:
            waits.append(self.group.delay(now))
        return max(0.0, *waits)

    def commit(self, at: float) -> None:
        self.chat.commit(at)
        if self.group is not None:
            self.group.commit(at)

    def recovered(self, now: float) -> bool:
        """Whether a fresh pace for the room would behave the same from ``now`` on."""
        return (self.blocked_until <= now and self.chat.tat <= now
                and (self.group is None or self.group.tat <= now))


class Pacing:
    def __init__(self, clock: Clock, limits: Limits) -> None:
        self.clock = clock
        self.limits = limits
        self.edit_interval = limits.chat.interval
        self.shared = Bucket(limits.overall.interval, limits.overall.burst)
        self.rate_limited = 0  # 429s received, all rooms
        self._queue: deque[asyncio.Future[None]] = deque()  # calls the shared rate holds

    def for_room(self, group: bool = False) -> RoomPace:
        rate = self.limits.group if group else None
        return RoomPace(Bucket(self.limits.chat.interval, self.limits.chat.burst),
                        Bucket(rate.interval, rate.burst) if rate is not None else None)

    async def slot(self, pace: RoomPace) -> None:
        """Wait until one call in this room may go, and count it (no await between the last
        check and the count: the call is the next thing its caller does). Calls held only by
        the shared rate go first come, first served."""
        while (wait := pace.delay(self.clock.monotonic())) > 0:
            await self.clock.sleep(wait)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn  # the call ahead of it went
            while (wait := max(pace.delay(now := self.clock.monotonic()),
                               self.shared.delay(now))) > 0:
                await self.clock.sleep(wait)
        finally:
            head = self._queue[0] is turn
            self._queue.remove(turn)
            if head and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)
        now = self.clock.monotonic()
        self.shared.commit(now)
        pace.commit(now)

    def idle(self) -> bool:
        """Whether no call is waiting and the shared rate has room now: the moment for calls
        that may as well be skipped (typing indicators)."""
        return not self._queue and self.shared.delay(self.clock.monotonic()) <= 0

    def spent(self) -> None:
        """A call outside any room's pace went out (a typing indicator, where
        ``Limits.typing_counts``): it still counts toward the platform's overall rate."""
        self.shared.commit(self.clock.monotonic())

    def limited(self, pace: RoomPace, retry_after: float) -> None:
        """The platform answered 429 for this room."""
        pace.blocked_until = max(pace.blocked_until, self.clock.monotonic() + retry_after)
        pace.rate_limited += 1
        self.rate_limited += 1
