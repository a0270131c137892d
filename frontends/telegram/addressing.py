"""Which chat a Telegram message belongs to, whether it is meant for the bot, and where the
engine sends a chat's messages.

In a private chat everything is. In a group only what addresses the bot: a command (not one
for another bot, ``/stop@other_bot``), a mention of the bot (removed from the prompt), or a
reply to one of the bot's messages. A forum topic is a chat of its own: its thread id is part
of the chat reference, so each topic has its own conversation. Going out, a chat reference is
the engine's room (the Telegram chat, whose limits its topics share) and thread (the topic).
Groups have negative ids.
"""

from __future__ import annotations

import re

from aiogram.types import Message, User
from cadenza.api import ChatRef
from cadenza.frontends.telegram.settings import FRONTEND

_COMMAND = re.compile(r"^/[A-Za-z0-9_]+(?:@(\w+))?(?:\s|$)")


def room_of(chat: ChatRef) -> tuple[int, int | None]:
    """The Telegram chat id and forum topic of ``chat``; ValueError when it is not one."""
    try:
        room = int(chat.chat_id)
    except ValueError:
        raise ValueError(f"{chat.key!r} is not a Telegram chat id") from None
    thread = chat.thread_id
    return room, int(thread) if thread and thread.isdigit() else None


def is_group(chat_id: int) -> bool:
    """Groups and supergroups have negative ids (and a limit of their own)."""
    return chat_id < 0


def chat_of(message: Message) -> ChatRef:
    thread = message.message_thread_id if message.is_topic_message else None
    return ChatRef(FRONTEND, str(message.chat.id), str(thread) if thread else None)


def addressed_text(message: Message, me: User) -> str | None:
    """The text meant for the bot, or None when the message is not addressed to it."""
    text = message.text if message.text is not None else message.caption
    return None if text is None else addressed(message, me, text)


def addressed(message: Message, me: User, text: str) -> str | None:
    """``text`` as meant for the bot, or None when ``message`` is not addressed to it (a
    file without a caption is: its text is "", and in a group only a reply counts)."""
    if message.chat.type == "private":
        return text
    username = me.username or ""
    command = _COMMAND.match(text)
    if command:
        target = command.group(1)
        return None if target and target.lower() != username.lower() else text
    if username:
        mention = re.compile(rf"(?<!\w)@{re.escape(username)}\b[,:]?[ \t]?", re.IGNORECASE)
        if mention.search(text):
            return mention.sub("", text).strip()
    reply = message.reply_to_message
    if (reply is not None and reply.from_user is not None and reply.from_user.id == me.id
            and reply.forum_topic_created is None):
        return text
    return None
