"""The Telegram frontend plugin: the hooks, and what each chat should show.

Hooks only record and schedule: a stream event updates its turn's view and wakes the chat's
outbox, which talks to Telegram in its own task. So a slow or failing API never holds up the
core, and the core's per-call hook time limit never cuts a delivery short.

This module imports no aiogram (it takes seconds to import): ``cadenza plugins list`` and
``cadenza doctor`` build the plugin too. The connection is imported when the bot starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cadenza import api
from cadenza.api import (
    Bot,
    ChatMessage,
    ChatRef,
    Config,
    ConfigError,
    Lifecycle,
    Notice,
    PluginContext,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    hookimpl,
)
from cadenza.frontends.telegram.auth import Access, Refusals, refusal_text
from cadenza.frontends.telegram.settings import FRONTEND, Allowlist, TelegramSettings
from cadenza.frontends.telegram.views import DocumentView, TextView, TurnView, View, WarningView
from cadenza.frontends.text import lifecycle_text, recovery_text, warning_text

if TYPE_CHECKING:
    from cadenza.frontends.telegram.connection import Connection
    from cadenza.frontends.telegram.outbox import Outbox

DOCTOR_TIMEOUT = 5.0


class TelegramFrontend:
    def __init__(self, context: PluginContext) -> None:
        self.settings = TelegramSettings.read(context.settings)
        # on_shutdown must finish within the core's per-hook limit (checked by the core)
        self.hook_timeout = float(context.config.settings("core").values.get("hook_timeout", 10))
        self.log = context.log
        self.clock = context.clock
        self.store = context.store
        self.name = context.name
        self.hooks = context.hooks
        self.access = Access(self.settings.allowlist)
        self.refusals = Refusals(context.clock)
        self.connection: Connection | None = None
        self.turns: dict[str, TurnView] = {}  # running turns of Telegram chats
        self.warnings: dict[str, list[WarningView]] = {}  # by turn id

    # --- run lifecycle --------------------------------------------------------------

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        from cadenza.frontends.telegram.connection import Connection

        if self.settings.allow_all_users:
            self.log.warning("telegram: allow_all_users = true: anyone who finds the bot can "
                             "run the agent on this machine")
        self.connection = Connection(self.settings, self.clock, self.log, self.store,
                                     self.access, self.refusals, self._switched_off)
        self.connection.start(bot)

    def _switched_off(self) -> bool:
        """Whether the core switched this plugin off (its hooks are no longer called, the
        veto included): then polling stops, and Telegram keeps the updates. Fails closed."""
        try:
            return bool(self.hooks.disabled(self.name))
        except Exception:
            return True

    @hookimpl
    async def on_shutdown(self) -> None:
        if self.connection is not None:
            await self.connection.close(self.hook_timeout)

    # --- inbound veto ---------------------------------------------------------------

    @hookimpl
    def on_inbound_message(self, message: ChatMessage) -> str | None:
        """The second check (the first is at ingress, for every update): a Telegram chat's
        message from someone not on the allowlist goes no further."""
        if message.chat.frontend != FRONTEND or self.access.allows(message.user_id):
            return None
        if self.refusals.due(message.user_id):
            self.log.warning("telegram: refused user %s (%s) in chat %s: not in [telegram] "
                             "allowed_users", message.user_id, message.user_name or "?",
                             message.chat.chat_id)
            self._show(TextView(message.chat, refusal_text(message.user_id)))
        return "not in [telegram] allowed_users"

    @hookimpl
    def authorize(self, chat: ChatRef, user_id: str) -> bool | None:
        """Whether a queued or resumed turn of a Telegram chat may run: its sender must be on
        the allowlist in force now."""
        if chat.frontend != FRONTEND:
            return None
        return self.access.allows(user_id)

    @hookimpl
    def on_config_reload(self, config: Config) -> None:
        """SIGHUP: take ``allowed_users`` and ``allow_all_users`` from the file as it is now;
        a bad new value is logged and the allowlist in force kept."""
        try:
            allowlist = Allowlist.read(config.settings(FRONTEND))
        except ConfigError as exc:
            self.log.error("telegram: the allowlist was not reloaded, the one in force is kept "
                           "(%d user(s)%s): %s", len(self.access.allowlist.users),
                           ", anyone" if self.access.allowlist.anyone else "", exc)
            return
        before = self.access.allowlist
        self.access.replace(allowlist)
        if allowlist == before:
            self.log.info("telegram: allowlist reloaded, unchanged")
            return
        added = sorted(allowlist.users - before.users)
        removed = sorted(before.users - allowlist.users)
        self.log.warning("telegram: allowlist reloaded: %d user(s)%s%s%s",
                         len(allowlist.users), f"; added {', '.join(added)}" if added else "",
                         f"; removed {', '.join(removed)}" if removed else "",
                         "; allow_all_users = true: anyone may use the bot"
                         if allowlist.anyone else "")

    # --- rendering ------------------------------------------------------------------

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        turn = event.turn
        if turn.chat.frontend != FRONTEND:
            return
        view = self.turns.get(turn.id)
        if view is None:
            if event.terminal and event.data.get("queued"):
                return  # dropped before it started: the core already said so
            if event.terminal and event.data.get("refused"):
                self._show(TextView(turn.chat, f"⛔ {event.text or 'not run'}"))
                return
            view = self.turns[turn.id] = TurnView(turn)
            self._show(view)
        if view.apply(event):
            self._touch(view)
        if event.terminal:
            del self.turns[turn.id]
            self.warnings.pop(turn.id, None)
            path = event.data.get("output_file")
            if path:  # the answer was capped: the chat got its head and tail, here is all
                self._show(DocumentView(turn, str(path), int(event.data.get("output_omitted")
                                                             or 0)))

    @hookimpl
    def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        turn = warning.turn
        if turn.chat.frontend != FRONTEND:
            return
        view = self.turns.get(turn.id)
        if view is None:  # not shown here (or already over): just say it
            self._show(TextView(turn.chat, warning_text(warning)))
            return
        view.warn(warning)
        self._touch(view)
        notice = WarningView(view, warning)
        self.warnings.setdefault(turn.id, []).append(notice)
        self._show(notice)

    @hookimpl
    def on_startup_lifecycle(self, lifecycle: Lifecycle) -> None:
        chats = self.settings.lifecycle_chats or tuple(
            chat for chat in lifecycle.recent_chats if chat.frontend == FRONTEND)
        for chat in dict.fromkeys(chats):
            self._show(TextView(chat, lifecycle_text(lifecycle)))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        if recovery.turn.chat.frontend == FRONTEND:
            if self.connection is not None:  # the live message it left says so too
                self.connection.recoveries[recovery.turn.id] = recovery
            self._show(TextView(recovery.turn.chat, recovery_text(recovery)))

    @hookimpl(trylast=True)
    def on_ready(self) -> None:
        """After the journal's ``on_ready`` (trylast): every recovery has been reported, so
        the live messages a crash left can say whether their turns resume."""
        if self.connection is not None:
            self.connection.recovered.set()

    @hookimpl
    def on_notice(self, notice: Notice) -> None:
        if notice.chat.frontend == FRONTEND and notice.text.strip():
            self._show(TextView(notice.chat, notice.text))

    def _show(self, view: View) -> None:
        outbox = self._outbox(view.chat)
        if outbox is not None:
            outbox.add(view)

    def _touch(self, view: TurnView) -> None:
        outbox = self._outbox(view.chat)
        if outbox is None:
            return
        outbox.touch(view)
        for notice in self.warnings.get(view.turn.id, ()):
            outbox.touch(notice)

    def _outbox(self, chat: ChatRef) -> Outbox | None:
        if self.connection is None:
            self.log.warning("telegram: a message for %s before the frontend started; dropped",
                             chat.key)
            return None
        try:
            chat_id = int(chat.chat_id)
        except ValueError:
            self.log.error("telegram: %r is not a Telegram chat id; message dropped", chat.key)
            return None
        return self.connection.outbox(chat_id)

    # --- command line ---------------------------------------------------------------

    @hookimpl
    async def doctor_checks(self) -> list[tuple[bool, str]]:
        from aiogram.exceptions import TelegramUnauthorizedError
        from cadenza.frontends.telegram.client import make_bot

        checks = self.settings.doctor_lines()
        base = self.settings.api_base
        client = make_bot(self.settings)
        try:
            async with asyncio.timeout(DOCTOR_TIMEOUT):
                me = await client.get_me()
            checks.append((True, f"telegram: {base} answers: this is @{me.username}"))
        except TelegramUnauthorizedError:
            checks.append((False, f"telegram: {base} rejects the token in "
                           f"{self.settings.token_source}"))
        except Exception as exc:
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            checks.append((False, f"telegram: cannot reach {base}: {reason}"))
        finally:
            await client.session.close()
        # aiohttp's errors name the request URL, and the token is part of every one
        return [(ok, api.redact(text)) for ok, text in checks]
