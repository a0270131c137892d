"""The Discord frontend plugin: the live-message engine's hooks, and Discord's own.

What a chat shows is the engine's (``LiveFrontend``). What is Discord's is here: connecting,
the allowlist (the veto, ``authorize``, reloading it), ``cadenza doctor``, and showing a named
session's turns in its thread (``threads``: opened when the core accepts its turn). No discord.py
import here (``cadenza plugins list`` builds the plugin too): the connection is imported when
the bot starts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from cadenza import api
from cadenza.api import (
    Bot,
    Config,
    ConfigError,
    PluginContext,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    Turn,
    hookimpl,
)
from cadenza.frontends.discord.access import Access, Refusals, refusal_text
from cadenza.frontends.discord.markup import STYLE
from cadenza.frontends.discord.settings import FRONTEND, Allowlist, DiscordSettings
from cadenza.frontends.live.frontend import LiveFrontend
from cadenza.frontends.live.views import TextView

if TYPE_CHECKING:
    from cadenza.frontends.discord.connection import Connection
    from cadenza.frontends.discord.threads import SessionThreads

AboutTurn = TypeVar("AboutTurn", StreamEvent, TimeoutWarning, Recovery)


class DiscordFrontend(LiveFrontend):
    frontend = FRONTEND
    room = "channel"

    def __init__(self, context: PluginContext) -> None:
        self.settings = DiscordSettings.read(context.settings)
        super().__init__(context.log, STYLE, lifecycle_chats=self.settings.lifecycle_chats,
                         notify_after=self.settings.notify_after)
        self.hook_timeout = float(context.config.settings("core").values.get("hook_timeout", 10))
        self.clock = context.clock
        self.store = context.store
        self.access = Access(self.settings.allowlist)
        self.refusals = Refusals(context.clock)
        self.connection: Connection | None = None
        self.threads: SessionThreads | None = None

    @hookimpl
    async def on_start(self, bot: Bot) -> None:
        from cadenza.frontends.discord.connection import Connection

        if self.settings.allowlist.anyone:
            self.log.warning("discord: allow_all_users = true: anyone who can reach the bot "
                             "can run the agent on this machine")
        self.connection = Connection(self.settings, self.clock, self.log, self.store,
                                     self.access, self.refusals)
        self.engine = self.connection.engine
        self.threads = self.connection.threads
        await self.threads.load()  # before the journal resumes turns (its on_ready)
        self.connection.start(bot)

    # --- named sessions in threads (see ``threads``) -----------------------------------

    @hookimpl
    async def on_turn_accepted(self, turn: Turn) -> None:
        if self.threads is None:
            return
        notice = await self.threads.accepted(turn)
        if notice is not None:
            self.show(TextView(turn.chat, notice, self.style))

    def _shown(self, about: AboutTurn) -> AboutTurn:
        """An event, warning or recovery, with its turn where it is shown."""
        turn = about.turn if self.threads is None else self.threads.home(about.turn)
        return about if turn is about.turn else replace(about, turn=turn)

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        super().on_stream_event(self._shown(event))

    @hookimpl
    def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        super().on_timeout_warning(self._shown(warning))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        super().on_recover(self._shown(recovery))

    # --- access (the veto and authorize are LiveFrontend's) ---------------------------

    veto_reason = "not allowed by [discord] allowed_users / allowed_roles"

    def refusal_text(self, user_id: str) -> str:
        return refusal_text(user_id)

    @hookimpl
    def on_config_reload(self, config: Config) -> None:
        try:
            allowlist = Allowlist.read(config.settings(FRONTEND))
        except ConfigError as exc:
            self.log.error("discord: the allowlist was not reloaded, the one in force is kept: "
                           "%s", exc)
            return
        before = self.access.allowlist
        self.access.replace(allowlist)
        if allowlist == before:
            self.log.info("discord: allowlist reloaded, unchanged")
            return
        self.log.warning("discord: allowlist reloaded: %d user(s), %d role(s) in %d guild(s), "
                         "%d channel(s)%s", len(allowlist.users), len(allowlist.roles),
                         len(allowlist.guilds), len(allowlist.channels),
                         "; allow_all_users = true" if allowlist.anyone else "")

    @hookimpl
    async def doctor_checks(self) -> list[tuple[bool, str]]:
        from cadenza.frontends.discord.doctor import doctor

        checks = self.settings.doctor_lines()
        checks.extend(await doctor(self.settings))
        return [(ok, api.redact(text)) for ok, text in checks]
