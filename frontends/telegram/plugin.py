"""The Telegram frontend plugin: the live-message engine's hooks, and Telegram's own.

What a chat shows is the engine's (``LiveFrontend``: stream events, warnings, lifecycle and
recovery notices, as views its outboxes deliver). What is Telegram's is here: connecting,
the allowlist (the veto, ``authorize``, reloading it), and ``cadenza doctor``.

This module imports no aiogram (it takes seconds to import): ``cadenza plugins list`` and
``cadenza doctor`` build the plugin too. The connection is imported when the bot starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cadenza import api
from cadenza.api import (
    Bot,
    Config,
    ConfigError,
    PluginContext,
    hookimpl,
)
from cadenza.frontends.live.frontend import LiveFrontend
from cadenza.frontends.telegram.auth import Access, Refusals, refusal_text
from cadenza.frontends.telegram.settings import FRONTEND, Allowlist, TelegramSettings
from cadenza.frontends.telegram.views import STYLE

if TYPE_CHECKING:
    from cadenza.frontends.telegram.connection import Connection

DOCTOR_TIMEOUT = 5.0


class TelegramFrontend(LiveFrontend):
    frontend = FRONTEND
    room = "chat"

    def __init__(self, context: PluginContext) -> None:
        self.settings = TelegramSettings.read(context.settings)
        super().__init__(context.log, STYLE, lifecycle_chats=self.settings.lifecycle_chats,
                         notify_after=self.settings.notify_after)
        # on_shutdown must finish within the core's per-hook limit (checked by the core)
        self.hook_timeout = float(context.config.settings("core").values.get("hook_timeout", 10))
        self.clock = context.clock
        self.store = context.store
        self.name = context.name
        self.hooks = context.hooks
        self.access = Access(self.settings.allowlist)
        self.refusals = Refusals(context.clock)
        self.connection: Connection | None = None

    # --- run lifecycle --------------------------------------------------------------

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        from cadenza.frontends.telegram.connection import Connection

        if self.settings.allow_all_users:
            self.log.warning("telegram: allow_all_users = true: anyone who finds the bot can "
                             "run the agent on this machine")
        self.connection = Connection(self.settings, self.clock, self.log, self.store,
                                     self.access, self.refusals, self._switched_off)
        self.engine = self.connection.engine
        self.connection.start(bot)

    def _switched_off(self) -> bool:
        """Whether the core switched this plugin off (its hooks are no longer called, the
        veto included): then polling stops, and Telegram keeps the updates. Fails closed."""
        try:
            return bool(self.hooks.disabled(self.name))
        except Exception:
            return True

    # --- access (the veto and authorize are LiveFrontend's) ---------------------------

    veto_reason = "not in [telegram] allowed_users"

    def refusal_text(self, user_id: str) -> str:
        return refusal_text(user_id)

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
