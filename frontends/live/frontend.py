"""The rendering hooks every live-message frontend shares: the core's events become views.

A frontend plugin subclasses ``LiveFrontend`` (its hooks are inherited: pluggy finds them on
the instance), sets ``frontend`` to its name, calls ``__init__`` with its style and settings,
and sets ``self.engine`` once it has built its transport (in ``on_start``); it adds only what
is about its platform: connecting, ingress, access, commands, ``doctor``.

Hooks only record and schedule: a stream event updates its turn's view and wakes the room's
outbox, which talks to the platform in its own task. So a slow or failing API never holds up
the core, and the core's per-call hook time limit never cuts a delivery short.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from cadenza.api import (
    ChatMessage,
    ChatRef,
    Lifecycle,
    Notice,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    hookimpl,
)
from cadenza.frontends.live.notices import Pings
from cadenza.frontends.live.views import (
    DocumentView,
    QuestionView,
    Style,
    TextView,
    TurnView,
    View,
    WarningView,
)
from cadenza.frontends.text import lifecycle_text, recovery_text, warning_text

if TYPE_CHECKING:
    from cadenza.frontends.live.engine import Engine
    from cadenza.frontends.live.refusals import Refusals


MAX_QUESTIONS = 1000  # open questions remembered per frontend


class Access(Protocol):
    def allows(self, user_id: str) -> bool: ...


class Connection(Protocol):
    async def close(self, budget: float) -> None: ...


class LiveFrontend:
    frontend: str  # the ChatRef.frontend of this frontend's chats
    # Access, set by the subclass: who is allowed now (reloaded on SIGHUP), when a stranger
    # hears back, what the veto answers, and what the stranger is told.
    access: Access
    refusals: Refusals
    veto_reason: str
    room: str = "chat"  # how the platform calls a chat, for log lines

    def refusal_text(self, user_id: str) -> str:
        raise NotImplementedError

    def __init__(self, log: logging.Logger, style: Style, *,
                 lifecycle_chats: tuple[ChatRef, ...] = (), notify_after: float = 0.0) -> None:
        self.log = log
        self.style = style
        self.lifecycle_chats = lifecycle_chats
        self.pings = Pings(style, notify_after)
        self.engine: Engine | None = None  # set when the frontend starts
        self.turns: dict[str, TurnView] = {}  # running turns of this frontend's chats
        self.connection: Connection | None = None  # set when the frontend starts
        # on_shutdown must finish within the core's per-hook limit; subclasses set it
        self.hook_timeout = 10.0
        self.warnings: dict[str, list[WarningView]] = {}  # by turn id
        self.questions: dict[str, QuestionView] = {}  # open questions, by their ``ask`` key

    # --- run lifecycle and access ----------------------------------------------------

    @hookimpl
    async def on_shutdown(self) -> None:
        if self.connection is not None:
            await self.connection.close(self.hook_timeout)

    @hookimpl
    def on_inbound_message(self, message: ChatMessage) -> str | None:
        """The second check (the first is at ingress, for every update): a message of this
        frontend's chats from someone not allowed goes no further."""
        if message.chat.frontend != self.frontend:
            return None
        if self.engine is not None and message.message_id and message.message_id.isdigit():
            self.engine.saw(message.chat, int(message.message_id))
        if self.access.allows(message.user_id):
            return None
        if self.refusals.due(message.user_id):
            self.log.warning("%s: refused user %s (%s) in %s %s: %s", self.frontend,
                             message.user_id, message.user_name or "?", self.room,
                             message.chat.chat_id, self.veto_reason)
            self.show(TextView(message.chat, self.refusal_text(message.user_id), self.style))
        return self.veto_reason

    @hookimpl
    def authorize(self, chat: ChatRef, user_id: str) -> bool | None:
        """Whether a queued or resumed turn of this frontend's chats may run: its sender must
        be allowed now."""
        if chat.frontend != self.frontend:
            return None
        return self.access.allows(user_id)

    # --- rendering ------------------------------------------------------------------

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        turn = event.turn
        if turn.chat.frontend != self.frontend:
            return
        view = self.turns.get(turn.id)
        if view is None:
            if event.terminal and event.data.get("queued"):
                return  # dropped before it started: the core already said so
            if event.terminal and event.data.get("refused"):
                self.show(TextView(turn.chat, f"⛔ {event.text or 'not run'}", self.style))
                return
            view = self.turns[turn.id] = TurnView(turn, self.style)
            self.show(view)
        if view.apply(event):
            self.touch(view)
        if event.terminal:
            del self.turns[turn.id]
            self.warnings.pop(turn.id, None)
            path = event.data.get("output_file")
            if path:  # the answer was capped: the chat got its head and tail, here is all
                self.show(DocumentView.whole_output(
                    turn, str(path), int(event.data.get("output_omitted") or 0), self.style))
        ping = self.pings.after(view, event)
        if ping is not None:
            self.show(ping)

    @hookimpl
    def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        turn = warning.turn
        if turn.chat.frontend != self.frontend:
            return
        view = self.turns.get(turn.id)
        if view is None:  # not shown here (or already over): just say it
            self.show(TextView(turn.chat, warning_text(warning), self.style))
            return
        view.warn(warning)
        self.touch(view)
        notice = WarningView(view, warning)
        self.warnings.setdefault(turn.id, []).append(notice)
        self.show(notice)

    @hookimpl
    def on_startup_lifecycle(self, lifecycle: Lifecycle) -> None:
        chats = self.lifecycle_chats or tuple(
            chat for chat in lifecycle.recent_chats if chat.frontend == self.frontend)
        for chat in dict.fromkeys(chats):
            self.show(TextView(chat, lifecycle_text(lifecycle), self.style))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        if recovery.turn.chat.frontend == self.frontend:
            if self.engine is not None:  # the live message it left says so too
                self.engine.recoveries[recovery.turn.id] = recovery
            self.show(TextView(recovery.turn.chat, recovery_text(recovery), self.style))

    @hookimpl(trylast=True)
    def on_ready(self) -> None:
        """After the journal's ``on_ready`` (trylast): every recovery has been reported, so
        the live messages a crash left can say whether their turns resume."""
        if self.engine is not None:
            self.engine.recovered.set()

    @hookimpl
    def on_notice(self, notice: Notice) -> None:
        if notice.chat.frontend != self.frontend:
            return
        if self._question(notice):
            return
        if notice.files:  # the text is the first file's caption
            for index, path in enumerate(notice.files):
                self.show(DocumentView.file(notice.chat, str(path),
                                            notice.text if index == 0 else "", self.style))
        elif notice.text.strip():
            self.show(TextView(notice.chat, notice.text, self.style))

    def _question(self, notice: Notice) -> bool:
        """A notice with ``ask`` (a key) and ``buttons`` ((label, command) pairs) is a
        question whose buttons run their command as the person pressing them; a later
        notice with ``answered`` (the key) settles it. Whether the notice was one of those."""
        answered, ask = notice.data.get("answered"), notice.data.get("ask")
        if answered is not None:
            view = self.questions.pop(str(answered), None)
            if view is None:
                return False  # asked before a restart: say the answer as a notice
            view.settle(notice.text)
            if self.engine is not None:
                self.engine.touch(view)
            return True
        buttons = notice.data.get("buttons")
        if ask is None or not buttons:
            return False
        if len(self.questions) >= MAX_QUESTIONS:  # never answered: forget the oldest
            self.questions.pop(next(iter(self.questions)))
        view = self.questions[str(ask)] = QuestionView(
            notice.chat, notice.text, [(str(label), str(command)) for label, command in buttons],
            self.style)
        self.show(view)
        return True

    # --- to the engine --------------------------------------------------------------

    def show(self, view: View) -> None:
        if self.engine is None:
            self.log.warning("%s: a message for %s before the frontend started; dropped",
                             self.frontend, view.chat.key)
            return
        self.engine.show(view)

    def touch(self, view: TurnView) -> None:
        if self.engine is None:
            return
        self.engine.touch(view)
        for notice in self.warnings.get(view.turn.id, ()):
            self.engine.touch(notice)
