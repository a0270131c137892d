"""The ``Transport`` protocol: everything the live-message engine needs from a chat platform.

The engine (``cadenza.frontends.live``) decides *what* each chat shows and *when* a call may
go; a transport only makes the calls. A frontend implements one class with the attributes and
methods below (structural typing: no base class to inherit) and hands an instance to
``Engine``. Telegram's is ``cadenza.frontends.telegram.egress.Api``.

Words
-----
room
    Where messages go and what the platform rate-limits: a Telegram chat (its forum topics
    included), a Discord channel (a Discord thread is a channel, so a room of its own). An
    ``int``. The engine keeps one outbox per room.
thread
    A place inside a room that is not a room of its own: a Telegram forum topic. ``int`` or
    ``None`` (the room itself); a platform without such places always uses ``None``.
message id
    What ``send`` returns and ``edit`` takes: an ``int``, unique within its room.

What a transport has
--------------------
``name: str``
    The frontend's name, as in ``ChatRef.frontend`` and ``plugins.toml`` (``"telegram"``).
    It starts the engine's log lines and names its tables in the store
    (``{name}_buttons``, ``{name}_live``).
``limits: Limits``
    The platform's numbers: longest message and the unit it is counted in, how fast one room,
    a group room and the whole bot may send or edit, how long "typing" lasts.
``markup: Markup``
    How text is written in the platform's formatting (see ``Markup``).

What a transport does
---------------------
Every coroutine below either succeeds or raises one of this module's ``SendError``
subclasses; nothing else may escape (an unexpected exception is logged as a bug and retried
with backoff). No method sleeps or retries: the engine decides when to try again, and does so
with the newest content. Each call the engine makes has waited for its pacing slot first.

``locate(chat: ChatRef) -> tuple[int, int | None]``
    Addressing: the room and thread of one of this frontend's chats. Raises ``ValueError``
    (with a message naming the chat) for a chat id that is not the platform's.
``is_group(room: int) -> bool``
    Whether ``Limits.group`` applies to the room on top of ``Limits.chat``.
``send(room, thread, out, plain=False, key="") -> int``
    Post ``out`` as a new message (``out.markup`` in the platform's formatting, or
    ``out.plain`` unformatted when ``plain``), with ``out.buttons`` rendered as the
    platform's buttons (each is ``(label, data)``; a press must reach the frontend's ingress
    with ``data``), link previews off, mentions never pinging, except the person named by
    ``out.notify`` where the platform needs that for them to notice. Returns its message id.
    ``key`` (at most 25 characters) names the message: a send retried after its answer was
    lost carries the same ``key`` and the same ``out``, so a platform with idempotency keys
    uses it (Discord's ``nonce``) to answer with the first message instead of a copy.
``send_document(room, thread, out, plain=False, key="") -> int``
    Upload the file ``out.document == (path, file name)`` with ``out`` as its caption.
    Raises ``Rejected`` for a file the platform will not take (too large, unreadable) before
    any upload when it can tell.
``edit(room, message_id, out, plain=False) -> None``
    Make the message show ``out``, buttons included (no buttons: remove them). "Not
    modified" is a success: return, never raise ``NotModified``.
``delete(room, message_id) -> None``
    Remove a message; one already gone is a success. (The engine does not call it today;
    frontends may, and the protocol keeps it so an engine feature can.)
``clear_buttons(room, message_id) -> None``
    Remove a message's buttons, keeping its text ("not modified" is a success). Used for
    buttons a crash left behind.
``typing(room, thread) -> None``
    Show "typing…" (or the platform's equivalent) for ``Limits.typing_lasts`` seconds. Best
    effort: any failure is only logged.

Optional: ``probe(room, message_id, out, plain) -> bool``
    For a platform without idempotency keys whose message ids count up one by one in each
    room (Telegram). Whether ``message_id`` is the bot's own message showing exactly ``out``
    (as ``send`` or ``send_document`` would have posted it), *changing nothing* (Telegram:
    the same edit, answered "message is not modified" only in that case); ``False`` for
    anyone else's message, a missing one, or another error that proves nothing. Raises
    ``Retry`` when it got no answer. With it, the engine finds the messages of sends whose
    answers were lost (see ``outbox``).

Which exception means what
--------------------------
``Retry(reason, after=None, flood=False)``
    Try again later. ``flood=True`` with ``after`` is the platform's own "too many requests"
    (Telegram's 429 ``retry_after``, Discord's 429 ``retry_after``): the room waits that long.
    Otherwise (network error, timeout, 5xx, an unreadable answer) the engine backs off.
``NotModified``
    The edit would change nothing. Raise it only from helpers; ``edit`` swallows it.
``Gone``
    The message to edit is no longer there (deleted, too old to edit): the engine sends the
    content as a new message instead.
``BadFormat``
    The platform could not parse ``out.markup``: the engine sends ``out.plain`` with
    ``plain=True`` from then on for that view.
``NoThread``
    The thread is gone (a deleted forum topic): the engine sends to the room itself.
``Rejected``
    Refused for good (a 400 retrying cannot fix, a file too large): that message is given
    up (a document's view says so in text instead).
``ChatUnavailable``
    The bot can no longer write in the room (blocked, kicked, no rights, room deleted):
    everything queued for the room is dropped.
``Migrated(reason, room)``
    The room has a new id (a Telegram group that became a supergroup): the outbox moves
    there and tries again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cadenza.frontends.live.split import UTF16, Units

if TYPE_CHECKING:
    from cadenza.api import ChatRef


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` calls at once, then one every ``interval`` seconds."""

    interval: float
    burst: int = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """A platform's numbers, as the engine uses them."""

    message_length: int  # the longest message's visible text, in ``units``
    chat: Rate  # sends and edits in one room (Telegram: about 1 a second)
    overall: Rate  # all rooms together (Telegram: 30 a second)
    group: Rate | None = None  # in addition, in a room ``is_group`` (Telegram: 20 a minute)
    units: Units = UTF16  # how ``message_length`` counts
    typing_lasts: float = 5.0  # seconds one typing call shows
    # whether a typing call counts toward ``overall`` (Discord: every request does; Telegram:
    # its limits are about messages)
    typing_counts: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as it should look: in the platform's markup, its plain-text fallback,
    buttons."""

    markup: str
    plain: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, data a press hands back)
    # a turn's live message: (turn id, markup, plain) of its text without the status line,
    # kept on record so that a crash cannot leave it saying "working…" (see ``ledger``)
    live: tuple[str, str, str] | None = field(default=None, compare=False)
    # a document to upload (path, file name); ``markup`` / ``plain`` are then its caption
    document: tuple[str, str] | None = None
    # the platform's id of a person this message is for: where a new message alone does not
    # reach them (a Discord server), the transport calls them by name, pinging nobody else
    notify: str = ""

    @property
    def html(self) -> str:
        """``markup`` by the name Telegram's code and tests know it."""
        return self.markup


