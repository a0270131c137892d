"""Who may use the bot, and telling the others politely, once an hour at most."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use core.api at run time
    from core.api import Clock


REFUSAL_EVERY = 3600.0  # seconds between two refusals to the same user


def refusal_text(user_id: str) -> str:
    return ("Sorry, this bot only works for the people its operator allowed. Your Telegram "
            f"user id is {user_id}: if you should have access, ask the operator to add it to "
            "[telegram] allowed_users.")


class Refusals:
    """Remembers when each refused user was last told, so a stranger who keeps writing
    gets one answer an hour, not one per message."""

    def __init__(self, clock: Clock, every: float = REFUSAL_EVERY) -> None:
        self.clock = clock
        self.every = every
        self._told: dict[str, float] = {}

    def due(self, user_id: str) -> bool:
        """Whether to answer this user now; counts the answer when it is."""
        now = self.clock.monotonic()
        last = self._told.get(user_id)
        if last is not None and now - last < self.every:
            return False
        if len(self._told) > 10_000:  # a flood of strangers must not grow memory forever
            self._told = {user: at for user, at in self._told.items() if now - at < self.every}
        self._told[user_id] = now
        return True
