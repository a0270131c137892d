"""The timeout controller: staged warnings before a turn's deadline, bounded activity-based
extension, a clean kill at expiry.

One sleeping task per running turn wakes only when something is due (a warning stage or the
deadline); activity is read from the runner's last-output timestamp, so the stream itself
costs nothing here beyond the core recording that timestamp.

While the agent waits for the user (a permission prompt: ``RunningTurn.waiting_for_user``) the
controller pauses: nothing fires, and when the wait ends the deadline, the hard cap and the
start move on by the time waited, so waiting for an answer costs the turn no time.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from cadenza import api
from cadenza.api import (
    FOREGROUND,
    TIMED_OUT,
    Bot,
    ChatMessage,
    PluginContext,
    Settings,
    StreamEvent,
    TimeoutWarning,
    duration,
    hookimpl,
)

KEYS = ("seconds", "warn_before", "extend_by", "max_seconds", "activity_window", "kill_grace")


@dataclass(frozen=True)
class Limits:
    seconds: float
    warn_before: tuple[float, ...]  # largest first
    extend_by: float
    max_seconds: float
    activity_window: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        settings.reject_unknown(KEYS)
        seconds = settings.number("seconds", 1800, minimum=0.001)
        stages = settings.numbers("warn_before", [60, 10])
        for stage in stages:
            if not 0 < stage < seconds:
                raise settings.error(
                    "warn_before", f"each stage must be between 0 and seconds ({seconds:g}), "
                    f"not {stage:g}")
        max_seconds = settings.number("max_seconds", 7200, minimum=0.001)
        if max_seconds < seconds:
            raise settings.error("max_seconds", f"must be at least seconds ({seconds:g})")
        return cls(
            seconds=seconds,
            warn_before=tuple(sorted(set(stages), reverse=True)),
            extend_by=settings.number("extend_by", 300, minimum=0),
            max_seconds=max_seconds,
            activity_window=settings.number("activity_window", 30, minimum=0),
        )

    @property
    def max_extensions(self) -> int:
        if self.extend_by <= 0:
            return 0
        return math.ceil((self.max_seconds - self.seconds) / self.extend_by - 1e-9)


@dataclass
class Deadline:
    """One running turn's deadline and what has been done about it."""

    turn_id: str
    started: float
    deadline: float
    cap: float
    fired: set[float] = field(default_factory=set)  # stages warned about for this deadline
    extensions: int = 0
    paused: float = 0.0  # the runner's paused_seconds already added to the times above
    task: asyncio.Task[None] | None = None