class Markup(Protocol):
    """How a platform writes formatted text. Every method returns text in the platform's
    markup; whatever the agent wrote must come out valid (unbalanced markers stay literal)."""

    def escape(self, text: str) -> str:
        """Plain text, shown exactly as written."""

    def render(self, source: str, code: str | None) -> tuple[str, str | None]:
        """The agent's Markdown ``source``. ``code`` is the language ("" for none) of a
        fenced code block already open where ``source`` starts, None outside code; returns
        the markup and the same for where ``source`` ends, so that a code block cut across
        two messages shows as code in both."""

    def bold(self, markup: str) -> str:
        """``markup`` (already escaped or rendered) in bold."""

    def italic(self, markup: str) -> str:
        """``markup`` (already escaped or rendered) in italics."""


class Transport(Protocol):
    """See the module docstring for what each member must do and raise. The engine passes
    every argument by position, so an implementation may name them as it likes."""

    name: str
    limits: Limits
    markup: Markup

    def locate(self, chat: ChatRef, /) -> tuple[int, int | None]: ...

    def is_group(self, room: int, /) -> bool: ...

    async def send(self, room: int, thread: int | None, out: Outgoing,
                   plain: bool = False, key: str = "", /) -> int: ...

    async def send_document(self, room: int, thread: int | None, out: Outgoing,
                            plain: bool = False, key: str = "", /) -> int: ...

    async def edit(self, room: int, message_id: int, out: Outgoing,
                   plain: bool = False, /) -> None: ...

    async def delete(self, room: int, message_id: int, /) -> None: ...

    async def clear_buttons(self, room: int, message_id: int, /) -> None: ...

    async def typing(self, room: int, thread: int | None, /) -> None: ...


# --- what a failed call means ---------------------------------------------------------


class SendError(Exception):
    """Base of the outcomes below; ``str()`` must never contain a secret (a token)."""


class Retry(SendError):
    def __init__(self, reason: str, after: float | None = None, *, flood: bool = False) -> None:
        super().__init__(reason)
        self.after = after  # None: use the caller's backoff
        self.flood = flood  # the platform's "too many requests"


class Gone(SendError):
    """The message to edit no longer exists (deleted, too old)."""


class BadFormat(SendError):
    """The platform could not parse the markup."""


class NoThread(SendError):
    """The thread (a forum topic) was deleted or closed."""


class Rejected(SendError):
    """Refused, and retrying cannot fix it."""


class ChatUnavailable(SendError):
    """The bot was blocked, kicked, has no rights, or the room does not exist."""


class NotModified(SendError):
    """The edit would not change anything: as good as done."""


class Migrated(SendError):
    def __init__(self, reason: str, room: int) -> None:
        super().__init__(reason)
        self.room = room


def upload_size(path: str, limit: int | None, taker: str) -> int:
    """The size of a file about to be sent as a document; ``Rejected`` when it cannot be read
    or is larger than ``limit`` bytes (None: no limit known). ``taker`` ends the message:
    "… more than the 50 MB Telegram lets a bot upload"."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise Rejected(f"cannot read the file: {exc.strerror or exc}") from None
    if limit is not None and size > limit:
        mb = 1024 * 1024
        raise Rejected(f"{size / mb:,.1f} MB, more than the {limit / mb:,.0f} MB {taker}")
    return size
