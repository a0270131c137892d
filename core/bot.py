"""The bot: inbound messages → veto → commands or prompts → one running turn per chat session.

Frontends hand every inbound message to ``Bot.handle``; plugins drive turns through
``submit``, ``enqueue``, ``stop_turn`` and ``notify``. A prompt that arrives while its
session runs a turn waits in that session's queue, and the user is told so.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cadenza import events
from cadenza.agents import Agent
from cadenza.agents.summary import compact
from cadenza.clock import Clock
from cadenza.events import FOREGROUND, ChatMessage, ChatRef, Notice, StreamEvent, Turn
from cadenza.formatting import duration, footer
from cadenza.output import OUTPUTS_DIR, OutputCap
from cadenza.process import stop_marked
from cadenza.relay import HookRelay
from cadenza.text import storable
from cadenza.turns import TurnRunner

log = logging.getLogger("cadenza.bot")
REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about one user's refused messages

CommandHandler = Callable[["Bot", ChatMessage, str], Awaitable[None] | None]
_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


@dataclass
class Command:
    name: str
    handler: CommandHandler
    help: str = ""
    usage: str = ""


@dataclass(frozen=True)
class Limits:
    """What one chat, and the whole bot, may have waiting or running (``[core]``)."""

    max_queued: int = 20  # prompts waiting per chat
    max_running: int = 10  # agents running at once; more turns wait for a free one


@dataclass
class Lane:
    """One conversation: a chat's foreground session or one of its named sessions."""

    chat: ChatRef
    session: str
    agent: str
    queue: deque[Turn] = field(default_factory=deque)
    runner: TurnRunner | None = None
    task: asyncio.Task[None] | None = None
    resume_id: str | None = None  # the agent-side session the next turn continues
    last: str = ""  # how the last turn ended, for /status

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


def new_turn_id() -> str:
    return uuid.uuid4().hex[:12]


