"""Agent adapters: how to start an agent CLI for a prompt and how to read its output.

An adapter builds the command line (resuming an agent-side session when it can) and makes
one ``Parser`` per turn that turns output lines into stream events. Built in: ``claude``,
``codex`` and ``command``; plugins add more through the ``register_agents`` hook.

The prompt goes on the agent's stdin (which is then closed) when the agent can read it there
(``stdin_prompt``): then a prompt that starts with ``-`` is still a prompt, and its size is
not bound by the kernel's limit on one argument.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast

from cadenza import events
from cadenza.agents.summary import compact
from cadenza.config import Config, Settings
from cadenza.process import Launch

NO_DATA: Mapping[str, Any] = {}
UNPARSED: Mapping[str, Any] = {"unparsed": True}


@dataclass(slots=True)
class Parsed:
    """What a parser makes of the agent's output; the runner adds the turn and the sequence
    number to make it a StreamEvent. Fields are read by name, so more can be added later.
    (Not frozen: one is made per output line, and a frozen dataclass is slower to build.)"""

    kind: str
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: NO_DATA)
    # the agent takes no more input: the runner closes its control channel (Claude reads
    # its stdin until EOF after its ``result`` line)
    end_of_input: bool = False


class Parser(Protocol):
    def feed(self, line: str) -> list[Parsed]:
        """Events for one line of the agent's stdout (without its newline). Never raises."""

    def outcome(self, exit_code: int) -> Parsed:
        """The turn's terminal event once the agent exited: ``completed`` or ``failed``.

        A failure the agent described itself carries ``"reported": True`` in its data; other
        failures get the tail of the agent's stderr appended.
        """


class Agent(Protocol):
    name: str
    binary: str  # the program, looked up on PATH; "" when the argv template names it
    # True: ``argv`` leaves the prompt out, and it is written to the agent's stdin, which is
    # then closed; False (the default when an agent does not say): stdin is /dev/null.
    stdin_prompt: bool
    # False: what the agent starts in the background may outlive its turn (default True).
    contain: bool

    def argv(self, prompt: str, resume_id: str | None) -> list[str]:
        """The command line for one turn: with the prompt, unless ``stdin_prompt``."""

    def env(self) -> Mapping[str, str]:
        """Extra environment variables for the agent process."""

    def parser(self) -> Parser:
        """A fresh parser for one turn's output."""

    def supports_resume(self) -> bool:
        """Whether ``argv`` continues an agent-side session when given ``resume_id``."""


def launch(
    agent: Agent, prompt: str, resume_id: str | None, options: Mapping[str, Any] = NO_DATA
) -> Launch:
    """How ``agent`` starts for one turn.

    An agent with a ``launch(prompt, resume_id, options)`` method decides everything itself:
    the per-turn ``options`` (``Turn.options``) it understands, and whether it talks both
    ways (``Launch(..., control=True)``). Otherwise: its ``argv``, the prompt on stdin when it
    says ``stdin_prompt``, contained unless it says ``contain = False``; options are ignored.
    """
    own = getattr(agent, "launch", None)
    if callable(own):
        return cast(Launch, own(prompt, resume_id, options))
    stdin = prompt if getattr(agent, "stdin_prompt", False) else None
    return Launch(agent.argv(prompt, resume_id), stdin, bool(getattr(agent, "contain", True)))


@dataclass
class CliAgent:
    """Shared settings of the agents configured under ``[agent.NAME]``."""

    name: str
    binary: str
    args: list[str] = field(default_factory=list)  # extra arguments: model, permissions, ...
    extra_env: dict[str, str] = field(default_factory=dict)
    contain: bool = True
    stdin_prompt: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: Settings, name: str, binary: str) -> CliAgent:
        settings.reject_unknown(["binary", "args", "env", "contain"])
        return cls(
            name=name,
            binary=settings.string("binary", binary),
            args=settings.strings("args"),
            extra_env=settings.mapping("env"),
            contain=settings.get("contain", True, bool),
        )

    def env(self) -> Mapping[str, str]:
        return self.extra_env

    def supports_resume(self) -> bool:
        return True

    def argv(
        self, prompt: str, resume_id: str | None, extra: Sequence[str] = ()
    ) -> list[str]:
        """The command line; ``extra`` are the per-turn arguments from ``option_args``."""
        raise NotImplementedError

    def option_args(self, options: Mapping[str, Any]) -> list[str]:
        """Command-line arguments for the per-turn options this agent understands."""
        return []

    def launch(
        self, prompt: str, resume_id: str | None, options: Mapping[str, Any] = NO_DATA
    ) -> Launch:
        extra = self.option_args(options)
        # a subclass written before per-turn options overrides argv(prompt, resume_id)
        argv = self.argv(prompt, resume_id, extra) if extra else self.argv(prompt, resume_id)
        return Launch(argv, prompt if self.stdin_prompt else None, self.contain)


class JsonLinesParser:
    """Base of the parsers for agents that print one JSON object per line: a line that is not
    a JSON object becomes a notice, and a line of an unexpected shape never raises."""

    def feed(self, line: str) -> list[Parsed]:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            if not line.strip():
                return []
            return [Parsed(events.NOTICE, compact(line), UNPARSED)]
        try:
            return self.dispatch(message)
        except (AttributeError, TypeError, KeyError, ValueError):
            return [Parsed(events.NOTICE, f"unreadable {message.get('type')} line", UNPARSED)]

    def dispatch(self, message: dict[str, Any]) -> list[Parsed]:
        """Events for one decoded line."""
        raise NotImplementedError


def failure_text(message: str, stderr_tail: str) -> str:
    """A failed turn's message: what the agent said, and the end of its stderr."""
    tail = stderr_tail.strip()
    if tail and tail not in message:
        return f"{message}\n{tail}" if message else tail
    return message


def exit_outcome(exit_code: int, error: str = "") -> Parsed:
    """The outcome of an agent that reported no result of its own: its exit code decides."""
    if exit_code == 0 and not error:
        return Parsed(events.COMPLETED, "", {"exit_code": 0})
    return Parsed(events.FAILED, error or f"the agent exited with code {exit_code}",
                  {"exit_code": exit_code})


AUTO_ORDER = ("claude", "codex")


def choose_default(config: Config, agents: Mapping[str, Agent]) -> tuple[str, str]:
    """The agent for new turns and a sentence saying why it was picked."""
    settings = config.settings("agent")
    wanted = settings.string("default", "auto")
    if wanted != "auto":
        if wanted not in agents:
            raise settings.error("default", f"unknown agent {wanted!r}; known: "
                                 + ", ".join(["auto", *agents]))
        return wanted, f"agent: {wanted} (set by [agent] default)"
    for name in AUTO_ORDER:
        agent = agents.get(name)
        if agent is not None and (found := shutil.which(agent.binary)):
            return name, f"agent: {name} (found {found})"
    return "command", (
        "agent: command (neither claude nor codex is on PATH; each prompt runs through "
        "[agent] command — install an agent CLI or set [agent] default)"
    )
