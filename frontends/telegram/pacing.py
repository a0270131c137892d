"""Keeping within Telegram's flood limits on our side, so the API never has to say 429.

Telegram allows about one message or edit per second in a chat, 20 a minute in a group and
30 a second overall. Each scope is a token bucket in its virtual-scheduling form (GCRA): a
caller learns when its call may go. A chat's own scopes are checked first, then a slot is
reserved in the shared bucket, so chats share the global rate first come, first served.
A 429 that gets through anyway blocks its chat for the ``retry_after`` Telegram asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock


GROUP_BURST = 3  # calls a quiet group may make at once before the per-minute pace applies
GLOBAL_BURST = 5


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

    def reserve(self, now: float) -> float:
        """Take the next free slot; returns when it is (``now`` or later)."""
        at = now + self.delay(now)
        self.commit(at)
        return at


@dataclass
class ChatPace:
    """The limits of one Telegram chat."""

    chat: Bucket
    group: Bucket | None = None
    blocked_until: float = 0.0  # set by a 429's retry_after
    rate_limited: int = field(default=0)  # 429s received for this chat

    def delay(self, now: float) -> float:
        waits = [self.chat.delay(now), self.blocked_until - now]
        if self.group is not None:
            waits.append(self.group.delay(now))
        return max(0.0, *waits)

    def commit(self, at: float) -> None:
        self.chat.commit(at)
        if self.group is not None:
            self.group.commit(at)


class Pacing:
    def __init__(self, clock: Clock, *, edit_interval: float, group_per_minute: float,
                 per_second: float) -> None:
        self.clock = clock
        self.edit_interval = edit_interval
        self.group_interval = 60.0 / group_per_minute
        self.shared = Bucket(1.0 / per_second, GLOBAL_BURST)
        self.rate_limited = 0  # 429s received, all chats

    def for_chat(self, chat_id: int) -> ChatPace:
        group = Bucket(self.group_interval, GROUP_BURST) if chat_id < 0 else None
        return ChatPace(Bucket(self.edit_interval), group)

    async def slot(self, pace: ChatPace) -> None:
        """Wait until one call in this chat may go, and count it."""
        while (wait := pace.delay(self.clock.monotonic())) > 0:
            await self.clock.sleep(wait)
        at = self.shared.reserve(self.clock.monotonic())
        if (wait := at - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        pace.commit(self.clock.monotonic())

    def idle(self) -> bool:
        """Whether no call is waiting for the shared rate: the moment for calls that may as
        well be skipped (typing indicators, which are not messages and are not counted)."""
        return self.shared.tat <= self.clock.monotonic()

    def limited(self, pace: ChatPace, retry_after: float) -> None:
        """Telegram answered 429 for this chat."""
        pace.blocked_until = max(pace.blocked_until, self.clock.monotonic() + retry_after)
        pace.rate_limited += 1
        self.rate_limited += 1
