"""Telegram updates in, ``ChatMessage``s and button presses out to the core.

Every update, of whatever kind (messages, edits, captions, button presses, kinds added to
the Bot API later), first passes the ``Gate``: only a person on the allowlist gets past it,
and a failure while checking is a refusal (the core's ``on_inbound_message`` veto, which this
frontend also implements, checks again). Then two routers, one per concern: messages, and
inline-button presses. A message sent via an inline bot is not run, and a forwarded one is
kept to be quoted into its sender's next prompt (``forwards``), and the pieces of a long
paste become one prompt (the engine's ``Pastes``; in a group, a piece after the first counts
as addressed to the bot like the first). A file (a photo, a document, ...) becomes a message
with attachments, its caption the text, and the pieces of an album become one such message
(``files``); a stranger's file is refused at the gate like anything else, so it is never
downloaded, and a forwarded file is quoted like any forward (its caption), not taken.
Handlers only hand work to ``Lanes``, which runs it in order per chat and chats
independently: a slow command in one chat never holds up polling or another chat, and an
error in one update is logged and ends there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher, F, Router
from aiogram import Bot as Client
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User
from cadenza import api
from cadenza.api import Bot, ChatMessage, ChatRef, Clock
from cadenza.frontends.live.lanes import Lanes
from cadenza.frontends.live.paste import Pastes
from cadenza.frontends.telegram.addressing import addressed, addressed_text, chat_of
from cadenza.frontends.telegram.auth import Access, Refusals, refusal_text
from cadenza.frontends.telegram.files import Albums, attachments_of
from cadenza.frontends.telegram.forwards import Forwards, forwarded, origin_name
from cadenza.frontends.telegram.settings import FRONTEND
from cadenza.frontends.telegram.views import STYLE

Job = Callable[[], Awaitable[Any]]


class Inbound:
    """What the handlers need: the core, the allowlist, who the bot is, the lanes."""

    def __init__(self, core: Bot, client: Client, me: User, access: Access, refusals: Refusals,
                 clock: Clock, log: logging.Logger, *, merge_pastes: bool = True,
                 max_download: int | None = None) -> None:
        self.core = core
        self.client = client
        self.me = me
        self.access = access
        self.refusals = refusals
        self.log = log
        self.lanes = Lanes(log)
        self.forwards = Forwards(clock)
        self.via_bot_told = Refusals(clock)  # "sent via a bot": once an hour per user
        self.pastes = Pastes(clock, STYLE.message_length, self._prompt, units=STYLE.units,
                             enabled=merge_pastes)
        self.albums = Albums(clock, self._prompt)
        self.max_download = max_download  # bytes a file may have; None: the server decides

    def _put(self, key: str, job: Job) -> None:
        """Run ``job`` in the chat's lane, after any paste or album held for the chat."""
        self._flush(key)
        self.lanes.put(key, job)

    def _flush(self, key: str) -> None:
        self.pastes.flush(key)
        self.albums.flush(key)

    def flush_all(self) -> None:
        """Hand on everything held (pieces of pastes and albums), as at shutdown."""
        self.pastes.flush_all()
        self.albums.flush_all()

    def _prompt(self, message: ChatMessage) -> None:
        self.lanes.put(message.chat.key, lambda: self.core.handle(message))

    # --- the gate -------------------------------------------------------------------

    def admit(self, update: Update) -> bool:
        """Whether ``update`` may go any further: it must come from a person on the
        allowlist, whatever its kind. Anything else, and any failure here, is a refusal."""
        try:
            event = _event_of(update)
            user = _sender(event)
            if user is not None and not user.is_bot and self.access.allows(str(user.id)):
                return True
            self._refuse(update, event, user)
        except Exception:
            if self.refusals.due("#failures"):  # once an hour: a bug must not flood the log
                self.log.exception("telegram: checking update %s failed; refused it",
                                   update.update_id)
        return False

    def _refuse(self, update: Update, event: Any, user: User | None) -> None:
        if user is None or user.is_bot:
            return  # channel posts, anonymous admins, other bots: nobody to tell
        if (isinstance(event, Message) and event.chat.type != "private"
                and addressed_text(event, self.me) is None):
            return  # a group's own conversation (when the bot reads it all): not for us
        user_id = str(user.id)
        if not self.refusals.due(user_id):
            return
        skipped = self.refusals.take_suppressed()
        more = f" ({skipped} other refused update(s) since the last one logged)" if skipped else ""
        if isinstance(event, CallbackQuery):
            self.log.warning("telegram: refused user %s (%s): pressed a button but is not in "
                             "[telegram] allowed_users%s", user_id, _name(user), more)
            self._answer(FRONTEND, event, "Only the people this bot's operator allowed can use "
                         "it.")
            return
        chat = chat_of(event) if isinstance(event, Message) else None
        self.log.warning("telegram: refused user %s (%s) in chat %s: not in [telegram] "
                         "allowed_users%s", user_id, _name(user),
                         chat.chat_id if chat else "?", more)
        if chat is not None and event is update.message:
            self._put(chat.key, lambda: self.core.notify(
                chat, refusal_text(user_id), kind="refusal"))

    # --- messages -------------------------------------------------------------------

    def message(self, message: Message) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return  # channel posts, anonymous admins, other bots
        chat = chat_of(message)
        user_id = str(user.id)
        files = () if forwarded(message) else attachments_of(message, self.client,
                                                              self.max_download)
        text = addressed_text(message, self.me)
        if text is None and files and message.caption is None:
            text = addressed(message, self.me, "")
        if text is None:
            typed = message.text if message.text is not None else message.caption
            if files and self.albums.continues(chat.key, user_id, message.media_group_id):
                text = typed or ""  # the next piece of an album that addressed the bot
            elif typed is not None and self.pastes.continues(chat.key, user_id, typed):
                text = typed  # the next piece of a paste that addressed the bot
            elif message.chat.type == "private":
                self._say(chat, "I can only read text messages, captions and files.")
                return
            else:
                return
        if message.via_bot is not None:
            if self.via_bot_told.due(f"{chat.key}|{user_id}"):
                via = f"@{message.via_bot.username}" if message.via_bot.username else "a bot"
                self._say(chat, f"That message was sent via {via}, so I do not run it as a "
                          "prompt. If you meant it, type or paste it yourself.")
            return
        if forwarded(message):
            self._say(chat, self.forwards.add(chat.key, user_id, origin_name(message), text))
            return
        typed = text
        if not text.lstrip().startswith(("/", "@")):
            text = self.forwards.take(chat.key, user_id) + text
        inbound = ChatMessage(chat, user_id, text, user_name=_name(user),
                              message_id=str(message.message_id), attachments=files)
        if files and message.media_group_id is not None:
            self.pastes.flush(chat.key)
            self.albums.add(message.media_group_id, inbound)
        elif files or not self.pastes.offer(inbound, typed):
            self._flush(chat.key)
            self._prompt(inbound)

    def edited(self, message: Message) -> None:
        """An edit of a message sent earlier: it never runs anything again."""
        if message.chat.type == "private" and message.from_user is not None:
            self._say(chat_of(message), "Edits of a sent message are not picked up; send the "
                      "corrected prompt as a new message.")

    def _say(self, chat: ChatRef, text: str) -> None:
        self._put(chat.key, lambda: self.core.notify(chat, text))

    # --- buttons --------------------------------------------------------------------

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
            runner = self.core.running(turn_id)
            stopped = (runner is not None and runner.turn.chat == chat
                       and self.core.stop_turn(turn_id, api.CANCELLED,
                                               "stopped with the Stop button"))
            self._answer(chat.key, query, "Stopping…" if stopped else "That turn already ended.")
        elif action == "extend":
            self._answer(chat.key, query, "Asking for more time…")
            command = ChatMessage(chat, str(query.from_user.id), f"/extend {turn_id}",
                                  user_name=_name(query.from_user))
            self._put(chat.key, lambda: self.core.handle(command))
        elif action == "cmd" and turn_id.startswith("/"):  # a question's answer, as typed
            self._answer(chat.key, query, turn_id)
            typed = ChatMessage(chat, str(query.from_user.id), turn_id,
                                user_name=_name(query.from_user))
            self._put(chat.key, lambda: self.core.handle(typed))
        else:
            self._answer(chat.key, query, "This button does nothing any more.")

    def _answer(self, key: str, query: CallbackQuery, text: str) -> None:
        async def answer() -> None:
            try:
                await self.client.answer_callback_query(query.id, text=text)
            except Exception as exc:  # the press is handled; only the toast is lost
                self.log.info("telegram: could not answer a button press: %s", exc)

        self.lanes.put(f"{key}#answers", answer)


