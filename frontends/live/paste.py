"""One paste, one prompt: a long paste that the chat client split into several messages is
merged back into one prompt.

Chat clients cut a paste longer than the platform's limit into consecutive messages
(Telegram at 4,096 characters). Without merging, each would be a turn of its own, queued
behind the first. So a message near the limit (``NEAR`` of it or more) from a person is held
for ``WINDOW`` seconds; each further near-limit message of theirs in the same chat within
that time is appended to it (and holds it ``WINDOW`` seconds more), and when none comes the
whole text is handed on as one prompt. Any other message in the chat (a short one, a
command, a button press) first hands on what is held, then goes its own way, so the order of
a chat's messages never changes. A message well under the limit is never held, so typing
costs no delay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cadenza.api import ChatMessage
from cadenza.frontends.live.holding import Holding
from cadenza.frontends.live.split import UTF16, Units

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

WINDOW = 1.0  # seconds the next piece of a paste may take to arrive
NEAR = 0.9  # of the platform's message limit: a message this long may be a piece of a paste


def _joined(parts: list[ChatMessage]) -> ChatMessage:
    first = parts[0]
    if len(parts) == 1:
        return first
    return ChatMessage(first.chat, first.user_id, "".join(p.text for p in parts),
                       user_name=first.user_name, message_id=first.message_id)


class Pastes:
    """``deliver`` takes each prompt, merged or not, in order; ``enabled`` False holds
    nothing (``merge_pastes = false``)."""

    def __init__(self, clock: Clock, message_length: int, deliver: Callable[[ChatMessage], None],
                 *, units: Units = UTF16, enabled: bool = True, window: float = WINDOW,
                 near: float = NEAR) -> None:
        self.units = units
        self.enabled = enabled
        self.threshold = near * message_length
        self._held = Holding(clock, window, _joined, deliver)  # by (chat key, user id)

    def near_limit(self, typed: str) -> bool:
        return self.enabled and self.units.length(typed) >= self.threshold

    def offer(self, message: ChatMessage, typed: str) -> bool:
        """Hold ``message`` when it may be a piece of a paste (``typed``: its text as the
        person sent it); returns whether it was held. When not, the caller hands it on
        itself, after ``flush``ing the chat."""
        if not self.near_limit(typed):
            return False
        self._held.add((message.chat.key, message.user_id), message)
        return True

    def continues(self, chat_key: str, user_id: str, typed: str) -> bool:
        """Whether a message that would not count on its own (in a group: not addressed to
        the bot) is the next piece of a paste held for this person."""
        return (chat_key, user_id) in self._held and self.near_limit(typed)

    def flush(self, chat_key: str) -> None:
        """Hand on, in order, everything held in this chat."""
        self._held.flush(chat_key)

    def flush_all(self) -> None:
        self._held.flush_all()

    def holding(self) -> int:
        return len(self._held)
