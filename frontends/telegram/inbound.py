"""Telegram updates in, ``ChatMessage``s and button presses out to the core.

Two routers, one per concern: text messages, and inline-button presses. Button presses pass
an outer middleware that checks the allowlist first (text messages are checked by the core's
``on_inbound_message`` veto, which this frontend implements). Handlers only hand work to
``Lanes``, which runs it in order per chat and chats independently: a slow command in one
chat never holds up polling or another chat, and an error in one update is logged and ends
there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher, F, Router
from aiogram import Bot as Client
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from core import api
from core.api import Bot, ChatMessage, ChatRef
from frontends.telegram.addressing import addressed_text, chat_of
from frontends.telegram.settings import FRONTEND, TelegramSettings

Job = Callable[[], Awaitable[Any]]


class Lanes:
    """Runs jobs one after another per key; keys run concurrently."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def put(self, key: str, job: Job) -> None:
        self._queues.setdefault(key, deque()).append(job)
        if key not in self._tasks:
            self._tasks[key] = asyncio.ensure_future(self._drain(key))

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except Exception:
                    self.log.exception("telegram: handling an update from %s failed", key)
        finally:
            del self._tasks[key]
            if not queue:
                del self._queues[key]

    async def join(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Inbound:
    """What the handlers need: the core, the allowlist, who the bot is, the lanes."""

    def __init__(self, core: Bot, client: Client, me: User, settings: TelegramSettings,
                 log: logging.Logger) -> None:
        self.core = core
        self.client = client
        self.me = me
        self.settings = settings
        self.log = log
        self.lanes = Lanes(log)

    def message(self, message: Message) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return  # channel posts, anonymous admins, other bots
        chat = chat_of(message)
        text = addressed_text(message, self.me)
        if text is None:
            if message.chat.type == "private" and self.settings.allows(str(user.id)):
                self.lanes.put(chat.key, lambda: self.core.notify(
                    chat, "I can only read text messages (and captions)."))
            return
        inbound = ChatMessage(chat, str(user.id), text, user_name=_name(user),
                              message_id=str(message.message_id))
        self.lanes.put(chat.key, lambda: self.core.handle(inbound))

    def button(self, query: CallbackQuery) -> None:
        action, _, turn_id = (query.data or "").partition(":")
        message = query.message
        if message is None:
            self._answer(FRONTEND, query, "This button is too old to use.")
            return
        thread = message.message_thread_id if isinstance(message, Message) else None
        topic = isinstance(message, Message) and message.is_topic_message
        chat = ChatRef(FRONTEND, str(message.chat.id), str(thread) if topic and thread else None)
        if action == "stop":
            stopped = self.core.stop_turn(turn_id, api.CANCELLED, "stopped with the Stop button")
            self._answer(chat.key, query, "Stopping…" if stopped else "That turn already ended.")
        elif action == "extend":
            self._answer(chat.key, query, "Asking for more time…")
            command = ChatMessage(chat, str(query.from_user.id), f"/extend {turn_id}",
                                  user_name=_name(query.from_user))
            self.lanes.put(chat.key, lambda: self.core.handle(command))
        else:
            self._answer(chat.key, query, "This button does nothing any more.")

    def refuse_button(self, query: CallbackQuery) -> None:
        self.log.warning("telegram: user %s (%s) pressed a button but is not in allowed_users",
                         query.from_user.id, _name(query.from_user))
        self._answer(FRONTEND, query, "Only the people this bot's operator allowed can use it.")

    def _answer(self, key: str, query: CallbackQuery, text: str) -> None:
        async def answer() -> None:
            try:
                await self.client.answer_callback_query(query.id, text=text)
            except Exception as exc:  # the press is handled; only the toast is lost
                self.log.info("telegram: could not answer a button press: %s", exc)

        self.lanes.put(f"{key}#answers", answer)


class ButtonAuth(BaseMiddleware):
    """Outer middleware: a press by someone not allowed goes no further."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        inbound: Inbound = data["inbound"]
        if isinstance(event, CallbackQuery) and not inbound.settings.allows(
                str(event.from_user.id)):
            inbound.refuse_button(event)
            return None
        return await handler(event, data)


def messages_router() -> Router:
    router = Router(name="messages")

    @router.message()
    async def on_message(message: Message, inbound: Inbound) -> None:
        inbound.message(message)

    return router


def buttons_router() -> Router:
    router = Router(name="buttons")
    router.callback_query.outer_middleware(ButtonAuth())

    @router.callback_query(F.data)
    async def on_button(query: CallbackQuery, inbound: Inbound) -> None:
        inbound.button(query)

    return router


def dispatcher() -> Dispatcher:
    dp = Dispatcher(name="cadenza")
    dp.include_routers(messages_router(), buttons_router())
    return dp


def _name(user: User) -> str:
    return f"@{user.username}" if user.username else user.full_name
