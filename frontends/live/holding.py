"""Messages held back a moment so that pieces of one thing become one prompt: the pieces of a
long paste (``paste``), the files of an album (Telegram's ``files``).

``Holding`` keeps, per key (a chat, a person and what joins them), the messages that came in,
until ``window`` seconds pass without another; then ``deliver`` gets them merged into one.
``flush(chat_key)`` hands on at once, in order, everything held in a chat: any other message
there goes after, so a chat's order never changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadenza.api import ChatMessage

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock


@dataclass(eq=False)
class _Held:
    parts: list[ChatMessage]
    deadline: float
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Holding:
    """Keys are tuples whose first item is the chat's key."""

    def __init__(self, clock: Clock, window: float,
                 merge: Callable[[list[ChatMessage]], ChatMessage],
                 deliver: Callable[[ChatMessage], None]) -> None:
        self.clock = clock
        self.window = window
        self.merge = merge
        self.deliver = deliver
        self._held: dict[tuple[Hashable, ...], _Held] = {}  # oldest first

    def add(self, key: tuple[Hashable, ...], message: ChatMessage) -> None:
        """Hold ``message`` with what is held under ``key``, ``window`` seconds more."""
        deadline = self.clock.monotonic() + self.window
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held([message], deadline)
            held.task = asyncio.ensure_future(self._expire(key, held))
        else:
            held.parts.append(message)
            held.deadline = deadline

    def __contains__(self, key: tuple[Hashable, ...]) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def flush(self, chat_key: str) -> None:
        """Hand on, in order, everything held in this chat."""
        for key in [key for key in self._held if key[0] == chat_key]:
            self._release(key)

    def flush_all(self) -> None:
        for key in list(self._held):
            self._release(key)

    async def _expire(self, key: tuple[Hashable, ...], held: _Held) -> None:
        while (wait := held.deadline - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        if self._held.get(key) is held:
            held.task = None  # this task is ending: nothing to cancel
            self._release(key)

    def _release(self, key: tuple[Hashable, ...]) -> None:
        held = self._held.pop(key)
        if held.task is not None:
            held.task.cancel()
        self.deliver(self.merge(held.parts))