class Bot:
    def __init__(
        self,
        relay: HookRelay,
        agents: Mapping[str, Agent],
        default_agent: str,
        clock: Clock,
        *,
        workdir: Path,
        kill_grace: float,
        limits: Limits | None = None,
        max_output: int = 1_000_000,
        state_dir: Path | None = None,
    ) -> None:
        self.relay = relay
        self.limits = limits or Limits()
        self.max_output = max_output
        # whole answers over max_output, sent to the chat as files
        self.outputs_dir = (state_dir or workdir / ".cadenza") / OUTPUTS_DIR
        self._agents = dict(agents)
        self.default_agent = default_agent
        self.clock = clock
        self.workdir = workdir
        self.kill_grace = kill_grace
        self.accepting = True
        self._commands: dict[str, Command] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._runners: dict[str, TurnRunner] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()  # lanes waiting for an agent
        self._slots_used = 0  # agents running or about to, at most limits.max_running
        self._stop_requested = asyncio.Event()  # set by a frontend that is done (console EOF)
        # set once every plugin's on_ready ran (the journal plans and enqueues the turns it
        # resumes there), or at shutdown: until then messages wait, and nothing is idle
        self._ready = asyncio.Event()
        self.exit_code = 0  # what `cadenza run` exits with when a frontend asked it to stop
        self._refusal_logged: dict[tuple[str, str], float] = {}
        for name, handler, text in (
            ("stop", Bot._cmd_stop, "cancel the running turn (and what waits behind it)"),
            ("new", Bot._cmd_new, "start a fresh conversation"),
            ("status", Bot._cmd_status, "what is running and for how long"),
            ("help", Bot._cmd_help, "list the commands"),
        ):
            self.add_command(name, handler, help=text)

    # --- commands -----------------------------------------------------------------

    def add_command(
        self, name: str, handler: CommandHandler, help: str = "", usage: str = ""
    ) -> None:
        self._commands[name.lower()] = Command(name.lower(), handler, help, usage)

    async def handle(self, message: ChatMessage) -> None:
        """Everything a frontend receives goes through here. Never raises.

        A message that arrives before startup is over waits for it: the journal must see
        the previous run's turns, not this one's, when it plans what to resume."""
        if not self._ready.is_set():
            await self._ready.wait()
        try:
            await self._handle(message)
        except Exception:
            log.exception("failed to handle a message from %s", message.chat.key)
            await self.notify(message.chat, "Something went wrong handling that message; "
                              "it was logged.", kind="error")

    async def _handle(self, message: ChatMessage) -> None:
        message = replace(message, text=storable(message.text),
                          user_name=storable(message.user_name))
        if self.relay.disabled(message.chat.frontend):
            # a frontend switched off for failing has lost its veto: nothing gets in
            self._refused(message, f"the {message.chat.frontend} plugin is switched off")
            return
        veto = await self.relay.veto("on_inbound_message", message=message)
        if veto is not None:
            self._refused(message, veto)
            return
        text = message.text.strip()
        if not text and not message.attachments:
            return
        if not self.accepting:
            await self.notify(message.chat, "Cadenza is shutting down; send it again in a "
                              "moment.", kind="error")
            return
        if message.attachments:
            if await self.relay.first("on_attachments", message=message) is not True:
                await self.notify(message.chat, "Files are not taken here (the files plugin "
                                  "is off, or failed); send the text alone.", kind="error")
            return
        found = _COMMAND.match(text)
        if found:
            await self._run_command(message, found.group(1).lower(), (found.group(2) or "").strip())
            return
        if text.startswith("@") and "session" in self._commands:
            # "@NAME PROMPT" is the short form of "/session NAME PROMPT"
            await self._run_command(message, "session", text[1:])
            return
        if await self.relay.first("take_prompt", message=message) is True:
            return  # a plugin joined it to something (a caption for files sent just before)
        await self.submit(message.chat, message.text, user_id=message.user_id)

    def _refused(self, message: ChatMessage, why: str) -> None:
        # at most one log line a minute per user: a flood of refused messages is no log flood
        key = (message.chat.frontend, message.user_id)
        now = self.clock.monotonic()
        if now - self._refusal_logged.get(key, -REFUSAL_LOG_EVERY) >= REFUSAL_LOG_EVERY:
            self._refusal_logged[key] = now
            if len(self._refusal_logged) > 10_000:
                self._refusal_logged.clear()
            log.info("refused a message from user %s in %s: %s",
                     message.user_id, message.chat.key, why)

    async def _run_command(self, message: ChatMessage, name: str, args: str) -> None:
        command = self._commands.get(name)
        if command is None:
            await self.notify(message.chat, f"Unknown command /{name}. /help lists the "
                              "commands; to send it to the agent, start with a space.",
                              kind="error")
            return
        result = command.handler(self, message, args)
        if inspect.isawaitable(result):
            await result

    async def _cmd_stop(self, message: ChatMessage, args: str) -> None:
        session = args or FOREGROUND
        lane = self._lanes.get((message.chat.key, session))
        if lane is None or not lane.busy:
            await self.notify(message.chat, "Nothing is running" + _in(session) + ".")
            return
        dropped = await self._stop_lane(lane, "stopped with /stop")
        tail = f"; {dropped} waiting prompt(s) dropped" if dropped else ""
        await self.notify(message.chat, "Stopping" + _in(session) + tail + ".")

    async def _cmd_new(self, message: ChatMessage, args: str) -> None:
        lane = self._lane(message.chat, FOREGROUND)
        lane.resume_id = None
        note = " (the running turn goes on; /stop ends it)" if lane.busy else ""
        await self.notify(message.chat, "The next prompt starts a fresh conversation" + note + ".")

    async def _cmd_status(self, message: ChatMessage, args: str) -> None:
        await self.notify(message.chat, self.status_text(message.chat), kind="status")

    async def _cmd_help(self, message: ChatMessage, args: str) -> None:
        lines = ["Send any text to give it to the agent. Commands:"]
        for command in sorted(self._commands.values(), key=lambda c: c.name):
            usage = f" {command.usage}" if command.usage else ""
            lines.append(f"/{command.name}{usage} — {command.help}")
        await self.notify(message.chat, "\n".join(lines), kind="help")

    def status_text(self, chat: ChatRef) -> str:
        lines = []
        for lane in self._lanes.values():
            if lane.chat != chat:
                continue
            name = f"[{lane.session}] " if lane.session else ""
            if lane.runner is not None:
                runner = lane.runner
                lines.append(f"{name}running {duration(runner.elapsed)} with {lane.agent}: "
                             f"{compact(runner.turn.prompt, 60)}")
            if lane.queue:
                lines.append(f"{name}{len(lane.queue)} waiting")
            if lane.runner is None and lane.last:
                lines.append(name + lane.last)
        if not lines:
            lines.append("Nothing is running.")
        lines.append(f"Agent: {self.default_agent}.")
        return "\n".join(lines)

    # --- turns --------------------------------------------------------------------

    def _lane(self, chat: ChatRef, session: str) -> Lane:
        key = (chat.key, session)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(chat, session, self.default_agent)
        return lane

    async def submit(
        self, chat: ChatRef, prompt: str, session: str = FOREGROUND, *, user_id: str = "",
        options: Mapping[str, Any] | None = None, turn_id: str | None = None,
    ) -> Turn | None:
        """Accept a prompt of ``user_id`` for a chat's session: it runs now or after the turns
        ahead of it. None when the chat already has ``max_queued`` prompts waiting (it is told).
        ``turn_id``: the id the caller prepared for it (else a new one)."""
        waiting = self.waiting(chat)
        if waiting >= self.limits.max_queued:
            await self.notify(chat, f"{waiting} prompts are already waiting here, the most "
                              "this chat may queue; send it again when one has run (/status "
                              "shows them, /stop drops them).", kind="error")
            return None
        turn = Turn(id=turn_id or new_turn_id(), chat=chat, prompt=storable(prompt),
                    agent=self._lane(chat, session).agent, session=session,
                    created_at=self.clock.time(), user_id=user_id, options=dict(options or {}))
        await self.enqueue(turn)
        return turn

    def waiting(self, chat: ChatRef) -> int:
        """How many prompts wait in the chat's conversations (not counting running turns)."""
        return sum(len(lane.queue) for lane in self._lanes.values() if lane.chat == chat)

    async def enqueue(self, turn: Turn, *, announce: bool = True) -> None:
        """Accept a prepared turn (a new prompt, or a recovered one with its attempt number)."""
        lane = self._lane(turn.chat, turn.session)
        if turn.resume_id:
            lane.resume_id = turn.resume_id
        lane.queue.append(turn)
        await self.relay.call("on_turn_accepted", turn=turn)
        if lane.busy:
            if announce:
                ahead = len(lane.queue) - 1 + (lane.runner is not None)
                await self.notify(turn.chat, f"Queued{_in(turn.session)}: {ahead} turn"
                                  f"{'s' if ahead != 1 else ''} ahead of it.",
                                  kind="queued", turn_id=turn.id, ahead=ahead)
        else:
            lane.task = asyncio.ensure_future(self._pump(lane))

    async def _pump(self, lane: Lane) -> None:
        try:
            while lane.queue and self.accepting:
                await self._take_slot(lane)
                try:
                    if lane.queue and self.accepting:
                        await self._run_next(lane)
                finally:
                    self._give_slot()
        finally:
            if not lane.queue and lane.resume_id is None:
                # nothing to continue: an idle lane costs memory for every chat ever seen
                self._lanes.pop((lane.chat.key, lane.session), None)

    async def _take_slot(self, lane: Lane) -> None:
        """Wait for one of the ``max_running`` agent slots, first come first served; the chat
        is told its place when it has to wait."""
        if self._slots_used < self.limits.max_running and not self._slot_waiters:
            self._slots_used += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        ahead = len(self._slot_waiters) - 1
        await self.notify(lane.chat, f"All {self.limits.max_running} agents are busy; this "
                          f"turn starts when one is free ({ahead} ahead of it).",
                          kind="queued", ahead=ahead)
        try:
            await waiter  # the slot is handed over: _slots_used already counts it
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_slot()
            else:
                self._slot_waiters.remove(waiter)
            raise

    def _give_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots_used -= 1

    async def _run_next(self, lane: Lane) -> None:
        turn = lane.queue.popleft()
        if not await self.relay.allowed("authorize", chat=turn.chat, user_id=turn.user_id):
            # the sender was removed from the allowlist (or its frontend is gone) meanwhile
            event = StreamEvent(turn, 0, events.CANCELLED, "not run: the sender is no longer "
                                "allowed to use this bot", {"refused": True})
            await self.relay.call("on_stream_event", event=event)
            return
        if turn.resume_id is None and lane.resume_id and turn.agent == lane.agent:
            turn = replace(turn, resume_id=lane.resume_id)
        agent = self._agents.get(turn.agent)
        if agent is None:
            agent = self._agents[self.default_agent]
            turn = replace(turn, agent=agent.name, resume_id=None)
        if not agent.supports_resume():
            turn = replace(turn, resume_id=None)
        output = OutputCap(turn.id, self.max_output, self.outputs_dir)
        preamble = "" if turn.resume_id else "\n\n".join(
            str(note) for note in await self.relay.call("prompt_preamble", turn=turn) if note)
        extra = await self.relay.call("turn_options", turn=turn)
        if extra:
            turn = replace(turn, options=merged_options(turn.options, extra))
        runner = TurnRunner(turn, agent, self.relay, self.clock, workdir=self.workdir,
                            kill_grace=self.kill_grace, output=output, preamble=preamble)
        lane.runner = self._runners[turn.id] = runner
        try:
            result = await runner.run()
            lane.last = f"last turn {result.kind}" + footer(result)
        except Exception:
            log.exception("turn %s failed inside Cadenza", turn.id)
        finally:
            output.close()
            lane.runner = None
            del self._runners[turn.id]
        if runner.agent_session_id:
            lane.resume_id = runner.agent_session_id

    async def _stop_lane(self, lane: Lane, reason: str) -> int:
        """Cancel a conversation's running turn and the turns waiting behind it (each gets its
        terminal event); the number of waiting turns dropped."""
        dropped = list(lane.queue)
        lane.queue.clear()
        for turn in dropped:
            event = StreamEvent(turn, 0, events.CANCELLED, reason, {"queued": True})
            await self.relay.call("on_stream_event", event=event)
        if lane.runner is not None:
            lane.runner.stop(events.CANCELLED, reason)
        return len(dropped)

    def stop_turn(self, turn_id: str, kind: str = events.CANCELLED, reason: str = "") -> bool:
        runner = self._runners.get(turn_id)
        if runner is None:
            return False
        runner.stop(kind, reason)
        return True

    # --- the surface plugins use ---------------------------------------------------------

    def running(self, turn_id: str) -> TurnRunner | None:
        """The handle of a running turn: ``turn``, ``elapsed``, ``last_output_at``,
        ``last_output``, ``stop(kind, reason, data)`` and ``post(kind, text, data)``."""
        return self._runners.get(turn_id)

    def running_in(self, chat: ChatRef, session: str = FOREGROUND) -> TurnRunner | None:
        """The handle of the turn running in a chat's conversation, if any."""
        lane = self._lanes.get((chat.key, session))
        return lane.runner if lane is not None else None

    def continue_conversation(
        self, chat: ChatRef, session: str, agent_session_id: str | None, agent: str = ""
    ) -> None:
        """Set what a conversation's next turn continues: the agent-side session id (None:
        a fresh conversation) and, when it is known here, the agent."""
        lane = self._lane(chat, session)
        lane.resume_id = agent_session_id
        if agent in self._agents:
            lane.agent = agent

    async def end_conversation(self, chat: ChatRef, session: str, reason: str) -> int:
        """Stop a conversation's running and waiting turns and forget what it continues; the
        number of waiting turns dropped."""
        lane = self._lanes.get((chat.key, session))
        if lane is None:
            return 0
        dropped = await self._stop_lane(lane, reason)
        lane.resume_id = None
        return dropped

    def command_list(self) -> list[tuple[str, str, str]]:
        """(name, help, usage) of every chat command, by name."""
        return [(c.name, c.help, c.usage) for c in sorted(self._commands.values(),
                                                            key=lambda c: c.name)]

    def request_stop(self, exit_code: int = 0) -> None:
        """Stop Cadenza as if signalled: for a frontend whose input is over (console EOF), or
        that cannot work as configured (``exit_code`` 2, the configuration's fault)."""
        self.exit_code = max(self.exit_code, exit_code)
        self._stop_requested.set()

    async def stop_requested(self) -> None:
        """Wait until a frontend asks Cadenza to stop (``request_stop``)."""
        await self._stop_requested.wait()

    async def stop_strays(self, turn_ids: list[str]) -> int:
        """Stop agent processes that earlier runs of these turns left behind (a crashed
        Cadenza cannot stop its agents): SIGTERM, SIGKILL after ``kill_grace``."""
        return await stop_marked(turn_ids, self.kill_grace, self.clock.sleep)

    async def notify(self, chat: ChatRef, text: str, kind: str = "info", *,
                     files: tuple[Path, ...] = (), **data: Any) -> None:
        await self.relay.call("on_notice", notice=Notice(chat, text, kind, data, files))

    def mark_ready(self) -> None:
        """Startup is over: the turns to resume are in their lanes."""
        self._ready.set()

    async def idle(self) -> None:
        """Wait until startup is over and no turn runs or waits."""
        await self._ready.wait()
        while busy := [lane.task for lane in self._lanes.values() if lane.busy]:
            await asyncio.gather(*busy, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop taking messages and interrupt running turns; the journal resumes them later."""
        self.accepting = False
        self._ready.set()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)  # the lane wakes, sees it must stop, gives it back
        self._slot_waiters.clear()
        for runner in list(self._runners.values()):
            runner.stop(events.INTERRUPTED, "Cadenza is shutting down; this turn resumes "
                        "when it starts again")
        await self.idle()


def merged_options(options: Mapping[str, Any], extra: list[Any]) -> dict[str, Any]:
    """``options`` with the ``turn_options`` plugins' answers: lists under one key are
    joined (without repeats), other values are replaced; answers that are no mapping are
    skipped."""
    merged = dict(options)
    for more in extra:
        if not isinstance(more, Mapping):
            continue
        for key, value in more.items():
            before = merged.get(key)
            if isinstance(before, list | tuple) and isinstance(value, list | tuple):
                value = list(dict.fromkeys([*before, *value]))
            merged[key] = value
    return merged


def _in(session: str) -> str:
    return f" in session {session}" if session else ""

