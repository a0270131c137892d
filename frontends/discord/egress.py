"""Discord's transport for the live-message engine: the REST calls, and what each kind of
failure means for the caller.

``Transport`` is a ``cadenza.frontends.live.Transport``: Discord Markdown (``markup``), 2,000
code points a message and Discord's limits (5 sends/edits per 5 s per channel, 50 requests
a second overall; ``limits`` keeps well inside them), channels and threads (a thread is a
channel, so a room of its own). Every message goes out with ``allowed_mentions`` none: agent
output never pings anyone. Buttons are ``ActionButton``s, a ``discord.ui.DynamicItem``: the
client registers it, so a Stop button still works after a restart.

discord.py itself waits out 429s (per route and global) and retries 5xx a few times; what it
gives up on becomes ``Retry`` here and the engine tries again with the newest content.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import discord
from cadenza.api import ChatRef
from cadenza.frontends.discord.markup import MARKDOWN, MAX_MESSAGE
from cadenza.frontends.discord.settings import FRONTEND
from cadenza.frontends.live.split import CODEPOINTS
from cadenza.frontends.live.transport import (
    BadFormat,
    ChatUnavailable,
    Gone,
    Limits,
    Outgoing,
    Rate,
    Rejected,
    Retry,
    SendError,
    upload_size,
)

MAX_UPLOAD = 10 * 1024 * 1024  # what a guild without boosts takes
OVERALL_PER_SECOND = 40  # Discord's global limit is 50 requests a second
TYPING_LASTS = 9.0  # Discord shows "typing" for 10 s
NO_MENTIONS = discord.AllowedMentions.none()
UNKNOWN_MESSAGE, UNKNOWN_CHANNEL, MISSING_PERMISSIONS = 10008, 10003, 50013
# a turn's Stop / Extend, or a question's answer: "cmd:/approve 3f2a1c conversation"
BUTTON = re.compile(r"(?P<action>stop|extend):(?P<turn>\S+)|cmd:(?P<command>/.+)")


def limits(edit_interval: float = 1.0) -> Limits:
    return Limits(message_length=MAX_MESSAGE, units=CODEPOINTS, chat=Rate(edit_interval),
                  overall=Rate(1.0 / OVERALL_PER_SECOND), typing_lasts=TYPING_LASTS,
                  typing_counts=True)


def classify(exc: BaseException) -> SendError:
    """What a failed call means for the caller."""
    if isinstance(exc, discord.RateLimited):
        return Retry(f"rate limited: retry after {exc.retry_after:.2f} s", exc.retry_after,
                     flood=True)
    if isinstance(exc, discord.HTTPException):
        status, code = exc.status, exc.code
        if status == 429:
            return Retry("rate limited (429)", 1.0, flood=True)
        if status >= 500:
            return Retry(f"Discord answered {status}")
        if isinstance(exc, discord.NotFound):
            if code == UNKNOWN_MESSAGE:
                return Gone("unknown message")
            return ChatUnavailable(f"not found ({code})")
        if isinstance(exc, discord.Forbidden):
            return ChatUnavailable(f"forbidden ({code}): {exc.text[:200]}")
        if status == 401:
            return Retry("the bot token was rejected (401 Unauthorized)")
        if status == 413:
            return Rejected("too large for Discord")
        return Rejected(f"{status} ({code}): {exc.text[:200]}")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return Rejected(f"cannot read the file: {exc.strerror or exc}")
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return Retry(f"{type(exc).__name__}: {exc}")
    return Retry(f"{type(exc).__name__}: {exc}")


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=BUTTON.pattern):
    """A turn's Stop or Extend button (``stop:TURN`` / ``extend:TURN``), or a question's
    answer (``cmd:COMMAND``, run as if the presser typed it). Registered with the client
    (``add_dynamic_items``), so a press works whenever it comes; the client's
    ``cadenza_press`` checks the chat and the allowlist."""

    def __init__(self, action: str, target: str, label: str | None = None) -> None:
        super().__init__(discord.ui.Button(
            label=label or action.title(), custom_id=f"{action}:{target}",
            style=discord.ButtonStyle.danger if action == "stop"
            else discord.ButtonStyle.secondary))
        self.action = action
        self.target = target  # the turn id, or the command

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str],
                             /) -> ActionButton:
        return cls(*_action(match))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        press = getattr(interaction.client, "cadenza_press", None)
        if press is not None:
            await press(interaction, self.action, self.target)


def _action(match: re.Match[str]) -> tuple[str, str]:
    return ("cmd", match["command"]) if match["command"] else (match["action"], match["turn"])


def view_of(buttons: tuple[tuple[str, str], ...]) -> discord.ui.View | None:
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for label, data in buttons:
        match = BUTTON.fullmatch(data)
        if match:
            view.add_item(ActionButton(*_action(match), label))
    return view


def room_of(chat: ChatRef) -> tuple[int, int | None]:
    """A Discord chat's room: its thread when it has one (a thread is a channel), else its
    channel."""
    if chat.frontend != FRONTEND:
        raise ValueError(f"{chat.key} is not a Discord chat")
    target = chat.thread_id or chat.chat_id
    if not str(target).isdigit():
        raise ValueError(f"{chat.key} is not a Discord channel id")
    return int(target), None


class Transport:
    """The calls the engine makes. ``plain=True`` sends ``Outgoing.plain``."""

    name = FRONTEND
    markup = MARKDOWN

    def __init__(self, client: discord.Client, limits: Limits,
                 max_upload: int = MAX_UPLOAD) -> None:
        self.client = client
        self.limits = limits
        self.max_upload = max_upload

    def locate(self, chat: ChatRef) -> tuple[int, int | None]:
        return room_of(chat)

    def is_group(self, room: int) -> bool:
        return False

    def _in_server(self, room: int) -> bool:
        """Whether the room is a server's channel or thread (not known: no)."""
        channel = self.client.get_channel(room)
        return channel is not None and getattr(channel, "guild", None) is not None

    def _channel(self, room: int) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(room)

    @staticmethod
    def _content(out: Outgoing, plain: bool) -> str:
        text = out.plain if plain else out.markup
        if len(text) > MAX_MESSAGE:
            if not plain:
                raise BadFormat("the Markdown is longer than Discord takes")
            text = text[:MAX_MESSAGE - 1] + "…"
        return text or "…"

    async def send(self, room: int, thread: int | None, out: Outgoing,
                   plain: bool = False, key: str = "") -> int:
        content = self._content(out, plain)
        view = view_of(out.buttons)
        # discord.py sends every nonce with enforce_nonce: a retry with the same key within
        # a few minutes is answered with the first message, not a copy
        nonce = key or None  # none: discord.py draws one
        mentions = NO_MENTIONS
        if out.notify.isdigit() and self._in_server(room):  # only a mention notifies there
            content = f"<@{out.notify}> {content}"[:MAX_MESSAGE]
            mentions = discord.AllowedMentions(everyone=False, roles=False,
                                               users=[discord.Object(int(out.notify))])
        try:
            if view is not None:
                message = await self._channel(room).send(
                    content, view=view, allowed_mentions=mentions, suppress_embeds=True,
                    nonce=nonce)
            else:
                message = await self._channel(room).send(
                    content, allowed_mentions=mentions, suppress_embeds=True, nonce=nonce)
        except Exception as exc:
            raise classify(exc) from None
        return message.id

    async def send_document(self, room: int, thread: int | None, out: Outgoing,
                            plain: bool = False, key: str = "") -> int:
        assert out.document is not None
        path, name = out.document
        upload_size(path, self.max_upload, "Discord takes")
        try:
            message = await self._channel(room).send(
                self._content(out, plain), file=discord.File(path, filename=name),
                allowed_mentions=NO_MENTIONS, nonce=key or None)
        except discord.Forbidden as exc:
            if exc.code == MISSING_PERMISSIONS:  # no Attach Files: the text still gets through
                raise Rejected("the bot may not attach files in this channel (Attach Files "
                               "permission)") from None
            raise classify(exc) from None
        except Exception as exc:
            raise classify(exc) from None
        return message.id

    async def edit(self, room: int, message_id: int, out: Outgoing,
                   plain: bool = False) -> None:
        content = self._content(out, plain)
        try:
            await self._channel(room).get_partial_message(message_id).edit(
                content=content, view=view_of(out.buttons), allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            raise classify(exc) from None

    async def delete(self, room: int, message_id: int) -> None:
        try:
            await self._channel(room).get_partial_message(message_id).delete()
        except Exception as exc:
            outcome = classify(exc)
            if not isinstance(outcome, Gone):
                raise outcome from None

    async def clear_buttons(self, room: int, message_id: int) -> None:
        try:
            await self._channel(room).get_partial_message(message_id).edit(view=None)
        except Exception as exc:
            raise classify(exc) from None

    async def typing(self, room: int, thread: int | None) -> None:
        try:
            await self.client.http.send_typing(room)
        except Exception as exc:
            raise classify(exc) from None
