"""The aiogram client: its HTTP session, getting connected, and keeping the token secret.

aiogram does not retry its first ``getMe``, so ``connect`` does: with backoff, for as long as
the API is unreachable. It then deletes any webhook (which would make getUpdates fail) while
keeping the updates that arrived while Cadenza was down. ``bot_commands`` is what
setMyCommands registers. The token is part of every request URL; ``Redact`` keeps it out of
log records, ours and aiogram's alike.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.types import BotCommand, User
from aiogram.utils.backoff import Backoff, BackoffConfig
from cadenza.frontends.telegram.settings import TelegramSettings

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

AIOGRAM_LOGGERS = ("aiogram", "aiogram.dispatcher", "aiogram.event", "aiogram.middlewares",
                   "aiogram.webhook", "aiogram.scene")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


class Session(AiohttpSession):
    """aiogram's session, minus the 250 ms pause its ``close`` takes for TLS connections to
    wind down when the API is plain HTTP (a local Bot API server)."""

    async def close(self) -> None:
        if self.api.base.startswith("https://"):
            await super().close()
        elif self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(settings: TelegramSettings) -> Bot:
    """The client; creating it touches no network."""
    api = TelegramAPIServer.from_base(settings.api_base, is_local=False)
    session = Session(api=api, timeout=settings.request_timeout)
    return Bot(settings.token, session=session)


class Redact(logging.Filter):
    """Replaces the bot token in a record's message and traceback with ``<token>``."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secret:
            return True
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<token>"), ()
        if record.exc_info and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = text.replace(self.secret, "<token>")
        return True

    def install(self, loggers: Iterable[logging.Logger]) -> None:
        for logger in loggers:
            if not any(isinstance(f, Redact) and f.secret == self.secret
                       for f in logger.filters):
                logger.addFilter(self)


def backoff_config(settings: TelegramSettings) -> BackoffConfig:
    return BackoffConfig(min_delay=settings.backoff_min, max_delay=settings.backoff_max,
                         factor=2.0, jitter=settings.backoff_min / 10)


async def connect(bot: Bot, settings: TelegramSettings, clock: Clock,
                  log: logging.Logger) -> User:
    """getMe and deleteWebhook, retried with backoff until the API answers both."""
    backoff = Backoff(backoff_config(settings))
    while True:
        try:
            me = await bot.me()
            await bot.delete_webhook(drop_pending_updates=False)
            return me
        except TelegramUnauthorizedError:
            delay = settings.backoff_max
            log.error("telegram: the API at %s rejected the token in %s (401 Unauthorized); "
                      "check it with @BotFather; retrying in %.0f s", settings.api_base,
                      settings.token_source, delay)
        except Exception as exc:
            delay = max(0.0, next(backoff))
            log.warning("telegram: cannot reach the API at %s (%s: %s); retrying in %.1f s",
                        settings.api_base, type(exc).__name__, exc, delay)
        await clock.sleep(delay)


def bot_commands(commands: Iterable[tuple[str, str]]) -> list[BotCommand]:
    """``setMyCommands`` entries for the core's and plugins' commands Telegram can take."""
    entries = []
    for name, text in commands:
        if _COMMAND_NAME.fullmatch(name):
            description = (text or name).strip()[:256] or name
            entries.append(BotCommand(command=name, description=description))
    return entries[:100]