class TimeoutController:
    def __init__(self, context: PluginContext) -> None:
        self.limits = Limits.from_settings(context.settings)
        context.settings.number("kill_grace", 5, minimum=0)  # read by the core; checked here
        self.clock = context.clock
        self.hooks = context.hooks
        self.log = context.log
        self.bot: Bot | None = None
        self.deadlines: dict[str, Deadline] = {}

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        self.bot = bot

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("extend", self.cmd_extend, help="give the running turn more time",
                 usage="[SESSION]")

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.kind == api.STARTED:
            self._arm(event.turn.id)
        elif event.terminal:
            entry = self.deadlines.pop(event.turn.id, None)
            if entry is not None and entry.task is not None:
                entry.task.cancel()

    @hookimpl
    def on_shutdown(self) -> None:
        for entry in self.deadlines.values():
            if entry.task is not None:
                entry.task.cancel()
        self.deadlines.clear()

    # --- scheduling -------------------------------------------------------------

    def _arm(self, turn_id: str) -> None:
        now = self.clock.monotonic()
        limits = self.limits
        entry = Deadline(turn_id, now, now + limits.seconds, now + limits.max_seconds)
        self.deadlines[turn_id] = entry
        self._schedule(entry)

    def _schedule(self, entry: Deadline) -> None:
        if entry.task is not None:
            entry.task.cancel()
        entry.task = asyncio.ensure_future(self._watch(entry))

    async def _watch(self, entry: Deadline) -> None:
        while True:
            await self._pause_while_waiting(entry)
            now = self.clock.monotonic()
            due = [s for s in self.limits.warn_before
                   if s not in entry.fired and entry.deadline - s <= now]
            if due and now < entry.deadline:
                # Several stages can be due at once after an extension: warn about the nearest.
                entry.fired.update(due)
                self._warn(entry, min(due), now)
                continue
            if now >= entry.deadline:
                if not self._extend_for_activity(entry, now):
                    self._expire(entry, now)
                    return
                continue
            upcoming = [entry.deadline - s for s in self.limits.warn_before
                        if s not in entry.fired]
            wake = min([*upcoming, entry.deadline])
            await self.clock.sleep(max(wake - now, 0))

    async def _pause_while_waiting(self, entry: Deadline) -> None:
        """Wait while the agent waits for the user, then move the times on by the wait."""
        runner = self._runner(entry.turn_id)
        if runner is None:
            return
        if runner.waiting:
            await runner.until_not_waiting()
        waited = runner.paused_seconds - entry.paused
        if waited > 0:
            entry.paused += waited
            entry.started += waited
            entry.deadline += waited
            entry.cap += waited

    def _runner(self, turn_id: str) -> Any:
        return self.bot.running(turn_id) if self.bot is not None else None

    def _warn(self, entry: Deadline, stage: float, now: float) -> None:
        runner = self._runner(entry.turn_id)
        if runner is None:
            return
        warning = TimeoutWarning(
            turn=runner.turn, seconds_left=entry.deadline - now, stage=stage,
            extensions_used=entry.extensions, max_extensions=self.limits.max_extensions,
            elapsed=now - entry.started,
        )
        # Fired in the background: a plugin that hangs here must not delay anything. The
        # stream event goes through the turn, in order, and never after its terminal event.
        self.hooks.fire("on_timeout_warning", warning=warning)
        runner.post(f"timeout_warn_{stage:g}", "", {"seconds_left": warning.seconds_left,
                                                    "due": entry.deadline - stage, "at": now})

    def _extend_for_activity(self, entry: Deadline, now: float) -> bool:
        runner = self._runner(entry.turn_id)
        if runner is None or entry.deadline >= entry.cap or self.limits.extend_by <= 0:
            return False
        if now - runner.last_output_at > self.limits.activity_window:
            return False
        self._extend(entry, "the agent is still producing output")
        return True

    def _extend(self, entry: Deadline, why: str) -> float:
        """Move the deadline by ``extend_by`` within the cap; return the seconds added."""
        added = min(self.limits.extend_by, entry.cap - entry.deadline)
        if added <= 0:
            return 0.0
        entry.deadline += added
        entry.extensions += 1
        entry.fired.clear()  # the stages re-arm for the new deadline
        runner = self._runner(entry.turn_id)
        if runner is not None:
            text = (f"⏱ extended by {duration(added)} ({why}; extension {entry.extensions} "
                    f"of at most {self.limits.max_extensions})")
            runner.post("timeout_extended", text, {
                "added": added, "extensions": entry.extensions,
                "deadline_in": entry.deadline - self.clock.monotonic()})
        return added

    def _expire(self, entry: Deadline, now: float) -> None:
        self.deadlines.pop(entry.turn_id, None)
        runner = self._runner(entry.turn_id)
        if runner is None:
            return
        output = runner.last_output.strip()
        last = output.splitlines()[-1:] if output else []
        seen = f" Last output: “{last[0][:200]}”." if last else " It printed nothing."
        extensions = f" and {entry.extensions} extension(s)" if entry.extensions else ""
        reason = (f"The turn ran {duration(now - entry.started)}, its limit{extensions}.{seen} "
                  "Send a follow-up prompt to continue the same conversation.")
        runner.stop(TIMED_OUT, reason, {"due": entry.deadline, "at": now,
                                        "extensions": entry.extensions})

    # --- /extend --------------------------------------------------------------

    async def cmd_extend(self, bot: Bot, message: ChatMessage, args: str) -> None:
        runner = bot.running(args) if args else None
        if runner is None or runner.turn.chat != message.chat:
            runner = bot.running_in(message.chat, args or FOREGROUND)
        entry = self.deadlines.get(runner.turn.id) if runner is not None else None
        if entry is None:
            await bot.notify(message.chat, "Nothing is running to extend.")
            return
        added = self._extend(entry, "asked in chat")
        if not added:
            await bot.notify(message.chat, "The turn is already at its hard limit of "
                             f"{duration(self.limits.max_seconds)}; /stop ends it.")
            return
        self._schedule(entry)
