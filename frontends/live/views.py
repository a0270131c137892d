"""What each chat should show, as data: the outbox makes the platform match it.

A view is a list of messages as they should look now (``desired()``). A turn's view is its
answer cut into message-sized parts; the last part is the live message, with the latest
activity underneath and a Stop button while the turn runs, and the outcome once it ended.
Parts before the last are sealed when the answer outgrows a message, and never change again.
Notices, lifecycle and recovery messages are one-off text views; a timeout warning is a text
view whose Extend / Stop buttons last while the warning is current. A turn whose answer
went over ``[core] max_output`` ends with a document view: the whole output as a file, or a
clear message when the file cannot be sent.

Views are the same on every platform; a ``Style`` (the transport's markup and limits) makes
them the platform's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cadenza import api
from cadenza.api import ChatRef, Recovery, StreamEvent, TimeoutWarning, Turn, duration
from cadenza.frontends.live.split import UTF16, Units, clean, cut_point, split
from cadenza.frontends.live.transport import Markup, Outgoing, Transport
from cadenza.frontends.text import interrupted_text, outcome_text, warning_text

LABEL_MAX = 60  # a named session's label, on top of each of its messages
STATUS_MAX = 400  # the activity lines under the live text
CAPTION_MAX = 900  # a file's caption, within Telegram's 1,024 UTF-16 units with room to spare
WORKING = "⏳ working…"


@dataclass(frozen=True, slots=True)
class Style:
    """How views are written on one platform: its markup, the longest message it takes and
    the units that length is counted in."""

    markup: Markup
    message_length: int
    units: Units = UTF16

    @classmethod
    def of(cls, transport: Transport) -> Style:
        return cls(transport.markup, transport.limits.message_length, transport.limits.units)

    @property
    def text_budget(self) -> int:
        """Answer text in one message: what is left beside a label and the status lines."""
        return self.message_length - LABEL_MAX - STATUS_MAX - 16

    def length(self, text: str) -> int:
        return self.units.length(text)

    def split(self, text: str, budget: int | None = None) -> list[str]:
        return split(text, self.message_length if budget is None else budget, self.units)

    def label(self, session: str) -> tuple[str, str]:
        """A named session's label above its messages: (markup, plain), or empty."""
        name = clean(session)[:LABEL_MAX - 3]
        if not name:
            return ("", "")
        return (self.markup.bold(self.markup.escape(f"[{name}]")) + "\n", f"[{name}]\n")

    def text(self, text: str) -> Outgoing:
        """Plain text as one message."""
        return Outgoing(self.markup.escape(text), text)


def stop_button(turn_id: str) -> tuple[str, str]:
    return ("⏹ Stop", f"stop:{turn_id}")


def extend_button(turn_id: str) -> tuple[str, str]:
    return ("⏳ Extend", f"extend:{turn_id}")


MAX_BUTTON_DATA = 64  # bytes a button may carry back (Telegram's limit, the strictest)


def command_button(label: str, command: str) -> tuple[str, str] | None:
    """A button that runs ``command`` as if the person pressing it had typed it; None when
    the command is too long to ride on a button (the question's text must name it)."""
    data = f"cmd:{command}"
    return (label, data) if len(data.encode()) <= MAX_BUTTON_DATA else None


class View:
    chat: ChatRef

    def desired(self) -> list[Outgoing]:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """Nothing about this view will change any more."""
        return True

    @property
    def running(self) -> bool:
        """The chat should show "typing" for this view."""
        return False


class TextView(View):
    """A one-off message (notice, lifecycle, recovery), split if it is long."""

    def __init__(self, chat: ChatRef, text: str, style: Style, *, notify: str = "") -> None:
        self.chat = chat
        self.style = style
        self.text = clean(text).strip() or "…"
        self.notify = notify  # the person it is for (``Outgoing.notify``)

    def desired(self) -> list[Outgoing]:
        parts = [self.style.text(part) for part in self.style.split(self.text)]
        if self.notify:
            first = parts[0]
            parts[0] = Outgoing(first.markup, first.plain, first.buttons, notify=self.notify)
        return parts


