"""The live link to Telegram: the aiogram client, its polling task, and the live-message
engine that delivers through it.

Built by the plugin in ``on_start`` only (aiogram takes seconds to import, and
``cadenza plugins list`` / ``doctor`` build the plugin too). ``start`` connects in the
background, with backoff while the API is unreachable, then registers the commands and polls.
``close`` stops polling, confirms the handled updates, delivers what is still owed for up to
``flush_timeout`` seconds and closes the HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiogram.utils.backoff import Backoff
from cadenza.api import Bot
from cadenza.frontends.live.engine import Engine
from cadenza.frontends.live.outbox import Outbox
from cadenza.frontends.live.retry import RetryPolicy
from cadenza.frontends.telegram.auth import Access, Refusals
from cadenza.frontends.telegram.client import (
    AIOGRAM_LOGGERS,
    Redact,
    backoff_config,
    bot_commands,
    connect,
    make_bot,
)
from cadenza.frontends.telegram.egress import CLOUD_API, MAX_UPLOAD, Api, limits
from cadenza.frontends.telegram.files import MAX_DOWNLOAD
from cadenza.frontends.telegram.inbound import Inbound, dispatcher
from cadenza.frontends.telegram.ledger import Ledger
from cadenza.frontends.telegram.polling import Poller
from cadenza.frontends.telegram.settings import TelegramSettings

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock, Store

COMMAND_ATTEMPTS = 5
CONFIRM_TIMEOUT = 2.0  # seconds for telling Telegram which updates were handled
CLOSE_MARGIN = 0.5  # of the core's hook time limit, kept for closing the session


class Connection:
    def __init__(self, settings: TelegramSettings, clock: Clock, log: logging.Logger,
                 store: Store, access: Access, refusals: Refusals,
                 switched_off: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.access = access
        self.refusals = refusals
        self.switched_off = switched_off  # the core switched this plugin off: take nothing
        self.clock = clock
        self.log = log
        Redact(settings.token).install(
            [log, *(logging.getLogger(name) for name in AIOGRAM_LOGGERS)])
        self.client = make_bot(settings)
        self.cloud = settings.api_base == CLOUD_API  # a local Bot API server has no size limits
        self.api = Api(self.client, MAX_UPLOAD if self.cloud else None,
                       limits(settings.edit_interval, settings.group_messages_per_minute,
                              settings.messages_per_second))
        retry = RetryPolicy(settings.backoff_min, settings.backoff_max)
        self.engine = Engine(self.api, clock, log, store, retry, ledger=Ledger(store, log))
        self.inbound: Inbound | None = None
        self.poller: Poller | None = None
        self._task: asyncio.Task[None] | None = None
        self._chores: list[asyncio.Task[None]] = []

    @property
    def outboxes(self) -> dict[int, Outbox]:
        return self.engine.outboxes

    def start(self, core: Bot) -> None:
        self._task = asyncio.ensure_future(self._run(core))

    async def _run(self, core: Bot) -> None:
        await self.engine.load()  # before anything is sent: outboxes wait for ``ready``
        me = await connect(self.client, self.settings, self.clock, self.log)
        self.log.info("telegram: connected to %s as @%s", self.settings.api_base, me.username)
        self.inbound = Inbound(core, self.client, me, self.access, self.refusals, self.clock,
                               self.log, merge_pastes=self.settings.merge_pastes,
                               max_download=MAX_DOWNLOAD if self.cloud else None)
        self.engine.ready.set()
        self._chores = [asyncio.ensure_future(self._register_commands(core)),
                        asyncio.ensure_future(self.engine.finish_left_over())]

        def accepting() -> bool:
            return core.accepting and not self.switched_off()

        self.poller = Poller(self.client, dispatcher(), self.settings, self.clock, self.log,
                             accepting=accepting, reachability=self.engine.reachability,
                             inbound=self.inbound)
        while accepting():
            try:
                await self.poller.run()
            except Exception:  # the loop handles API errors itself: this would be a bug
                self.log.exception("telegram: polling failed; starting it again")
                await self.clock.sleep(self.settings.backoff_max)
        if core.accepting:
            self.log.error("telegram: the plugin was switched off after failing too often: no "
                           "more messages are taken from Telegram until Cadenza restarts (they "
                           "wait there)")

    async def _register_commands(self, core: Bot) -> None:
        commands = bot_commands((name, text) for name, text, _ in core.command_list())
        backoff = Backoff(backoff_config(self.settings))
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            try:
                await self.client.set_my_commands(commands)
                return
            except Exception as exc:
                if attempt == COMMAND_ATTEMPTS:
                    self.log.warning("telegram: could not register the bot's commands: %s", exc)
                    return
                await self.clock.sleep(max(0.0, next(backoff)))

    async def close(self, budget: float) -> None:
        """Stop, within ``budget`` seconds (the core's limit for the on_shutdown hook)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget - CLOSE_MARGIN, 0.1)
        for task in [self._task, *self._chores]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.poller is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(CONFIRM_TIMEOUT, deadline - loop.time())):
                    await self.poller.confirm()
        if self.inbound is not None:
            self.inbound.flush_all()  # held pieces of pastes and albums: handed on like the rest
        await self.engine.flush(min(self.settings.flush_timeout, deadline - loop.time()))
        if self.inbound is not None:
            await self.inbound.lanes.close()
        await self.engine.close()
        await self.client.session.close()
