"""The web frontend plugin: the board fed from the hooks, the server started with the bot, the
page's own chat (``web:<user>``), and what the pages read (journal and sessions through
``report_status``, each chat's recent turns through the journal's ``recent_turns``, plugin
health through the hook relay)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from cadenza import api
from cadenza.api import (
    Attachment,
    Bot,
    ChatMessage,
    ChatRef,
    Lifecycle,
    Notice,
    PluginContext,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    first_line,
    hookimpl,
)
from cadenza.frontends.text import lifecycle_text, recovery_text
from cadenza.frontends.web.access import LoginLimiter, Logins, Secret, new_token
from cadenza.frontends.web.board import Board
from cadenza.frontends.web.server import Server
from cadenza.frontends.web.settings import FRONTEND, WebConfig, loopback
from cadenza.plugins.files import FilesSettings

RECENT_PER_CHAT = 20  # turns of each chat the Chats view lists, newest first


class WebFrontend:
    def __init__(self, context: PluginContext) -> None:
        self.config = WebConfig.read(context.settings)
        settings = self.config.settings
        self.user = settings.user
        self.chat = ChatRef(FRONTEND, settings.user)
        self.clock = context.clock
        self.log = context.log
        self.hooks = context.hooks
        self.switches = context.config.switches()
        timeout = context.config.settings("timeout").values.get("seconds", 1800)
        self.board = Board(context.clock, float(timeout)
                           if self.switches.get("timeout", True) else None)
        self.token = None if self.config.password else new_token()
        self.server = Server(self, Secret(self.config.password or self.token or ""),
                             Logins(context.clock, settings.session_hours * 3600),
                             LoginLimiter(context.clock, settings.login_attempts,
                                          settings.login_window),
                             loopback_only=loopback(settings.host),
                             upload_limit=context.config.settings("files").load(
                                 FilesSettings).max_turn_bytes)
        self.runner: web.AppRunner | None = None
        self.bot: Bot | None = None
        self.url = ""

    # --- run lifecycle --------------------------------------------------------------

    @hookimpl
    async def on_start(self, bot: Bot) -> None:
        self.bot = bot
        settings = self.config.settings
        self.runner = web.AppRunner(self.server.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            self.log.error("web: cannot serve on %s:%s: %s", settings.host, settings.port, exc)
            bot.request_stop(exit_code=2)
            return
        host, port = self.runner.addresses[0][:2]  # the port chosen when [web] port = 0
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        self.log.info("web: the operator page is at %s", self.url)
        if self.token is not None:
            # the one place the token is ever shown: the terminal that started Cadenza
            sys.stderr.write(f"web: log in at {self.url} with the token {self.token}\n")
            sys.stderr.flush()
            self.token = None  # only its hash is kept

    @hookimpl
    async def on_shutdown(self) -> None:
        self.board.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @hookimpl
    def doctor_checks(self) -> list[tuple[bool, str]]:
        settings = self.config.settings
        login = (f"the password in ${settings.password_env}" if self.config.password
                 else "a token printed at start")
        return [(True, f"web: the page will be at http://{settings.host}:{settings.port}/, "
                       f"logging in with {login}")]

    # --- what happens, for the board ------------------------------------------------

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        self.board.event(event)

    @hookimpl
    def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        self.board.warning(warning)

    @hookimpl
    def on_notice(self, notice: Notice) -> None:
        if notice.chat == self.chat:
            self.board.notice(notice)

    @hookimpl
    def on_startup_lifecycle(self, lifecycle: Lifecycle) -> None:
        self.board.notice(Notice(self.chat, lifecycle_text(lifecycle), "lifecycle"))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        if recovery.turn.chat == self.chat:
            self.board.notice(Notice(self.chat, recovery_text(recovery), "recovery"))

    @hookimpl
    def authorize(self, chat: ChatRef, user_id: str) -> bool | None:
        """The page's chat is its logged-in operator's: checked at every request."""
        if chat.frontend != FRONTEND:
            return None
        return chat == self.chat and user_id == self.user

    # --- what the page does (server.Desk) ----------------------------------------------

    async def send(self, text: str, files: Sequence[Attachment] = ()) -> None:
        """A prompt typed on the page; with files, their caption (the files plugin takes
        them, as from any chat)."""
        assert self.bot is not None
        await self.bot.handle(ChatMessage(self.chat, self.user, text, user_name=self.user,
                                          attachments=tuple(files)))

    def stop(self, turn_id: str) -> bool:
        return self.bot is not None and self.bot.stop_turn(
            turn_id, api.CANCELLED, "stopped from the web page")

    async def extend(self, turn_id: str) -> bool:
        """As Telegram's Extend button: ``/extend TURN`` in the turn's own chat, from the
        person who sent it, so the timeout controller (or whoever owns /extend) decides."""
        runner = self.bot.running(turn_id) if self.bot is not None and turn_id else None
        if runner is None or self.bot is None:
            return False
        turn = runner.turn
        await self.bot.handle(ChatMessage(turn.chat, turn.user_id or self.user,
                                          f"/extend {turn.id}"))
        return True

    async def status(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for sections in await self.hooks.call("report_status"):
            merged.update(sections)
        return merged

    async def chats(self) -> dict[str, dict[str, Any]]:
        status = await self.status()
        chats: dict[str, dict[str, Any]] = {}

        def about(key: str) -> dict[str, Any]:
            if key not in chats:
                waiting = self.bot.waiting(ChatRef.from_key(key)) if self.bot else 0
                chats[key] = {"waiting": waiting, "turns": [], "sessions": []}
            return chats[key]

        for row in await self.recent_turns():
            about(row.pop("chat"))["turns"].append(row)
        for session in status.get("sessions", []):
            about(str(session.get("chat")))["sessions"].append(
                {k: v for k, v in session.items() if k != "chat"})
        return chats

    async def recent_turns(self) -> list[dict[str, Any]]:
        """Each chat's recent turns, newest first: the journal's, so they outlive a restart
        (a running one as the board sees it, with its cost so far); without the journal,
        the board's, of this run only."""
        read = getattr(self.hooks.pm.get_plugin("journal"), "recent_turns", None)
        if read is not None:
            try:
                return self._journal_rows(await read(limit_per_chat=RECENT_PER_CHAT))
            except Exception as exc:  # the page stays up; the board still has this run's
                self.log.warning("web: cannot read the journal's recent turns: %s", exc)
        now = self.clock.monotonic()
        return [_turn_row(row["chat"], row["prompt"], row["session"],
                          row["outcome"] or "running", row["elapsed"], row["cost_usd"])
                for row in (live.describe(now)
                            for live in [*self.board.running.values(), *self.board.finished])]

    def _journal_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now, monotonic = self.clock.time(), self.clock.monotonic()
        turns = []
        for row in rows:
            cost, started, ended = row["cost_usd"], row["started_at"], row["ended_at"]
            live = self.board.running.get(row["id"])
            if live is not None:
                seconds: float | None = monotonic - live.started
                cost = live.cost_usd if live.cost_usd is not None else cost
            elif started is not None and (ended is not None or row["state"] == "running"):
                seconds = (ended if ended is not None else now) - started
            else:
                seconds = None  # never started, or cut short with no end written
            turns.append(_turn_row(row["chat"], row["prompt"], row["session"], row["state"],
                                   seconds, cost))
        return turns

    def plugins(self) -> list[dict[str, Any]]:
        rows = []
        for name, plugin in sorted(self.hooks.pm.list_name_plugin()):
            if plugin is None:
                continue
            problem = self.hooks.health.get(name, "")
            state = "switched off" if self.hooks.disabled(name) else "on"
            rows.append({"plugin": name, "state": state, "health": problem or "ok"})
        loaded = {row["plugin"] for row in rows}
        rows.extend({"plugin": name, "state": "off", "health": "off in plugins.toml"}
                    for name, on in sorted(self.switches.items())
                    if not on and name not in loaded)
        return rows


def _turn_row(chat: str, prompt: str, session: str, outcome: str, seconds: float | None,
              cost_usd: float | None) -> dict[str, Any]:
    """One line of a chat's recent turns, from the journal or the board alike."""
    return {"chat": chat, "prompt": first_line(prompt, 200), "session": session or "—",
            "outcome": outcome, "duration": "—" if seconds is None else api.duration(seconds),
            "cost_usd": cost_usd}