class Gate(BaseMiddleware):
    """Outer middleware of every update: nothing from someone not allowed goes further."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        inbound: Inbound = data["inbound"]
        if not isinstance(event, Update) or not inbound.admit(event):
            return None
        return await handler(event, data)


def messages_router() -> Router:
    router = Router(name="messages")

    @router.message()
    async def on_message(message: Message, inbound: Inbound) -> None:
        inbound.message(message)

    @router.edited_message()
    async def on_edited(message: Message, inbound: Inbound) -> None:
        inbound.edited(message)

    return router


def buttons_router() -> Router:
    router = Router(name="buttons")

    @router.callback_query(F.data)
    async def on_button(query: CallbackQuery, inbound: Inbound) -> None:
        inbound.button(query)

    return router


def dispatcher() -> Dispatcher:
    dp = Dispatcher(name="cadenza")
    dp.update.outer_middleware(Gate())
    dp.include_routers(messages_router(), buttons_router())
    return dp


def _event_of(update: Update) -> Any:
    """The one object an update carries (a message, a button press, ...), whatever its kind;
    None for a kind this aiogram does not know."""
    for name in type(update).model_fields:
        if name != "update_id" and (value := getattr(update, name, None)) is not None:
            return value
    return None


def _sender(event: Any) -> User | None:
    """Who caused the update, if a person did."""
    user = getattr(event, "from_user", None)
    if user is None:
        user = getattr(event, "user", None)
    return user if isinstance(user, User) else None


def _name(user: User) -> str:
    return f"@{user.username}" if user.username else user.full_name
