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

from core import events
from core.agents import Agent
from core.agents.summary import compact
from core.clock import Clock
from core.events import FOREGROUND, ChatMessage, ChatRef, Notice, StreamEvent, Turn
from core.formatting import duration, footer
from core.process import stop_marked
from core.relay import HookRelay
from core.turns import TurnRunner

log = logging.getLogger("cadenza.bot")

CommandHandler = Callable[["Bot", ChatMessage, str], Awaitable[None] | None]
_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


@dataclass
class Command:
    name: str
    handler: CommandHandler
    help: str = ""
    usage: str = ""


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
    last: StreamEvent | None = None  # the last turn's terminal event

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


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
    ) -> None:
        self.relay = relay
        self.agents = dict(agents)
        self.default_agent = default_agent
        self.clock = clock
        self.workdir = workdir
        self.kill_grace = kill_grace
        self.accepting = True
        self.commands: dict[str, Command] = {}
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.runners: dict[str, TurnRunner] = {}
        self.stop_requested = asyncio.Event()  # set by a frontend that is done (console EOF)
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
        self.commands[name.lower()] = Command(name.lower(), handler, help, usage)

    async def handle(self, message: ChatMessage) -> None:
        """Everything a frontend receives goes through here. Never raises."""
        try:
            await self._handle(message)
        except Exception:
            log.exception("failed to handle a message from %s", message.chat.key)
            await self.notify(message.chat, "Something went wrong handling that message; "
                              "it was logged.", kind="error")

    async def _handle(self, message: ChatMessage) -> None:
        veto = await self.relay.first("on_inbound_message", message=message)
        if veto is not None:
            log.info("refused a message from user %s in %s: %s",
                     message.user_id, message.chat.key, veto)
            return
        text = message.text.strip()
        if not text:
            return
        if not self.accepting:
            await self.notify(message.chat, "Cadenza is shutting down; send it again in a "
                              "moment.", kind="error")
            return
        found = _COMMAND.match(text)
        if found:
            await self._run_command(message, found.group(1).lower(), (found.group(2) or "").strip())
            return
        if text.startswith("@") and "session" in self.commands:
            # "@NAME PROMPT" is the short form of "/session NAME PROMPT"
            await self._run_command(message, "session", text[1:])
            return
        await self.submit(message.chat, message.text)

    async def _run_command(self, message: ChatMessage, name: str, args: str) -> None:
        command = self.commands.get(name)
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
        lane = self.lanes.get((message.chat.key, session))
        if lane is None or not lane.busy:
            await self.notify(message.chat, "Nothing is running" + _in(session) + ".")
            return
        dropped = await self.stop_lane(lane, "stopped with /stop")
        tail = f"; {dropped} waiting prompt(s) dropped" if dropped else ""
        await self.notify(message.chat, "Stopping" + _in(session) + tail + ".")

    async def _cmd_new(self, message: ChatMessage, args: str) -> None:
        lane = self.lane(message.chat, FOREGROUND)
        lane.resume_id = None
        note = " (the running turn goes on; /stop ends it)" if lane.busy else ""
        await self.notify(message.chat, "The next prompt starts a fresh conversation" + note + ".")

    async def _cmd_status(self, message: ChatMessage, args: str) -> None:
        await self.notify(message.chat, self.status_text(message.chat), kind="status")

    async def _cmd_help(self, message: ChatMessage, args: str) -> None:
        lines = ["Send any text to give it to the agent. Commands:"]
        for command in sorted(self.commands.values(), key=lambda c: c.name):
            usage = f" {command.usage}" if command.usage else ""
            lines.append(f"/{command.name}{usage} — {command.help}")
        await self.notify(message.chat, "\n".join(lines), kind="help")

    def status_text(self, chat: ChatRef) -> str:
        lines = []
        for lane in self.lanes.values():
            if lane.chat != chat:
                continue
            name = f"[{lane.session}] " if lane.session else ""
            if lane.runner is not None:
                runner = lane.runner
                lines.append(f"{name}running {duration(runner.elapsed)} with {lane.agent}: "
                             f"{compact(runner.turn.prompt, 60)}")
            if lane.queue:
                lines.append(f"{name}{len(lane.queue)} waiting")
            if lane.runner is None and lane.last is not None:
                lines.append(f"{name}last turn {lane.last.kind}" + footer(lane.last))
        if not lines:
            lines.append("Nothing is running.")
        lines.append(f"Agent: {self.default_agent}.")
        return "\n".join(lines)

    # --- turns --------------------------------------------------------------------

    def lane(self, chat: ChatRef, session: str) -> Lane:
        key = (chat.key, session)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(chat, session, self.default_agent)
        return lane

    async def submit(self, chat: ChatRef, prompt: str, session: str = FOREGROUND) -> Turn:
        """Accept a prompt for a chat's session: it runs now or after the turns ahead of it."""
        turn = Turn(id=uuid.uuid4().hex[:12], chat=chat, prompt=prompt,
                    agent=self.lane(chat, session).agent, session=session,
                    created_at=self.clock.time())
        await self.enqueue(turn)
        return turn

    async def enqueue(self, turn: Turn, *, announce: bool = True) -> None:
        """Accept a prepared turn (a new prompt, or a recovered one with its attempt number)."""
        lane = self.lane(turn.chat, turn.session)
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
        while lane.queue and self.accepting:
            turn = lane.queue.popleft()
            if turn.resume_id is None and lane.resume_id and turn.agent == lane.agent:
                turn = replace(turn, resume_id=lane.resume_id)
            agent = self.agents.get(turn.agent)
            if agent is None:
                agent = self.agents[self.default_agent]
                turn = replace(turn, agent=agent.name, resume_id=None)
            if not agent.supports_resume():
                turn = replace(turn, resume_id=None)
            runner = TurnRunner(turn, agent, self.relay, self.clock,
                                workdir=self.workdir, kill_grace=self.kill_grace)
            lane.runner = self.runners[turn.id] = runner
            try:
                lane.last = await runner.run()
            except Exception:
                log.exception("turn %s failed inside Cadenza", turn.id)
            finally:
                lane.runner = None
                del self.runners[turn.id]
            if runner.agent_session_id:
                lane.resume_id = runner.agent_session_id

    async def stop_lane(self, lane: Lane, reason: str) -> int:
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
        runner = self.runners.get(turn_id)
        if runner is None:
            return False
        runner.stop(kind, reason)
        return True

    async def stop_strays(self, turn_ids: list[str]) -> int:
        """Stop agent processes that earlier runs of these turns left behind (a crashed
        Cadenza cannot stop its agents): SIGTERM, SIGKILL after ``kill_grace``."""
        return await stop_marked(turn_ids, self.kill_grace, self.clock.sleep)

    async def notify(self, chat: ChatRef, text: str, kind: str = "info", **data: Any) -> None:
        await self.relay.call("on_notice", notice=Notice(chat, text, kind, data))

    async def idle(self) -> None:
        """Wait until no turn runs or waits."""
        while busy := [lane.task for lane in self.lanes.values() if lane.busy]:
            await asyncio.gather(*busy, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop taking messages and interrupt running turns; the journal resumes them later."""
        self.accepting = False
        for runner in list(self.runners.values()):
            runner.stop(events.INTERRUPTED, "Cadenza is shutting down; this turn resumes "
                        "when it starts again")
        await self.idle()


def _in(session: str) -> str:
    return f" in session {session}" if session else ""

