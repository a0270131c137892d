"""What plugins see of the bot and of a running turn: small protocols, so the core's classes
can change behind them. ``cadenza.api`` exports these, never the classes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cadenza.events import ChatMessage, ChatRef, Turn


class RunningTurn(Protocol):
    """A turn whose agent is running."""

    turn: Turn
    last_output_at: float  # clock.monotonic() of the agent's last output; -inf before any
    last_output: str  # the latest thing the agent said or did

    @property
    def elapsed(self) -> float:
        """Seconds since the turn started."""

    def stop(self, kind: str = ..., reason: str = "",
             data: Mapping[str, Any] | None = None) -> None:
        """End the turn early as ``cancelled``, ``timed_out`` or ``interrupted``; the first
        stop wins, ``reason`` becomes the terminal event's text."""

    def post(self, kind: str, text: str = "", data: Mapping[str, Any] | None = None) -> None:
        """Add an event of the plugin's own to the turn's stream, in order; dropped once the
        turn has ended."""

    async def send(self, text: str) -> bool:
        """Write to the agent's control channel (agents launched with ``control=True``);
        False when there is none or it is closed."""

    async def answer_approval(self, request_id: str, allow: bool,
                              updated_input: Mapping[str, Any], message: str = "") -> bool:
        """Answer the agent's permission prompt (an ``approval`` event's ``request_id``):
        allow the tool with ``updated_input``, or deny it with ``message`` for the agent;
        False when the agent cannot take the answer (it has no control channel, or ended)."""

    def waiting_for_user(self, waiting: bool) -> None:
        """Say the agent waits for the user (True) or goes on (False): while it waits, the
        timeout controller pauses (no deadline runs, no warning fires, silence means
        nothing)."""

    @property
    def waiting(self) -> bool:
        """Whether the agent waits for the user now."""

    @property
    def paused_seconds(self) -> float:
        """Seconds the turn has waited for the user so far, the current wait included."""

    async def until_not_waiting(self) -> None:
        """Return once the agent no longer waits for the user."""


class Bot(Protocol):
    """The bot as plugins drive it (``on_start(bot)``, command handlers)."""

    default_agent: str

    async def handle(self, message: ChatMessage) -> None:
        """Everything a frontend receives goes through here (veto, commands, prompts)."""

    async def submit(self, chat: ChatRef, prompt: str, session: str = "", *,
                     user_id: str = "", options: Mapping[str, Any] | None = None,
                     turn_id: str | None = None) -> Turn | None:
        """Accept a prompt for a chat's conversation; None when the chat's queue is full.
        ``options`` are per-turn agent arguments (``Turn.options``); ``turn_id`` names the
        turn when the caller prepared something for it (a folder of its files)."""

    async def enqueue(self, turn: Turn, *, announce: bool = True) -> None:
        """Accept a prepared turn (a recovered one keeps its id and attempt)."""

    async def notify(self, chat: ChatRef, text: str, kind: str = "info", *,
                     files: tuple[Path, ...] = (), **data: Any) -> None:
        """Say something to a chat outside a turn's stream (``on_notice``), with ``files``
        to send there (absolute paths)."""

    def running(self, turn_id: str) -> RunningTurn | None:
        """A running turn by id."""

    def running_in(self, chat: ChatRef, session: str = "") -> RunningTurn | None:
        """The turn running in a chat's conversation (``""``: the foreground one)."""

    def stop_turn(self, turn_id: str, kind: str = ..., reason: str = "") -> bool:
        """Stop a running turn; False when it is not running."""

    def continue_conversation(self, chat: ChatRef, session: str,
                              agent_session_id: str | None, agent: str = "") -> None:
        """What a conversation's next turn continues (None: a fresh conversation)."""

    async def end_conversation(self, chat: ChatRef, session: str, reason: str) -> int:
        """Stop a conversation's running and waiting turns; the number of waiting ones."""

    def waiting(self, chat: ChatRef) -> int:
        """Prompts waiting in a chat's conversations."""

    def status_text(self, chat: ChatRef) -> str:
        """What runs and waits in a chat, as ``/status`` says it."""

    def command_list(self) -> list[tuple[str, str, str]]:
        """(name, help, usage) of every chat command."""

    def request_stop(self, exit_code: int = 0) -> None:
        """Stop Cadenza, as at the end of the console's input; ``cadenza run`` exits with
        the highest ``exit_code`` asked for (2: the configuration cannot work)."""

    async def stop_strays(self, turn_ids: list[str]) -> int:
        """Stop agent processes an earlier, crashed run left behind for these turns."""

    async def idle(self) -> None:
        """Wait until no turn runs or waits."""
