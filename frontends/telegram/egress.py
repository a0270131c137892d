"""Telegram's transport for the live-message engine: the Bot API calls, and what each kind
of failure means for the caller.

``Api`` is a ``cadenza.frontends.live.Transport``: Telegram HTML (``markup``), 4,096 UTF-16
code units a message and Telegram's flood limits (``limits``), chats, forum topics and groups
(``locate``, ``is_group``). Every call either succeeds or raises one of the engine's
``SendError``s, which say what to do next: wait and try again (``Retry``: 429 with its
``retry_after``, network errors, 5xx, a request that hung past the client timeout), send a
new message instead of editing (``Gone``), send the same thing as plain text
(``BadFormat``), send to the chat instead of a deleted topic (``NoThread``), give up on this
message (``Rejected``; also a document too large for Telegram, or unreadable, or a file a
group's permissions refuse: an image it takes no photos of goes as a document) or on the whole
chat (``ChatUnavailable``: the bot was blocked or removed), follow a group that became a
supergroup (``Migrated``). "Message is not modified" is a success. Nothing here sleeps: the
engine decides when to retry, with fresh content. Telegram has no idempotency key, but a
chat's message ids count up: ``probe`` lets the engine find the message of a send whose
answer was lost.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
)
from cadenza.api import ChatRef
from cadenza.frontends.live.split import UTF16
from cadenza.frontends.live.transport import (
    BadFormat,
    ChatUnavailable,
    Gone,
    Limits,
    Migrated,
    NoThread,
    NotModified,
    Outgoing,
    Rate,
    Rejected,
    Retry,
    SendError,
    upload_size,
)
from cadenza.frontends.telegram.addressing import is_group, room_of
from cadenza.frontends.telegram.markup import HTML as TELEGRAM_HTML
from cadenza.frontends.telegram.settings import FRONTEND
from cadenza.frontends.telegram.views import MAX_MESSAGE

HTML = "HTML"
MAX_UPLOAD = 50 * 1024 * 1024  # what the cloud Bot API takes from a bot (a local server: 2 GB)
MAX_PHOTO = 10 * 1024 * 1024  # what sendPhoto takes; a bigger image goes as a document
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")  # shown inline as a photo
CLOUD_API = "https://api.telegram.org"
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
GROUP_BURST = 3  # calls a quiet group may make at once before the per-minute pace applies
GLOBAL_BURST = 5
TYPING_LASTS = 5.0  # seconds Telegram shows "typing" after one sendChatAction


def limits(edit_interval: float = 1.0, group_messages_per_minute: float = 20,
           messages_per_second: float = 28) -> Limits:
    """Telegram's limits, paced a little inside what Telegram allows (the settings' numbers)."""
    return Limits(
        message_length=MAX_MESSAGE, units=UTF16,
        chat=Rate(edit_interval),
        group=Rate(60.0 / group_messages_per_minute, GROUP_BURST),
        overall=Rate(1.0 / messages_per_second, GLOBAL_BURST),
        typing_lasts=TYPING_LASTS,
    )


LIMITS = limits()


_GONE = ("message to edit not found", "message_id_invalid", "message can't be edited",
         "message to delete not found")
_FORMAT = ("can't parse entities", "unsupported start tag", "can't find end")
_THREAD = ("message thread not found", "topic_deleted", "topic_closed")
_MEDIA_RIGHTS = re.compile(r"not enough rights to send (photos|documents)", re.IGNORECASE)
_CHAT = ("chat not found", "have no rights to send", "not enough rights", "chat_write_forbidden")


def classify(exc: BaseException) -> SendError:
    """What a failed call means for the caller."""
    if isinstance(exc, TelegramRetryAfter):
        return Retry(f"flood control: retry after {exc.retry_after} s", exc.retry_after,
                     flood=True)
    if isinstance(exc, TelegramEntityTooLarge):
        return Rejected("too large for Telegram")
    if isinstance(exc, OSError):  # a file to upload could not be read
        return Rejected(f"cannot read the file: {exc.strerror or exc}")
    if isinstance(exc, TelegramMigrateToChat):
        return Migrated("the group became a supergroup", exc.migrate_to_chat_id)
    if isinstance(exc, TelegramForbiddenError):
        return ChatUnavailable(exc.message)
    if isinstance(exc, TelegramUnauthorizedError):
        return Retry("the bot token was rejected (401 Unauthorized)")
    if isinstance(exc, TelegramBadRequest):
        text = exc.message.lower()
        if "message is not modified" in text:
            return NotModified(exc.message)
        for words, outcome in ((_GONE, Gone), (_FORMAT, BadFormat), (_THREAD, NoThread),
                               (_CHAT, ChatUnavailable)):
            if any(word in text for word in words):
                return outcome(exc.message)
        return Rejected(exc.message)
    if isinstance(exc, TelegramAPIError):  # network errors, timeouts, 5xx, 404, 409
        return Retry(f"{type(exc).__name__}: {exc.message}")
    if isinstance(exc, AiogramError):  # an answer that is not JSON (a proxy's error page)
        return Retry(f"unreadable answer: {type(exc).__name__}")
    return Retry(f"{type(exc).__name__}: {exc}")


def _no_rights(exc: BaseException) -> str:
    """What a group's permissions keep the bot from sending ("photos", "documents"), when
    that is why a send failed; "" otherwise."""
    if isinstance(exc, TelegramBadRequest):
        found = _MEDIA_RIGHTS.search(exc.message)
        if found:
            return found.group(1).lower()
    return ""


def keyboard(buttons: tuple[tuple[str, str], ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    row = [InlineKeyboardButton(text=label, callback_data=data) for label, data in buttons]
    return InlineKeyboardMarkup(inline_keyboard=[row])


class Api:
    """The calls the engine makes. ``plain=True`` sends ``Outgoing.plain`` unformatted."""

    name = FRONTEND
    markup = TELEGRAM_HTML

    def __init__(self, bot: Bot, max_upload: int | None = None,
                 limits: Limits = LIMITS) -> None:
        self.bot = bot
        self.max_upload = max_upload  # bytes a document may have; None: the server decides
        self.limits = limits  # pacing from the [telegram] settings

    def locate(self, chat: ChatRef) -> tuple[int, int | None]:
        return room_of(chat)

    def is_group(self, room: int) -> bool:
        return is_group(room)

    async def send(self, chat_id: int, thread_id: int | None, out: Outgoing,
                   plain: bool = False, key: str = "") -> int:
        try:
            message = await self.bot.send_message(
                chat_id=chat_id, message_thread_id=thread_id,
                text=out.plain if plain else out.markup, parse_mode=None if plain else HTML,
                reply_markup=keyboard(out.buttons), link_preview_options=NO_PREVIEW,
            )
        except Exception as exc:
            raise classify(exc) from None
        return message.message_id

    async def send_document(self, chat_id: int, thread_id: int | None, out: Outgoing,
                            plain: bool = False, key: str = "") -> int:
        """Upload ``out.document`` (multipart) with ``out`` as its caption: an image of up to
        10 MB as a photo (shown in the chat; its caption is edited like a document's), any
        other file as a document."""
        assert out.document is not None
        path, name = out.document
        size = upload_size(path, self.max_upload, "Telegram lets a bot upload")
        upload = FSInputFile(path, filename=name)
        fields: dict[str, Any] = {
            "chat_id": chat_id, "message_thread_id": thread_id,
            "caption": out.plain if plain else out.markup, "parse_mode": None if plain else HTML}
        try:
            if name.lower().endswith(PHOTO_SUFFIXES) and size <= MAX_PHOTO:
                try:
                    return (await self.bot.send_photo(photo=upload, **fields)).message_id
                except TelegramBadRequest as exc:
                    if _no_rights(exc) != "photos":
                        raise
                    # a group that takes no photos may take documents
            message = await self.bot.send_document(document=upload, **fields)
        except Exception as exc:
            if _no_rights(exc):  # the chat takes no files from the bot, but texts still
                raise Rejected(f"this chat does not let the bot send {_no_rights(exc)}") from None
            raise classify(exc) from None
        return message.message_id

    async def edit(self, chat_id: int, message_id: int, out: Outgoing,
                   plain: bool = False) -> None:
        with contextlib.suppress(NotModified):
            await self._edit(chat_id, message_id, out, plain)

    async def probe(self, chat_id: int, message_id: int, out: Outgoing, plain: bool) -> bool:
        """Whether the message is the bot's, showing exactly ``out``: the same edit, which
        Telegram answers "message is not modified" only then, and refuses for anyone else's
        message ("message can't be edited") or a missing one."""
        try:
            await self._edit(chat_id, message_id, out, plain)
        except NotModified:
            return True
        except Retry:
            raise
        except SendError:
            return False
        return False  # the bot's, but it showed something else (and now shows ``out``)

    async def _edit(self, chat_id: int, message_id: int, out: Outgoing, plain: bool) -> None:
        """Edit the text (or a document's caption); raises ``NotModified`` for an edit that
        would change nothing."""
        text, mode = (out.plain, None) if plain else (out.markup, HTML)
        try:
            if out.document is not None:
                await self.bot.edit_message_caption(
                    chat_id=chat_id, message_id=message_id, caption=text, parse_mode=mode,
                    reply_markup=keyboard(out.buttons))
            else:
                await self.bot.edit_message_text(
                    chat_id=chat_id, message_id=message_id, text=text, parse_mode=mode,
                    reply_markup=keyboard(out.buttons), link_preview_options=NO_PREVIEW)
        except Exception as exc:
            raise classify(exc) from None

    async def delete(self, chat_id: int, message_id: int) -> None:
        try:
            await self.bot.delete_message(chat_id=chat_id, message_id=message_id)
        except Exception as exc:
            outcome = classify(exc)
            if not isinstance(outcome, Gone | NotModified):
                raise outcome from None

    async def clear_buttons(self, chat_id: int, message_id: int) -> None:
        try:
            await self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id)
        except Exception as exc:
            outcome = classify(exc)
            if not isinstance(outcome, NotModified):
                raise outcome from None

    async def typing(self, chat_id: int, thread_id: int | None) -> None:
        try:
            await self.bot.send_chat_action(chat_id=chat_id, action="typing",
                                            message_thread_id=thread_id)
        except Exception as exc:
            raise classify(exc) from None