class QuestionView(View):
    """A question for the chat with answer buttons (a tool approval), as a new message so the
    phone notifies; once answered, the answer is added under it and the buttons go."""

    def __init__(self, chat: ChatRef, text: str, buttons: list[tuple[str, str]],
                 style: Style) -> None:
        self.chat = chat
        self.style = style
        self.text = clean(text).strip() or "…"
        self.buttons = tuple(button for label, command in buttons
                             if (button := command_button(label, command)) is not None)
        self.answer: str | None = None

    @property
    def finished(self) -> bool:
        return self.answer is not None

    def settle(self, answer: str) -> None:
        self.answer = clean(answer).strip()

    def desired(self) -> list[Outgoing]:
        text = self.text if not self.answer else f"{self.text}\n\n{self.answer}"
        parts = [self.style.text(part) for part in self.style.split(text)]
        if self.answer is None:
            parts[-1] = Outgoing(parts[-1].markup, parts[-1].plain, self.buttons)
        return parts


class TurnView(View):
    def __init__(self, turn: Turn, style: Style) -> None:
        self.turn = turn
        self.chat = turn.chat
        self.style = style
        self.parts: list[str] = []  # the answer cut into sealed parts, as written
        self.rest = ""  # the answer after the sealed parts: the live message's text
        self.sealed: list[Outgoing] = []  # the sealed parts as sent
        self.code_state: str | None = None  # a code block open where the sealed parts end
        self.status: list[str] = []  # the latest activity, shown while running
        self.errors: list[str] = []  # agent-side errors, kept in the final message
        self.warning: TimeoutWarning | None = None
        self.ending: StreamEvent | None = None
        self.outcome = ""  # errors and how the turn ended, once it did
        self.label = style.label(turn.session)

    @property
    def finished(self) -> bool:
        return self.ending is not None

    @property
    def running(self) -> bool:
        return self.ending is None

    # --- events ---------------------------------------------------------------------

    def apply(self, event: StreamEvent) -> bool:
        """Take one stream event; returns whether what the chat should show changed."""
        kind, text = event.kind, clean(event.text)
        if self.ending is not None:
            return False
        if kind == api.TEXT:
            if not text:
                return False
            self.rest += text
            self.status = []
            self._seal()
        elif kind == api.STARTED:
            if self.turn.attempt > 1:
                self.status = [f"↻ attempt {self.turn.attempt}"]
        elif kind == api.THINKING:
            self.status = ["💭 thinking…"]
        elif kind == api.TOOL_USE:
            self.status = [f"⚙ {text}"]
        elif kind == api.TOOL_RESULT:
            if not event.data.get("is_error"):
                return False
            self.status = [*self.status[:1], f"✗ {text}"]
        elif kind == api.NOTICE:
            self.status = [f"ℹ️ {text}"]
        elif kind == api.ERROR:
            self.errors.append(f"⚠️ {text}")
        elif kind == "timeout_extended":
            self.warning = None
            self.status = [text] if text else []
        elif event.terminal:
            self.ending = event
            self.warning = None
            self.outcome = clean("\n".join([*self.errors, outcome_text(event, self.answer)]))
        else:
            return False  # session, usage, timeout_warn_* (shown by on_timeout_warning), ...
        return True

    @property
    def answer(self) -> str:
        return "".join([*self.parts, self.rest])

    def warn(self, warning: TimeoutWarning) -> None:
        self.warning = warning

    def _seal(self) -> None:
        """Cut full messages off the front of the live text, at readable places."""
        budget, units = self.style.text_budget, self.style.units
        while units.prefix(self.rest, budget) < len(self.rest):
            cut = cut_point(self.rest, budget, units)
            part, self.rest = self.rest[:cut], self.rest[cut:]
            markup, self.code_state = self.style.markup.render(part, self.code_state)
            self.parts.append(part)
            self.sealed.append(Outgoing(self.label[0] + markup, self.label[1] + part))

    # --- rendering ------------------------------------------------------------------

    def desired(self) -> list[Outgoing]:
        rest = self.rest
        markup, _ = self.style.markup.render(rest, self.code_state)
        head_markup, head_plain = self.label
        if self.ending is None:
            return [*self.sealed, self._live(head_markup + markup, head_plain + rest)]
        tail = self.outcome
        if not rest.strip():
            return [*self.sealed, *_text_parts(self.style, self.label, tail)]
        length = self.style.length
        if length(head_plain + rest) + 2 + length(tail) <= self.style.message_length:
            last = Outgoing(f"{head_markup}{markup}\n\n{self.style.markup.escape(tail)}",
                            f"{head_plain}{rest}\n\n{tail}")
            return [*self.sealed, last]
        return [*self.sealed, Outgoing(head_markup + markup, head_plain + rest),
                *_text_parts(self.style, self.label, tail)]

    def _live(self, markup: str, plain: str) -> Outgoing:
        lines = self.status
        if self.warning is not None:
            lines = [*lines, f"⏳ about {duration(self.warning.seconds_left)} left"]
        lines = lines or [WORKING]
        status = clean("\n".join(lines))
        if self.style.length(status) > STATUS_MAX:
            status = status[: STATUS_MAX // 2 - 1] + "…"
        buttons = (stop_button(self.turn.id),)
        if self.warning is not None:
            buttons = (extend_button(self.turn.id), *buttons)
        gap = "\n\n" if plain.strip() else ""
        shown = self.style.markup.italic(self.style.markup.escape(status))
        return Outgoing(f"{markup}{gap}{shown}", f"{plain}{gap}{status}", buttons,
                        live=(self.turn.id, markup, plain))


class WarningView(View):
    """A timeout warning as its own message (it notifies, an edit does not), with Extend
    and Stop buttons while it is the turn's current warning."""

    def __init__(self, turn_view: TurnView, warning: TimeoutWarning) -> None:
        self.turn_view = turn_view
        self.warning = warning
        self.chat = turn_view.chat
        self.text = clean(warning_text(warning))

    @property
    def current(self) -> bool:
        return self.turn_view.running and self.turn_view.warning is self.warning

    @property
    def finished(self) -> bool:
        return not self.current

    def desired(self) -> list[Outgoing]:
        turn_id = self.turn_view.turn.id
        buttons = (extend_button(turn_id), stop_button(turn_id)) if self.current else ()
        markup = self.turn_view.style.markup
        return [Outgoing(markup.escape(self.text), self.text, buttons)]


def interrupted(style: Style, markup: str, plain: str, recovery: Recovery | None) -> Outgoing:
    """A live message a previous run left behind, finished: its text, then what happened
    to its turn (resumed below, or not), and no buttons."""
    note = clean(interrupted_text(recovery))[:STATUS_MAX]
    gap = "\n\n" if plain.strip() else ""
    shown = style.markup.italic(style.markup.escape(note))
    return Outgoing(f"{markup}{gap}{shown}", f"{plain}{gap}{note}")


class DocumentView(View):
    """A file for the chat with its caption (an image shows as a picture where the
    platform can: the transport decides); a clear message instead when it cannot be sent."""

    def __init__(self, chat: ChatRef, path: str, name: str, caption: str, style: Style, *,
                 lost: str) -> None:
        self.chat = chat
        self.path = path
        self.name = name
        self.caption = clean(caption)
        self.lost = lost  # what is said when it cannot be sent, before the reason
        self.style = style
        self.error: str | None = None
        try:
            self.size = os.path.getsize(path)
        except OSError as exc:
            self.size = 0
            self.fail(exc.strerror or str(exc))

    @classmethod
    def whole_output(cls, turn: Turn, path: str, omitted: int, style: Style) -> DocumentView:
        """The whole output of a turn that was too long for the chat."""
        name = clean(turn.session)[:LABEL_MAX - 3]
        label = f"[{name}] " if name else ""
        view = cls(turn.chat, path, f"output-{turn.id}.txt", "", style,
                   lost=f"{label}⚠️ The whole output of this turn could not be sent as a file")
        view.caption = (f"{label}📄 The whole output of this turn ({_kb(view.size)}); "
                        f"{_kb(omitted)} of it was not shown above.")
        return view

    @classmethod
    def file(cls, chat: ChatRef, path: str, caption: str, style: Style) -> DocumentView:
        """A file a plugin sends (``Notice.files``)."""
        name = os.path.basename(path)
        return cls(chat, path, name, caption or name, style,
                   lost=f"⚠️ {name} could not be sent")

    def fail(self, reason: str) -> None:
        """The file cannot be sent (gone, too big, refused): say so instead."""
        self.error = clean(reason)[:300]

    def desired(self) -> list[Outgoing]:
        escape = self.style.markup.escape
        if self.error is None:
            caption = self.caption[:CAPTION_MAX]
            return [Outgoing(escape(caption), caption, document=(self.path, self.name))]
        text = f"{self.lost} ({self.error}). It is kept on the bot's machine as {self.path}."
        return [Outgoing(escape(text), text)]


def _kb(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB" if size >= 1_000_000 else f"{size / 1000:,.0f} KB"


def _text_parts(style: Style, label: tuple[str, str], text: str) -> list[Outgoing]:
    budget = style.message_length - style.length(label[1])
    escape = style.markup.escape
    return [Outgoing(label[0] + escape(part), label[1] + part)
            for part in style.split(text, budget)]
