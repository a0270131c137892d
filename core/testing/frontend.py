"""The recording frontend: a plugin that keeps everything Cadenza tells the chats, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from cadenza.api import (
    TEXT,
    ChatRef,
    Lifecycle,
    Notice,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    hookimpl,
)

FRONTEND = "test"
CHAT = ChatRef(FRONTEND, "chat-1")  # the recording frontend's default chat
POLL = 0.05  # seconds: ``wait_for`` also re-checks conditions that no hook call changes


class RecordingFrontend:
    """A plugin, registered as ``recording``, that owns the chats of frontend ``test``.

    It records every stream event, notice, timeout warning, lifecycle and recovery, each in its
    own list and all of them in ``log`` in arrival order, and answers ``authorize`` ``True``
    for its chats unless the user is in ``refused``. Tests await what they expect with
    ``wait_for`` and ``finished``.
    """

    frontend = FRONTEND

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.notices: list[Notice] = []
        self.warnings: list[TimeoutWarning] = []
        self.lifecycles: list[Lifecycle] = []
        self.recoveries: list[Recovery] = []
        self.log: list[tuple[str, object]] = []
        self.refused: set[str] = set()
        self._changed = asyncio.Condition()

    async def _record(self, kind: str, item: Any, into: list[Any]) -> None:
        into.append(item)
        self.log.append((kind, item))
        async with self._changed:
            self._changed.notify_all()

    @hookimpl
    async def on_stream_event(self, event: StreamEvent) -> None:
        await self._record("event", event, self.events)

    @hookimpl
    async def on_notice(self, notice: Notice) -> None:
        await self._record("notice", notice, self.notices)

    @hookimpl
    async def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        await self._record("warning", warning, self.warnings)

    @hookimpl
    async def on_startup_lifecycle(self, lifecycle: Lifecycle) -> None:
        await self._record("lifecycle", lifecycle, self.lifecycles)

    @hookimpl
    async def on_recover(self, recovery: Recovery) -> None:
        await self._record("recover", recovery, self.recoveries)

    @hookimpl
    def authorize(self, chat: ChatRef, user_id: str) -> bool | None:
        """This frontend's allowlist: everyone but the users in ``refused``."""
        if chat.frontend != self.frontend:
            return None
        return user_id not in self.refused

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until ``condition()`` is true and return its value; it is checked after every
        recorded item and every 50 ms. ``TimeoutError`` after ``timeout`` real seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    async with self._changed:
                        if result := condition():
                            return result
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(POLL):
                                await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"not true within {timeout:g} s: {_describe(condition)}; "
                               f"recorded so far: {self.summary()}") from None

    def terminals(self) -> list[StreamEvent]:
        """The terminal events so far (one per ended turn), in order."""
        return [event for event in self.events if event.terminal]

    async def finished(self, count: int = 1, timeout: float = 20.0) -> list[StreamEvent]:
        """The terminal events, once there are at least ``count`` of them."""
        await self.wait_for(lambda: len(self.terminals()) >= count, timeout)
        return self.terminals()

    def text_of(self, turn_id: str) -> str:
        """The answer text of one turn: its text events joined."""
        return "".join(e.text for e in self.events if e.turn.id == turn_id and e.kind == TEXT)

    def notice_texts(self) -> list[str]:
        return [notice.text for notice in self.notices]

    def summary(self, last: int = 12) -> str:
        """The last recorded items, one short line each, for failure messages."""
        lines = []
        for kind, item in self.log[-last:]:
            if isinstance(item, StreamEvent):
                what = f"{item.kind} {item.text[:60]!r}" if item.text else item.kind
            elif isinstance(item, Notice):
                what = f"{item.kind} {item.text[:60]!r}"
            elif isinstance(item, TimeoutWarning):
                what = f"stage {item.stage:g}, {item.seconds_left:.1f} s left"
            elif isinstance(item, Recovery):
                what = f"{item.action} ({item.reason})"
            else:
                what = str(getattr(item, "kind", item))
            lines.append(f"{kind}: {what}")
        skipped = len(self.log) - len(lines)
        return ("; ".join(([f"({skipped} earlier)"] if skipped else []) + lines)
                or "nothing")


def _describe(condition: Callable[[], Any]) -> str:
    code = getattr(condition, "__code__", None)
    name = getattr(condition, "__qualname__", repr(condition))
    if code is not None:
        return f"{name} ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})"
    return name
