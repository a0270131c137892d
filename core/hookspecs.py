"""Every hook Cadenza calls, grouped by phase. This module is the reference for plugin authors.

Implementations may be plain functions or ``async def``: the core awaits what they return.
Each call is isolated: an implementation that raises or exceeds the per-call time limit
(``[core] hook_timeout``) is logged with its plugin's name and skipped, the others still run,
and a plugin that keeps failing is switched off for the rest of the run. Sync implementations
run on the event loop and must be quick; put slow work in ``async def``.

An implementation may accept only some of a hook's arguments, by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cadenza.bot import Bot
    from cadenza.config import Config
    from cadenza.events import (
        ApprovalRequest,
        ChatMessage,
        ChatRef,
        Lifecycle,
        Notice,
        Recovery,
        StreamEvent,
        TimeoutWarning,
        Turn,
    )

PROJECT = "cadenza"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --- Registration: called once at startup, before any frontend connects ---------------


@hookspec
def register_agents(register: Callable[[Any], None]) -> None:
    """Add agent adapters: call ``register(agent)`` with objects implementing
    ``cadenza.api.Agent``.

    The ``[agent] default`` setting selects one of them by its ``name``.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Add chat commands: ``register(name, handler, help="...", usage="...")``.

    ``handler(bot, message, args)`` (sync or async) runs when a chat message starts with
    ``/name``; ``args`` is the rest of the message. The core's own commands are
    ``/stop``, ``/new``, ``/status`` and ``/help``.
    """


# --- Run lifecycle --------------------------------------------------------------------


@hookspec
def on_start(bot: Bot) -> None:
    """The bot is ready to take messages: frontends connect and start their own tasks here.

    ``bot`` is the ``Bot`` protocol of ``cadenza.api`` (``handle``, ``submit``, ``notify``,
    ``running``, ...).
    Return promptly; long-running work belongs in tasks the plugin owns.
    """


@hookspec
def on_ready(bot: Bot) -> None:
    """Every ``on_start`` has returned: the recovery journal announces the lifecycle here
    and resumes interrupted turns, so frontends are connected when those notices go out."""


@hookspec
def on_shutdown() -> None:
    """Cadenza is stopping (SIGTERM, SIGINT or end of console input): running agents were
    already stopped. Frontends flush and disconnect; the journal records the clean shutdown."""


@hookspec
def on_startup_lifecycle(lifecycle: Lifecycle) -> None:
    """How this run started: ``started``, ``restarted``, ``reboot`` or ``crashed``.

    Called once, by the recovery journal. Frontends announce it to their lifecycle chats.
    """


@hookspec
def on_recover(recovery: Recovery) -> None:
    """An interrupted turn was found at startup: ``recovery.action`` is ``resume`` (the core
    starts ``recovery.turn`` right after this hook) or ``abandon`` (too many attempts or too old;
    the chat must be told, with the full prompt)."""


# --- Inbound messages -----------------------------------------------------------------


@hookspec(firstresult=True)
def on_inbound_message(message: ChatMessage) -> str | None:
    """Veto an inbound message before it reaches any command or agent.

    Return a reason (str) to refuse it, or None to let it through. Stops at the first
    non-None result. Frontends enforce their allowlists here (and at their own ingress).
    Fails closed: an implementation that raises or times out refuses the message.
    """


@hookspec(firstresult=True)
def on_attachments(message: ChatMessage) -> bool | None:
    """Take the files of an allowed message (``message.attachments``; its text is their
    caption): check them, fetch them (``Attachment.fetch``) where the agent can read them and
    submit the turn that names them, or tell the chat why not. Return True once handled.

    Stops at the first True. Called after ``on_inbound_message`` let the message through, so
    a stranger's files are never fetched. When no plugin takes them (the files plugin is
    off) or the one that does fails, the chat is told the files were not taken.
    """


@hookspec(firstresult=True)
def take_prompt(message: ChatMessage) -> bool | None:
    """A person's prompt (an allowed message that is not a command) is about to be run:
    return True to take it instead, because it belongs to something the plugin holds, such
    as files sent without a caption that wait for what to do with them. Stops at the first
    True; when none, or the one that answers fails, the prompt runs as usual."""


@hookspec(firstresult=True)
def authorize(chat: ChatRef, user_id: str) -> bool | None:
    """May ``user_id`` run turns in ``chat`` now? The frontend owning ``chat`` answers True or
    False; every other plugin returns None.

    Asked before a queued or resumed turn starts, so a user removed from an allowlist (and a
    SIGHUP or restart) stops their waiting and interrupted work. Fails closed: anything but
    True — no answer, an exception, a time-out, the frontend switched off — refuses.
    """


@hookspec
def on_config_reload(config: Config) -> None:
    """``plugins.toml`` was read again (SIGHUP): take the settings that can change while
    running, such as allowlists, from ``config.settings(name)``. A bad new value is logged and
    the old one kept; the plugin switches themselves need a restart."""


# --- Turns ----------------------------------------------------------------------------


@hookspec
def on_turn_accepted(turn: Turn) -> None:
    """A turn was accepted for a chat; it starts now or waits behind the session's running turn.

    Called before the user is told it is queued; the journal persists it here so a turn that
    is still waiting when Cadenza stops is resumed too.
    """


@hookspec
def prompt_preamble(turn: Turn) -> str | None:
    """A short note for the agent, put before the prompt of a turn that starts a new
    conversation (one the agent does not continue): what it should know once, e.g. where to
    leave files for the user. The agent sees it; the chat and the journal do not."""


@hookspec
def turn_options(turn: Turn) -> Mapping[str, Any] | None:
    """Per-turn agent options for a turn about to start, merged into ``turn.options`` (what
    each agent makes of them is its ``launch``'s business): e.g. ``{"approvals": "stdio",
    "allowed_tools": ["Bash(git status)"]}`` from the approvals plugin. Lists under the same
    key from several plugins are joined; other values: the later plugin's wins. Asked right
    before the turn starts, also for a queued or resumed turn."""


@hookspec(firstresult=True)
def decide_approval(request: ApprovalRequest) -> str | None:
    """The agent asks to use a tool (``request.tool`` with ``request.input``): answer
    ``"allow"`` or ``"deny"`` for the user, or None to let the chat decide (the approvals
    plugin asks it, unless a rule the user allowed for the conversation covers it).

    Stops at the first answer that is not None. Fails closed: an implementation that raises
    or times out stops the round, and so does an answer other than allow or deny: the chat
    is asked. An answer is posted to the turn's stream as a notice (data ``approval``: the
    request's key, ``allow``: the answer).
    """


@hookspec
def on_turn_start(turn: Turn) -> None:
    """The turn's agent subprocess is about to start. Awaited before the spawn, so the journal
    has written the turn ``running`` before any work can be lost."""


@hookspec
def on_stream_event(event: StreamEvent) -> None:
    """Everything a turn produces, in order: started, session, text, tool use, ..., and exactly
    one terminal event (``completed``, ``failed``, ``cancelled``, ``timed_out`` or
    ``interrupted``) last. Called for every text chunk: keep implementations cheap."""


@hookspec
def on_timeout_warning(warning: TimeoutWarning) -> None:
    """A turn's deadline is near (one call per configured stage). Frontends show it with a way
    to act: ``/extend`` or ``/stop``."""


@hookspec
def on_notice(notice: Notice) -> None:
    """A message for one chat outside a turn's stream (command replies, queue notices,
    refusals). The frontend owning ``notice.chat`` renders it."""


# --- Command line --------------------------------------------------------------------


@hookspec
def report_status() -> dict[str, Any] | None:
    """Contribute to ``cadenza status``: return ``{section: rows}`` (JSON-serialisable) read
    from the plugin's own tables. Runs in the CLI process, possibly beside a running bot."""


@hookspec
def doctor_checks() -> list[tuple[bool, str]] | None:
    """Contribute to ``cadenza doctor``: return ``(ok, message)`` pairs, e.g. whether a
    frontend's token is set. Any ``False`` makes the command exit non-zero."""


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in list(globals().items()) if hasattr(value, f"{PROJECT}_spec")
)
