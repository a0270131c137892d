"""What the page shows live: the running turns of every chat (text so far, latest activity,
deadline), the turns finished in this run, and the page's own chat's notices; and the browsers
listening (one bounded queue each), told about every change as a small JSON message.

A turn's text is kept as a list of chunks and joined only for a snapshot: never grown by ``+=``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cadenza import api
from cadenza.api import Clock, Notice, StreamEvent, TimeoutWarning, first_line

FINISHED_KEPT = 30  # finished turns the page still shows, newest first
NOTICES_KEPT = 50
SNAPSHOT_TEXT = 20_000  # characters of one turn's text a snapshot carries (its end)
LISTENER_QUEUE = 2_000  # messages a slow browser may fall behind before it is dropped
ACTIVITY_KINDS = frozenset({api.TOOL_USE, api.TOOL_RESULT, api.NOTICE, api.ERROR, api.THINKING})


@dataclass
class LiveTurn:
    turn: api.Turn
    started: float  # clock.monotonic()
    deadline: float | None  # clock.monotonic() of the deadline; None without the timeout plugin
    chunks: list[str] = field(default_factory=list)
    activity: str = ""
    warning: str = ""  # the current deadline warning, "" when none
    extensions: int = 0
    outcome: str = ""  # the terminal kind, once finished
    outcome_text: str = ""
    ended: float | None = None
    cost_usd: float | None = None

    def text(self, limit: int = SNAPSHOT_TEXT) -> str:
        text = "".join(self.chunks)
        return text[-limit:]

    def describe(self, now: float) -> dict[str, Any]:
        turn = self.turn
        return {
            "id": turn.id, "chat": turn.chat.key, "session": turn.session, "agent": turn.agent,
            "prompt": first_line(turn.prompt, 200) if turn.prompt else "",
            "attempt": turn.attempt, "elapsed": (self.ended or now) - self.started,
            "deadline_in": None if self.deadline is None else self.deadline - now,
            "limit": None if self.deadline is None else self.deadline - self.started,
            "warning": self.warning, "extensions": self.extensions, "activity": self.activity,
            "outcome": self.outcome, "outcome_text": self.outcome_text,
            "cost_usd": self.cost_usd, "text": self.text(),
        }


class Board:
    def __init__(self, clock: Clock, deadline_seconds: float | None) -> None:
        self.clock = clock
        self.deadline_seconds = deadline_seconds
        self.running: dict[str, LiveTurn] = {}
        self.finished: deque[LiveTurn] = deque(maxlen=FINISHED_KEPT)
        self.notices: deque[dict[str, Any]] = deque(maxlen=NOTICES_KEPT)
        self.listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()

    # --- listeners ----------------------------------------------------------------

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A new browser: its queue starts with a snapshot of everything shown."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(LISTENER_QUEUE)
        queue.put_nowait(self.snapshot())
        self.listeners.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.listeners.discard(queue)

    def close(self) -> None:
        """Cadenza stops: every stream ends (None), its browser reconnects to the next run."""
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull, asyncio.QueueEmpty):
                queue.put_nowait(None)
        self.listeners.clear()

    def publish(self, message: dict[str, Any]) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too far behind: it gets a fresh snapshot on reconnect
                self.listeners.discard(queue)
                with contextlib.suppress(asyncio.QueueFull, asyncio.QueueEmpty):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        return {"type": "snapshot",
                "running": [live.describe(now) for live in self.running.values()],
                "finished": [live.describe(now) for live in self.finished],
                "notices": list(self.notices)}

    # --- what happens -------------------------------------------------------------

    def event(self, event: StreamEvent) -> None:
        turn_id = event.turn.id
        kind = event.kind
        if kind == api.STARTED:
            now = self.clock.monotonic()
            deadline = None if self.deadline_seconds is None else now + self.deadline_seconds
            live = self.running[turn_id] = LiveTurn(event.turn, now, deadline)
            self.publish({"type": "turn", **live.describe(now)})
            return
        live = self.running.get(turn_id)
        if live is None:
            return  # never started (refused, dropped from a queue): the chat was told
        if kind == api.TEXT:
            live.chunks.append(event.text)
            self.publish({"type": "text", "id": turn_id, "text": event.text})
        elif kind in ACTIVITY_KINDS and event.text.strip():
            live.activity = first_line(event.text, 200)
            self.publish({"type": "activity", "id": turn_id, "activity": live.activity})
        elif kind == "timeout_extended":
            deadline_in = event.data.get("deadline_in")
            if isinstance(deadline_in, int | float) and live.deadline is not None:
                live.deadline = self.clock.monotonic() + deadline_in
            live.extensions = int(event.data.get("extensions", live.extensions + 1))
            live.warning = ""
            self._deadline(live, event.text)
        elif kind == api.USAGE and event.cost_usd is not None:
            live.cost_usd = event.cost_usd
        elif event.terminal:
            self._finish(live, event)

    def warning(self, warning: TimeoutWarning) -> None:
        live = self.running.get(warning.turn.id)
        if live is None:
            return
        if live.deadline is not None:
            live.deadline = self.clock.monotonic() + warning.seconds_left
        live.warning = f"about {api.duration(warning.seconds_left)} left"
        self._deadline(live, live.warning)

    def notice(self, notice: Notice) -> None:
        entry = {"kind": notice.kind, "text": notice.text, "at": self.clock.time(),
                 "files": [path.name for path in notice.files]}  # names only: no download
        self.notices.append(entry)
        self.publish({"type": "notice", **entry})

    def _deadline(self, live: LiveTurn, text: str) -> None:
        now = self.clock.monotonic()
        self.publish({"type": "deadline", "id": live.turn.id, "text": text,
                      "warning": live.warning, "extensions": live.extensions,
                      "elapsed": now - live.started,
                      "deadline_in": None if live.deadline is None else live.deadline - now,
                      "limit": None if live.deadline is None else live.deadline - live.started})

    def _finish(self, live: LiveTurn, event: StreamEvent) -> None:
        del self.running[live.turn.id]
        live.outcome = event.kind
        live.outcome_text = event.text
        live.ended = self.clock.monotonic()
        if event.cost_usd is not None:
            live.cost_usd = event.cost_usd
        self.finished.appendleft(live)
        self.publish({"type": "end", **live.describe(live.ended)})

