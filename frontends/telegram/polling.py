"""Long polling that keeps going and never drops an update.

Updates are fetched in order and handed one by one to the dispatcher; an update counts as
done (its offset is confirmed) only after it was handed over, and an error while handling
one is logged and never stops the loop. Network errors, 5xx, a hanging request and a restart
of the API server are retried with backoff. Once Cadenza stops taking messages the loop stops
fetching and leaves the rest unconfirmed: Telegram keeps them for the next start. The poll
reports to the engine's ``Reachability``: while Telegram is down, it is one of the calls that
find out when it is back, and its first answer lets every waiting chat catch up at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramConflictError, TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.backoff import Backoff
from cadenza.frontends.live.reachability import Reachability
from cadenza.frontends.telegram.client import backoff_config
from cadenza.frontends.telegram.settings import TelegramSettings

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]


class Poller:
    def __init__(self, bot: Bot, dispatcher: Dispatcher, settings: TelegramSettings,
                 clock: Clock, log: logging.Logger, accepting: Callable[[], bool],
                 reachability: Reachability, **context: Any) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.settings = settings
        self.clock = clock
        self.log = log
        self.accepting = accepting
        self.reachability = reachability
        self.context = context  # passed to handlers that ask for it by name
        self.offset: int | None = None  # the first update not handed over yet
        self.fetched = 0

    async def run(self) -> None:
        backoff = Backoff(backoff_config(self.settings))
        wait = self.settings.poll_timeout
        request_timeout = int(wait + self.settings.request_timeout) + 1
        while self.accepting():
            request = GetUpdates(offset=self.offset, timeout=wait,
                                 allowed_updates=ALLOWED_UPDATES)
            try:
                updates = await self.bot(request, request_timeout=request_timeout)
            except TelegramConflictError:
                delay = self.settings.backoff_max
                self.log.error("telegram: another program is polling with this bot token "
                               "(409 Conflict); retrying in %.0f s", delay)
                await self.clock.sleep(delay)
                continue
            except TelegramUnauthorizedError:
                delay = self.settings.backoff_max
                self.log.error("telegram: the token in %s was rejected (401); retrying in "
                               "%.0f s", self.settings.token_source, delay)
                await self.clock.sleep(delay)
                continue
            except Exception as exc:
                self.reachability.failed()
                delay = max(0.0, next(backoff))
                self.log.warning("telegram: getUpdates failed (%s: %s); retrying in %.1f s",
                                 type(exc).__name__, exc, delay)
                await self.reachability.wait(delay)
                continue
            self.reachability.answered()
            if backoff.counter:
                self.log.info("telegram: receiving updates again")
                backoff.reset()
            for update in updates:
                if not self.accepting():
                    return  # unconfirmed: handled at the next start
                await self.feed(update)
                self.offset = update.update_id + 1
                self.fetched += 1

    async def feed(self, update: Update) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update, **self.context)
        except Exception:
            self.log.exception("telegram: update %s could not be handled; going on",
                               update.update_id)

    async def confirm(self) -> None:
        """Tell Telegram that everything handed over is done, so the next start does not
        see it again (getUpdates confirms by offset only on the next call)."""
        if self.offset is None:
            return
        try:
            await self.bot(GetUpdates(offset=self.offset, limit=1, timeout=0),
                           request_timeout=int(self.settings.request_timeout) + 1)
        except Exception as exc:
            self.log.warning("telegram: could not confirm the last updates (%s); they may be "
                             "handled again at the next start", exc)
