"""Who may use the bot, and telling the others politely, once an hour at most.

``Access`` holds the allowlist in force; ``cadenza`` reloads it on SIGHUP without a restart
(``on_config_reload``), and every check reads the current one. ``Refusals`` decides when a
stranger hears back (and when the refusal is logged): once per user an hour, and never more
than a few a minute all together, so a flood of strangers or of button presses costs neither
memory nor Telegram calls.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock
    from cadenza.frontends.telegram.settings import Allowlist


REFUSAL_EVERY = 3600.0  # seconds between two refusals to the same user
REFUSALS_PER_MINUTE = 20  # refusals (replies and log lines) to all strangers together
REMEMBERED = 10_000  # strangers remembered at most; the oldest are forgotten first


def refusal_text(user_id: str) -> str:
    return ("Sorry, this bot only works for the people its operator allowed. Your Telegram "
            f"user id is {user_id}: if you should have access, ask the operator to add it to "
            "[telegram] allowed_users.")


class Access:
    """The allowlist in force. Whoever asks treats a failure to answer as a refusal."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist

    def allows(self, user_id: str) -> bool:
        return self.allowlist.allows(user_id) is True

    def replace(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist


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
