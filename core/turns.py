"""Running one turn: spawn the agent, turn its output into events, dispatch them, end cleanly.

Every turn produces ``started`` first and exactly one terminal event last, whatever happens:
a missing binary, garbage output, a crash of the agent, a cancel, a timeout or a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cadenza import events
from cadenza.agents import Agent, Parsed, failure_text
from cadenza.agents import launch as agent_launch
from cadenza.clock import Clock
from cadenza.events import StreamEvent, Turn
from cadenza.output import OutputCap
from cadenza.process import NUL_PROBLEM, AgentProcess, stdin_problem
from cadenza.relay import HookRelay

log = logging.getLogger("cadenza.turns")

# After the agent exits, how long its stdout may stay open (held by a leftover grandchild)
# before the group is killed so the turn can end.
STDOUT_GRACE = 2.0


class TurnRunner:
    """Runs one turn. ``stop(kind)`` ends it early as cancelled, timed_out or interrupted."""

    def __init__(
        self,
        turn: Turn,
        agent: Agent,
        relay: HookRelay,
        clock: Clock,
        *,
        workdir: Path,
        kill_grace: float,
        output: OutputCap | None = None,
        preamble: str = "",
    ) -> None:
        self.turn = turn
        self.preamble = preamble  # for the agent only, before the prompt (``prompt_preamble``)
        self.output = output
        self.agent = agent
        self.relay = relay
        self.clock = clock
        self.workdir = workdir
        self.kill_grace = kill_grace
        self.started_at = clock.monotonic()
        # when the agent last printed anything, for the timeout controller; never yet
        self.last_output_at = float("-inf")
        self.last_output = ""  # the latest thing the agent said or did, for timeout messages
        self.agent_session_id: str | None = turn.resume_id
        self.result: StreamEvent | None = None
        self._seq = 0
        # One event is handed to the plugins at a time, in sequence order. The agent's events
        # come from one task; plugins' posts wait in _posted and go out after the event being
        # dispatched, or from a task of their own when the agent is quiet. A flag, not a lock:
        # this runs for every line the agent prints.
        self._dispatching = False
        self._posted: deque[tuple[str, str, Mapping[str, Any] | None]] = deque()
        self._posts_task: asyncio.Task[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._stop_kind: str | None = None
        self._stop_reason = ""
        self._stop_data: dict[str, Any] = {}
        self._process: AgentProcess | None = None
        self._stopping: asyncio.Task[None] | None = None
        # waiting for the user to answer the agent (a permission prompt): since when, and
        # the seconds spent so in earlier waits; set while it waits, for the timeout controller
        self._waiting_since: float | None = None
        self._waited = 0.0
        self._answered = asyncio.Event()
        self._answered.set()

    @property
    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started_at

    def event(
        self, kind: str, text: str = "", data: Mapping[str, Any] | None = None
    ) -> StreamEvent:
        """The turn's next event, numbered; for plugins that add events to the stream."""
        event = StreamEvent(self.turn, self._seq, kind, text, data if data is not None else {})
        self._seq += 1
        return event

    async def emit(self, kind: str, text: str = "", data: Mapping[str, Any] | None = None) -> None:
        if self._dispatching:
            await self._idle()
        self._dispatching = True
        try:
            await self.relay.call("on_stream_event", event=self.event(kind, text, data))
            await self._flush_posts()
        finally:
            self._done_dispatching()

    def post(self, kind: str, text: str = "", data: Mapping[str, Any] | None = None) -> None:
        """Add an event to this turn's stream from outside it (a plugin's warning or
        extension): it follows, in order, the events already on their way, and is dropped
        once the terminal event has gone out, which stays the last."""
        if self.result is not None:
            return
        self._posted.append((kind, text, data))
        if not self._dispatching and self._posts_task is None:
            self._posts_task = asyncio.ensure_future(self._deliver_posts())

    async def _deliver_posts(self) -> None:
        try:
            if self._dispatching:
                return  # the event being dispatched takes them along
            self._dispatching = True
            try:
                await self._flush_posts()
            finally:
                self._done_dispatching()
        finally:
            self._posts_task = None

    async def _flush_posts(self) -> None:
        while self._posted and self.result is None:
            kind, text, data = self._posted.popleft()
            await self.relay.call("on_stream_event", event=self.event(kind, text, data))

    async def _idle(self) -> None:
        while self._dispatching:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _done_dispatching(self) -> None:
        self._dispatching = False
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def send(self, text: str) -> bool:
        """Write ``text`` to the agent's control channel (an agent launched with
        ``control=True``, e.g. answers to permission prompts); False when it has none, or the
        agent is not running or no longer reads it."""
        if self._process is None or self.result is not None:
            return False
        return await self._process.send(text)

    async def answer_approval(self, request_id: str, allow: bool,
                              updated_input: Mapping[str, Any], message: str = "") -> bool:
        """Answer the agent's permission prompt ``request_id`` (an ``approval`` event) on its
        control channel; False when the agent cannot take answers or is gone."""
        render = getattr(self.agent, "approval_answer", None)
        if render is None:
            return False
        return await self.send(render(request_id, allow, updated_input, message))

    def waiting_for_user(self, waiting: bool) -> None:
        """The agent waits for the user (True) or goes on (False). Time spent waiting counts
        toward no deadline: ``paused_seconds`` grows, and the silence meanwhile is neither
        activity nor inactivity (``last_output_at`` moves on by the wait when it ends)."""
        now = self.clock.monotonic()
        if waiting and self._waiting_since is None:
            self._waiting_since = now
            self._answered.clear()
        elif not waiting and self._waiting_since is not None:
            waited = now - self._waiting_since
            self._waited += waited
            self.last_output_at += waited  # -inf stays -inf
            self._waiting_since = None
            self._answered.set()

    @property
    def waiting(self) -> bool:
        """Whether the agent waits for the user now."""
        return self._waiting_since is not None

    @property
    def paused_seconds(self) -> float:
        """Seconds this turn has waited for the user so far, the current wait included."""
        current = self.clock.monotonic() - self._waiting_since if self.waiting else 0.0
        return self._waited + current

    async def until_not_waiting(self) -> None:
        """Return once the agent no longer waits for the user (at once when it does not)."""
        await self._answered.wait()

    def stop(
        self, kind: str = events.CANCELLED, reason: str = "", data: Mapping[str, Any] | None = None
    ) -> None:
        """End the turn early; the first stop wins. Safe to call at any time.

        ``reason`` becomes the terminal event's text and ``data`` is merged into its data.
        """
        if self._stop_kind is not None or self.result is not None:
            return
        self._stop_kind, self._stop_reason = kind, reason
        self._stop_data = dict(data or {})
        if self._process is not None:
            self._stopping = asyncio.ensure_future(self._process.terminate(self.kill_grace))

    async def run(self) -> StreamEvent:
        await self.relay.call("on_turn_start", turn=self.turn)
        await self.emit(
            events.STARTED, "", {"agent": self.agent.name, "attempt": self.turn.attempt}
        )
        try:
            kind, text, data = await self._run_agent()
        except Exception as exc:  # a bug of ours or an adapter's: the turn still ends cleanly
            log.exception("turn %s: the agent could not be run", self.turn.id)
            kind, text, data = events.FAILED, f"Cadenza could not run the agent: {exc}", {}
        if self._stop_kind is not None:
            kind, text = self._stop_kind, self._stop_reason
            data = {**data, **self._stop_data}
        if self.output is not None:
            tail, capped = self.output.finish()
            if tail:
                await self.emit(events.TEXT, tail, {"tail": True})
            data = {**data, **capped}
        data = {**data, "elapsed": self.elapsed, "agent_session_id": self.agent_session_id}
        if self._dispatching:
            await self._idle()
        self._dispatching = True
        try:
            await self._flush_posts()  # what plugins posted before the end still goes out
            self.result = StreamEvent(self.turn, self._seq, kind, text, data)
            self._seq += 1
            await self.relay.call("on_stream_event", event=self.result)
        finally:
            self._done_dispatching()
        return self.result

    async def _run_agent(self) -> tuple[str, str, Mapping[str, Any]]:
        if self._stop_kind is not None:
            return self._stop_kind, self._stop_reason, {}
        prompt = f"{self.preamble}\n\n{self.turn.prompt}" if self.preamble else self.turn.prompt
        launch = agent_launch(self.agent, prompt, self.turn.resume_id, self.turn.options)
        problem = _argv_problem(launch.argv) or stdin_problem(launch)
        if problem:
            return events.FAILED, problem, {"exit_code": None}
        try:
            self._process = process = await AgentProcess.spawn(
                launch, cwd=self.workdir, env=self.agent.env(), marker=self.turn.id
            )
        except FileNotFoundError:
            missing = (launch.argv[0] if self.workdir.is_dir()
                       else f"working directory {self.workdir}")
            return events.FAILED, (
                f"cannot start the {self.agent.name} agent: {missing} was not found. "
                "Install it, or set [agent] default / the agent's binary in plugins.toml."
            ), {"exit_code": None}
        except OSError as exc:
            return events.FAILED, f"cannot start the {self.agent.name} agent: {exc}", {}
        if self._stop_kind is not None:  # stopped while spawning
            self._stopping = asyncio.ensure_future(process.terminate(self.kill_grace))
        try:
            return await self._follow(process)
        finally:
            if self._stopping is not None:
                await self._stopping
            await process.reap()

    async def _follow(self, process: AgentProcess) -> tuple[str, str, Mapping[str, Any]]:
        parser = self.agent.parser()
        reader = asyncio.ensure_future(self._read(process, parser))
        try:
            code = await process.wait()
            try:
                await asyncio.wait_for(asyncio.shield(reader), STDOUT_GRACE)
            except TimeoutError:
                await process.reap()  # a leftover grandchild holds stdout open
                await reader
        except asyncio.CancelledError:
            reader.cancel()
            await process.terminate(self.kill_grace)
            raise
        outcome = parser.outcome(code)
        text = outcome.text
        if outcome.kind == events.FAILED and not outcome.data.get("reported"):
            text = failure_text(text, process.stderr_text())
        return outcome.kind, text, outcome.data

    async def _read(self, process: AgentProcess, parser: Any) -> None:
        feed, clock, output = parser.feed, self.clock, self.output
        async for line in process.lines():
            self.last_output_at = clock.monotonic()
            try:
                parsed = feed(line)
            except Exception:  # a third-party parser's bug must not end the turn
                log.exception("agent %s: parser failed on a line", self.agent.name)
                parsed = [Parsed(events.NOTICE, "unreadable output line", {"unparsed": True})]
            for item in parsed:
                kind, text, data = item.kind, item.text, item.data
                if kind == events.SESSION and data.get("session_id"):
                    self.agent_session_id = str(data["session_id"])
                elif text and kind != events.THINKING:
                    self.last_output = text
                if kind == events.TEXT and output is not None:
                    was_capped = output.capped
                    text = output.take(text)
                    if text:
                        await self.emit(kind, text, data)
                    if output.capped and not was_capped:
                        await self.emit(events.NOTICE, _capped_text(output),
                                        {"output_capped": True})
                    continue
                await self.emit(kind, text, data)
                if getattr(item, "end_of_input", False):
                    await process.close_input()


def _capped_text(output: OutputCap) -> str:
    head, whole = output.head_limit / 1000, (output.head_limit + output.tail_limit) / 1000
    return (f"The answer passed {head:,.0f} KB: the rest is shown when the turn ends (if it "
            f"is longer than {whole:,.0f} KB, its end, with the whole answer as a file).")


MAX_ARG = 128 * 1024  # Linux's limit on one command-line argument (MAX_ARG_STRLEN)


def _argv_problem(argv: list[str]) -> str | None:
    """Why this command line cannot be started, in the user's terms; None when it can."""
    for part in argv:
        if "\0" in part:
            return NUL_PROBLEM
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG:
            return (f"The prompt is too long to hand to the agent on its command line "
                    f"({size:,} bytes; the limit is {MAX_ARG:,}). Put the text in a file in the "
                    "working directory and ask the agent to read it.")
    return None
