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

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadenza.api import ChatMessage
from cadenza.frontends.live.split import UTF16, Units

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

WINDOW = 1.0  # seconds the next piece of a paste may take to arrive
NEAR = 0.9  # of the platform's message limit: a message this long may be a piece of a paste


@dataclass(eq=False)
class _Held:
    parts: list[ChatMessage]
    deadline: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def merged(self) -> ChatMessage:
        first = self.parts[0]
        if len(self.parts) == 1:
            return first
        return ChatMessage(first.chat, first.user_id, "".join(p.text for p in self.parts),
                           user_name=first.user_name, message_id=first.message_id)


class Pastes:
    """``deliver`` takes each prompt, merged or not, in order; ``enabled`` False holds
    nothing (``merge_pastes = false``)."""

    def __init__(self, clock: Clock, message_length: int, deliver: Callable[[ChatMessage], None],
                 *, units: Units = UTF16, enabled: bool = True, window: float = WINDOW,
                 near: float = NEAR) -> None:
        self.clock = clock
        self.deliver = deliver
        self.units = units
        self.enabled = enabled
        self.window = window
        self.threshold = near * message_length
        self._held: dict[tuple[str, str], _Held] = {}  # (chat key, user id), oldest first

    def near_limit(self, typed: str) -> bool:
        return self.enabled and self.units.length(typed) >= self.threshold

    def offer(self, message: ChatMessage, typed: str) -> bool:
        """Hold ``message`` when it may be a piece of a paste (``typed``: its text as the
        person sent it); returns whether it was held. When not, the caller hands it on
        itself, after ``flush``ing the chat."""
        if not self.near_limit(typed):
            return False
        key = (message.chat.key, message.user_id)
        deadline = self.clock.monotonic() + self.window
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held([message], deadline)
            held.task = asyncio.ensure_future(self._expire(key, held))
        else:
            held.parts.append(message)
            held.deadline = deadline
        return True

    def continues(self, chat_key: str, user_id: str, typed: str) -> bool:
        """Whether a message that would not count on its own (in a group: not addressed to
        the bot) is the next piece of a paste held for this person."""
        return (chat_key, user_id) in self._held and self.near_limit(typed)

    def flush(self, chat_key: str) -> None:
        """Hand on, in order, everything held in this chat."""
        for key in [key for key in self._held if key[0] == chat_key]:
            self._release(key)

    def flush_all(self) -> None:
        for key in list(self._held):
            self._release(key)

    def holding(self) -> int:
        return len(self._held)

    async def _expire(self, key: tuple[str, str], held: _Held) -> None:
        while (wait := held.deadline - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        if self._held.get(key) is held:
            held.task = None  # this task is ending: nothing to cancel
            self._release(key)

    def _release(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key)
        if held.task is not None:
            held.task.cancel()
        self.deliver(held.merged())
