"""The typed events that flow between the core, plugins and frontends.

Every event is a frozen, slotted dataclass: plugins and frontends depend on these types
only, never on each other. ``data`` mappings are read-only by convention.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Stream event kinds. Kinds are plain strings so plugins can add their own
# (the timeout controller emits ``timeout_warn_60``, ``timeout_extended``, ...).
STARTED = "started"  # the turn was accepted and its agent is about to start
SESSION = "session"  # the agent announced its session id (data: session_id)
TEXT = "text"  # a chunk of answer text; the concatenation of all chunks is the answer
THINKING = "thinking"
TOOL_USE = "tool_use"  # text: compact one-line summary; data: name, input, id
TOOL_RESULT = "tool_result"  # text: output excerpt; data: is_error, id, name
NOTICE = "notice"  # agent-side status worth showing (api retry, permission denial)
ERROR = "error"  # agent-side error message (the turn may still go on)
USAGE = "usage"  # token usage / cost report (data)
# the agent asks permission for a tool and waits for the answer (data: request_id, tool,
# input, description, suggestions, blocked_path); the approvals plugin answers it
APPROVAL = "approval"

# Terminal kinds: exactly one of them ends every turn, and nothing follows it.
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
INTERRUPTED = "interrupted"  # shutdown stopped it; the journal resumes it at the next start
TERMINAL_KINDS = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT, INTERRUPTED})

FOREGROUND = ""  # the session name of a chat's foreground conversation

@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where a conversation happens: a frontend, a chat in it, optionally a thread/topic."""

    frontend: str
    chat_id: str
    thread_id: str | None = None

    @property
    def key(self) -> str:
        """A stable string form, used as a database key."""
        tail = f"/{self.thread_id}" if self.thread_id else ""
        return f"{self.frontend}:{self.chat_id}{tail}"

    @classmethod
    def from_key(cls, key: str) -> ChatRef:
        frontend, _, rest = key.partition(":")
        chat_id, _, thread_id = rest.partition("/")
        return cls(frontend, chat_id, thread_id or None)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a person sent with a message, not downloaded yet: only the ``on_attachments``
    plugin decides whether it is fetched, and where."""

    name: str  # as the sender's client named it: untrusted, never a path to use as is
    size: int | None  # bytes, when the platform says before the download (checked first)
    mime: str = ""  # the platform's idea of its type, when it has one
    # writes the file at the given path (its folder exists); raises on failure
    fetch: Callable[[Path], Awaitable[None]] | None = field(default=None, compare=False,
                                                            repr=False)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One inbound message from a person, already stripped of frontend specifics."""

    chat: ChatRef
    user_id: str
    text: str  # a file's caption, for a message with attachments
    user_name: str = ""
    message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()  # files sent with it (an album: several)


@dataclass(frozen=True, slots=True)
class Turn:
    """One prompt sent to one agent: the unit that is run, journalled and recovered."""

    id: str
    chat: ChatRef
    prompt: str
    agent: str
    session: str = FOREGROUND
    attempt: int = 1
    resume_id: str | None = None  # the agent-side session id to continue, if any
    created_at: float = 0.0  # wall-clock seconds since the epoch
    user_id: str = ""  # who sent the prompt: re-checked before a queued or resumed turn runs
    # per-turn agent arguments, e.g. {"allowed_tools": ["Bash(git status)"], "sandbox":
    # "workspace-write"}: what each agent makes of them is its ``launch``'s business
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """Something a turn produced, in order: ``seq`` counts from 0 within the turn."""

    turn: Turn
    seq: int
    kind: str
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    @property
    def new_agent_session(self) -> str | None:
        """For a ``session`` event: the agent's session id when the turn did not already
        resume that one (a new conversation), so stores write it once."""
        if self.kind != SESSION:
            return None
        session_id = self.data.get("session_id")
        return str(session_id) if session_id and session_id != self.turn.resume_id else None

    @property
    def cost_usd(self) -> float | None:
        """What the turn cost, when the agent said (terminal and usage events)."""
        cost = self.data.get("cost_usd")
        return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """The agent asks to use a tool its permissions do not already allow (``decide_approval``):
    the answer is ``"allow"`` (the tool runs with ``input``) or ``"deny"`` (it does not, and
    the agent is told why)."""

    turn: Turn
    key: str  # short id the chat answers with: /approve KEY, /deny KEY
    tool: str  # e.g. "Bash", "Edit", "Write", "Read"
    input: Mapping[str, Any]  # the tool's arguments, e.g. {"command": "touch /tmp/x"}
    description: str = ""  # the agent's own words for it, e.g. "Run touch /tmp/x"
    # what "allow for this conversation" remembers (the agent's suggestion), e.g.
    # ("Bash(touch /tmp/x)",); empty when the agent suggested nothing
    rules: tuple[str, ...] = ()
    blocked_path: str | None = None  # the path outside the working directory, if that is why


@dataclass(frozen=True, slots=True)
class TimeoutWarning:
    """A turn is approaching its deadline."""

    turn: Turn
    seconds_left: float
    stage: int  # the configured stage that fired, in seconds before the deadline
    extensions_used: int
    max_extensions: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """How this run of Cadenza started, relative to the previous one."""

    kind: str  # started | restarted | reboot | crashed
    boot_id: str
    previous_boot_id: str | None = None
    downtime: float | None = None  # seconds between the previous run's end and this start
    interrupted: int = 0  # interrupted turns found
    resuming: int = 0  # of which will be resumed
    notes: tuple[str, ...] = ()  # anything else the user should know (e.g. a reset database)
    recent_chats: tuple[ChatRef, ...] = ()  # chats with turns in the last day, to announce to


@dataclass(frozen=True, slots=True)
class Recovery:
    """An interrupted turn found at startup: resumed (``turn`` is the new attempt) or abandoned."""

    turn: Turn
    attempt: int
    reason: str  # crashed | restarted | reboot
    action: str  # resume | abandon
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """A message from the core or a plugin to one chat, outside any turn's stream."""

    chat: ChatRef
    text: str
    kind: str = "info"  # info | error | queued | help | status | refusal | files
    data: Mapping[str, Any] = field(default_factory=dict)
    # files to send to the chat with ``text`` as their caption (absolute paths; images shown
    # as pictures where the platform can)
    files: tuple[Path, ...] = ()
