"""A fake Telegram Bot API server for driving the real aiogram client in tests.

The server speaks the HTTP API at ``{base_url}/bot{token}/{method}`` the way aiogram uses
it (form fields, JSON-encoded non-string values), keeps chats, messages and the update
queue in memory, and lets tests inject updates, script faults and enforce flood limits.

Typical use::

    async with FakeTelegramServer() as server:
        bot = server.make_bot()
        server.push_text(chat_id=42, user_id=42, text="/start")
        reply = await server.wait_for(lambda: server.bot_messages(42))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import mimetypes
import re
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from tests.fakes.local_server import Dropped, LocalServer

JSON = dict[str, Any]

# aiogram refuses tokens that are not "<digits>:<secret>".
DEFAULT_TOKEN = "123456789:AAFakeTokenForCadenzaTests_0123456789"
MAX_TEXT_UTF16 = 4096
MAX_CAPTION_UTF16 = 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what a bot may upload through the cloud Bot API
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # what sendPhoto takes
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # what getFile lets a bot download
THUMBNAIL_SIDE = 90  # the small size Telegram adds to every photo
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)
# Telegram only sends these when asked for them explicitly.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
BUTTON_ACTIONS = frozenset(
    [
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ]
)

# How form values are decoded: aiogram sends strings raw and everything else JSON-encoded,
# so a field's type has to come from its name ("123" is a valid message text).
_JSON_FIELDS = frozenset(
    [
        "reply_markup",
        "entities",
        "allowed_updates",
        "commands",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "caption_entities",
    ]
)
_INT_FIELDS = frozenset(
    [
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "message_thread_id",
        "cache_time",
        "user_id",
        "reply_to_message_id",
    ]
)
_BOOL_FIELDS = frozenset(
    [
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
    ]
)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------- errors, faults


class ApiError(Exception):
    """An error answer in Telegram's JSON shape."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour for one call; build with the classmethods."""

    kind: Literal["error", "drop", "hang"]
    status: int = 0
    description: str = ""
    parameters: JSON | None = None
    after_processing: bool = False

    @classmethod
    def retry_after(cls, seconds: int) -> Fault:
        error = too_many_requests(seconds)
        return cls("error", error.status, error.description, error.parameters)

    @classmethod
    def server_error(cls, status: int = 500, description: str = "Internal Server Error") -> Fault:
        return cls("error", status, description)

    @classmethod
    def bad_request(cls, description: str) -> Fault:
        """A 400 with ``description`` verbatim (include the "Bad Request: " prefix yourself)."""
        return cls("error", 400, description)

    @classmethod
    def error(cls, status: int, description: str, parameters: JSON | None = None) -> Fault:
        return cls("error", status, description, parameters)

    @classmethod
    def drop(cls, *, after_processing: bool = False) -> Fault:
        """Close the connection unanswered; ``after_processing`` runs the method first."""
        return cls("drop", after_processing=after_processing)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer until ``release_hangs()`` (then answer normally) or the server goes down."""
        return cls("hang")

    def as_error(self) -> ApiError:
        return ApiError(self.status, self.description, self.parameters)


@dataclass(frozen=True)
class Upload:
    """A file uploaded with a call (multipart/form-data)."""

    filename: str | None
    data: bytes = field(repr=False)


# --------------------------------------------------------------------------- records

CallOutcome = Literal["pending", "hanging", "answered", "dropped", "cancelled"]


@dataclass
class ApiCall:
    """One HTTP request to the API, as logged."""

    method: str
    params: JSON
    token: str
    at: float
    status: int | None = None
    response: JSON | None = None
    outcome: CallOutcome = "pending"
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def description(self) -> str | None:
        return None if self.response is None else self.response.get("description")


@dataclass
class StoredMessage:
    """A message in a chat (sent by the bot or pushed as a user's).

    ``history`` is the sent text followed by the text of each successful editMessageText;
    ``source`` and ``parse_mode`` are what the latest send/edit passed in.
    """

    chat_id: int
    message_id: int
    sender_id: int
    from_bot: bool
    date: int
    text: str
    entities: list[JSON] = field(default_factory=list)
    reply_markup: JSON | None = None
    message_thread_id: int | None = None
    reply_to_message_id: int | None = None
    source: str = ""
    parse_mode: str | None = None
    history: list[str] = field(default_factory=list)
    deleted: bool = False
    edit_date: int | None = None
    document: JSON | None = None  # a document: file_id, file_name, mime_type, file_size
    photo: list[JSON] | None = None  # a photo's sizes, smallest first (the last is the file)
    data: bytes | None = field(default=None, repr=False)  # the document's or photo's bytes
    fields: JSON = field(default_factory=dict)  # pushed with the message as they are
    is_caption: bool = False  # ``text`` is the caption of a document or photo

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append(self.text)

    @property
    def buttons(self) -> list[JSON]:
        """Inline keyboard buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass
class _File:
    """A file the server holds (``getFile`` and the download route)."""

    file_id: str
    unique_id: str
    data: bytes = field(repr=False)

    @property
    def path(self) -> str:
        return f"files/{self.unique_id}"

    def json(self, **more: Any) -> JSON:
        return {"file_id": self.file_id, "file_unique_id": self.unique_id,
                "file_size": len(self.data), **more}


@dataclass
class _Chat:
    info: JSON
    messages: list[StoredMessage] = field(default_factory=list)
    by_id: dict[int, StoredMessage] = field(default_factory=dict)
    next_id: int = 1


@dataclass
class _CallbackQuery:
    update_id: int
    answer: JSON | None = None


# --------------------------------------------------------------------------- entity parsing


class EntityParseError(ValueError):
    """The reason Telegram gives after "can't parse entities: "."""


class UnsupportedParseMode(ValueError):
    pass


# tdlib's is_space; NUL doubles as its end-of-text marker.
_SPACES = frozenset(" \t\r\n\v\0")
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class _Out:
    """Parsed text under construction, with its length in UTF-16 code units."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.u16 = 0

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.u16 += utf16_len(chunk)

    def since(self, part: int) -> str:
        return "".join(self.parts[part:])

    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class _Open:
    """An entity whose end has not been seen yet."""

    kind: str
    start: int  # UTF-16 offset in the output
    part: int  # index into _Out.parts
    src_index: int
    attrs: dict[str, str] = field(default_factory=dict)


class _Scanner:
    """Shared cursor and output handling for the three parse modes."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.out = _Out()
        self.stack: list[_Open] = []
        self.entities: list[JSON] = []

    def ch(self, k: int) -> str:
        return self.src[k] if k < len(self.src) else "\0"

    def byte(self, k: int) -> int:
        return len(self.src[:k].encode())

    def error(self, what: str, k: int) -> EntityParseError:
        return EntityParseError(f"{what} at byte offset {self.byte(k)}")

    def open(self, kind: str, src_index: int, attrs: dict[str, str] | None = None) -> None:
        self.stack.append(_Open(kind, self.out.u16, len(self.out.parts), src_index, attrs or {}))

    def emit(self, kind: str, start: int, **extra: str) -> None:
        if self.out.u16 > start:
            length = self.out.u16 - start
            self.entities.append({"type": kind, "offset": start, "length": length, **extra})

    def pre_header(self) -> str | None:
        """After an opening ```: read the language tag and skip one line break."""
        end = self.i
        while self.ch(end) not in _SPACES and self.ch(end) != "`":
            end += 1
        language = None
        if end != self.i and end < len(self.src) and self.src[end] != "`":
            language, self.i = self.src[self.i : end], end
        first, second = self.ch(self.i), self.ch(self.i + 1)
        if first in ("\r", "\n"):
            self.i += 2 if second in ("\r", "\n") and second != first else 1
        return language

    def result(self) -> tuple[str, list[JSON]]:
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return self.out.text(), entities


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def decode_html_entity(src: str, i: int) -> tuple[str, int] | None:
    """Decode the character reference at ``src[i] == "&"`` like tdlib; None keeps a literal &."""
    k = i + 1
    if src.startswith("#", k):
        k += 1
        hexadecimal = src.startswith("x", k)
        k += hexadecimal
        digits = string.hexdigits if hexadecimal else string.digits
        start = k
        while k < len(src) and src[k] in digits:
            k += 1
        if k == start:
            return None
        code = int(src[start:k], 16 if hexadecimal else 10)
        if code == 0 or code >= 0x10FFFF or 0xD800 <= code < 0xE000:
            return None
        char = chr(code)
    else:
        start = k
        while k < len(src) and src[k].isascii() and src[k].isalpha():
            k += 1
        if (named := _NAMED_HTML_ENTITIES.get(src[start:k])) is None:
            return None
        char = named
    return char, k + src.startswith(";", k)


def _is_name_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in ".-")


class _HtmlParser(_Scanner):
    """Port of tdlib's parse_html, including its error wording."""

    def parse(self) -> tuple[str, list[JSON]]:
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "&" and (decoded := decode_html_entity(self.src, self.i)):
                self.out.add(decoded[0])
                self.i = decoded[1]
            elif c != "<":
                self.out.add(c)
                self.i += 1
            elif self.ch(self.i + 1) == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            name = self.stack[-1].kind
            raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{name}"')
        return self.result()

    def _skip_spaces(self) -> None:
        while self.i < len(self.src) and self.src[self.i] in _SPACES:
            self.i += 1

    def _start_tag(self) -> None:
        begin = k = self.i
        k += 1
        while self.ch(k) not in _SPACES and self.ch(k) != ">":
            k += 1
        if k >= len(self.src):
            raise self.error("Unclosed start tag", begin)
        name = self.src[begin + 1 : k].lower()
        if name not in _HTML_TAGS:
            raise self.error(f'Unsupported start tag "{name}"', begin)
        self.i = k
        attrs = self._attributes(name, begin)
        self.i += 1
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise self.error('Tag "span" must have class "tg-spoiler"', begin)
        self.open(name, begin, attrs)

    def _attributes(self, tag: str, begin: int) -> dict[str, str]:
        attrs: dict[str, str] = {}
        while self.ch(self.i) != ">":
            self._skip_spaces()
            if self.ch(self.i) == ">":
                break
            start = self.i
            while self.ch(self.i) not in _SPACES and self.ch(self.i) not in "=>":
                self.i += 1
            name = self.src[start : self.i].lower()
            if not name:
                raise self.error(f'Empty attribute name in the tag "{tag}"', begin)
            self._skip_spaces()
            if self.ch(self.i) != "=" and tag == "blockquote" and name == "expandable":
                attrs[name] = ""
                continue
            if self.ch(self.i) != "=":
                raise self.error(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}"', begin
                )
            self.i += 1
            self._skip_spaces()
            if self.i >= len(self.src):
                raise self.error("Unclosed start tag", begin)
            attrs[name] = self._attribute_value()
            if self.i >= len(self.src):
                raise self.error("Unclosed start tag", begin)
        return attrs

    def _attribute_value(self) -> str:
        quote = self.src[self.i]
        if quote not in "'\"":
            start = self.i
            while _is_name_char(self.ch(self.i)):
                self.i += 1
            if self.ch(self.i) not in _SPACES and self.ch(self.i) != ">":
                raise self.error("Unexpected end of name token", start)
            return self.src[start : self.i].lower()
        self.i += 1
        chars: list[str] = []
        while self.i < len(self.src) and self.src[self.i] != quote:
            if self.src[self.i] == "&" and (decoded := decode_html_entity(self.src, self.i)):
                chars.append(decoded[0])
                self.i = decoded[1]
            else:
                chars.append(self.src[self.i])
                self.i += 1
        self.i += self.i < len(self.src)
        return "".join(chars)

    def _end_tag(self) -> None:
        begin = self.i
        if not self.stack:
            raise self.error("Unexpected end tag", begin)
        k = begin + 2
        while self.ch(k) not in _SPACES and self.ch(k) != ">":
            k += 1
        name = self.src[begin + 2 : k].lower()
        while k < len(self.src) and self.src[k] in _SPACES:
            k += 1
        if self.ch(k) != ">":
            raise self.error("Unclosed end tag", begin)
        top = self.stack[-1]
        if name and name != top.kind:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {self.byte(begin)}, "
                f'expected "</{top.kind}>", found "</{name}>"'
            )
        self.stack.pop()
        self.i = k + 1
        self._close(top)

    def _close(self, top: _Open) -> None:
        kind = _HTML_TAGS[top.kind]
        extra: dict[str, str] = {}
        if kind == "text_link":
            extra["url"] = top.attrs.get("href") or self.out.since(top.part)
        elif kind == "custom_emoji":
            extra["custom_emoji_id"] = top.attrs.get("emoji-id", "")
        elif kind == "blockquote" and "expandable" in top.attrs:
            kind = "expandable_blockquote"
        elif kind == "code" and top.attrs.get("class", "").startswith("language-"):
            extra["language"] = top.attrs["class"].removeprefix("language-")
        elif kind == "pre" and (language := self._inner_code_language(top)):
            extra["language"] = language
        self.emit(kind, top.start, **extra)

    def _inner_code_language(self, pre: _Open) -> str | None:
        """<pre><code class="language-x"> becomes one pre entity with a language."""
        if not self.entities:
            return None
        inner = self.entities[-1]
        spans_all = inner["offset"] == pre.start and inner["length"] == self.out.u16 - pre.start
        if inner["type"] != "code" or not spans_all or "language" not in inner:
            return None
        self.entities.pop()
        return str(inner["language"])


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_LABELS = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_MDV2_SINGLE = {"_": "italic", "*": "bold", "~": "strikethrough", "[": "text_link", "`": "code"}
_MDV2_DOUBLE = {"__": "underline", "||": "spoiler", "![": "custom_emoji"}


def _escapable(c: str) -> bool:
    return 0 < ord(c) <= 126


class _MarkdownV2Parser(_Scanner):
    """Port of tdlib's parse_markdown_v2, including its error wording."""

    def parse(self) -> tuple[str, list[JSON]]:
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "\\" and _escapable(self.ch(self.i + 1)):
                self.out.add(self.src[self.i + 1])
                self.i += 2
            elif c not in self._reserved():
                self.out.add(c)
                self.i += 1
            elif c == ">" and (self.i == 0 or self.src[self.i - 1] == "\n"):
                self.i += 1  # block quote marker at a line start
            elif self.stack and self._closes(c):
                self._close()
            else:
                self._open(c)
        if self.stack:
            top = self.stack[-1]
            label = "PreCode" if top.attrs.get("language") else _MDV2_LABELS[top.kind]
            raise self.error(f"Can't find end of {label} entity", top.src_index)
        return self.result()

    def _reserved(self) -> str:
        if self.stack and self.stack[-1].kind in ("code", "pre"):
            return "`"
        return _MDV2_RESERVED

    def _closes(self, c: str) -> bool:
        after = self.ch(self.i + 1)
        match self.stack[-1].kind:
            case "italic":
                return c == "_" and after != "_"
            case "underline":
                return c == "_" and after == "_"
            case "spoiler":
                return c == "|" and after == "|"
            case "pre":
                return self.src.startswith("```", self.i)
            case "text_link" | "custom_emoji":
                return c == "]"
            case kind:
                return c == {"bold": "*", "strikethrough": "~", "code": "`"}[kind]

    def _open(self, c: str) -> None:
        begin = self.i
        pair = self.src[self.i : self.i + 2]
        if self.src.startswith("```", self.i):
            self.i += 3
            language = self.pre_header()
            self.open("pre", begin, {"language": language} if language else None)
        elif pair in _MDV2_DOUBLE:
            self.i += 2
            self.open(_MDV2_DOUBLE[pair], begin)
        elif c in _MDV2_SINGLE:
            self.i += 1
            self.open(_MDV2_SINGLE[c], begin)
        else:
            raise EntityParseError(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )

    def _close(self) -> None:
        top = self.stack.pop()
        extra: dict[str, str] = dict(top.attrs)
        if top.kind in ("underline", "spoiler"):
            self.i += 2
        elif top.kind == "pre":
            self.i += 3
        elif top.kind in ("text_link", "custom_emoji"):
            extra = self._link_target(top)
        else:
            self.i += 1
        self.emit(top.kind, top.start, **extra)

    def _link_target(self, top: _Open) -> dict[str, str]:
        if self.ch(self.i + 1) != "(":
            self.i += 1
            url = self.out.since(top.part)
        else:
            self.i += 2
            url = self._url()
        if top.kind == "text_link":
            return {"url": url}
        prefix = "tg://emoji?id="
        if not url.startswith(prefix):
            raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
        return {"custom_emoji_id": url.removeprefix(prefix)}

    def _url(self) -> str:
        start = self.i
        chars: list[str] = []
        while self.i < len(self.src) and self.src[self.i] != ")":
            if self.src[self.i] == "\\" and _escapable(self.ch(self.i + 1)):
                self.i += 1
            chars.append(self.src[self.i])
            self.i += 1
        if self.i >= len(self.src):
            raise self.error("Can't find end of a URL", start)
        self.i += 1
        return "".join(chars)


_MD_KINDS = {"_": "italic", "*": "bold", "`": "code", "[": "text_link"}


class _MarkdownParser(_Scanner):
    """Port of tdlib's legacy parse_markdown."""

    def parse(self) -> tuple[str, list[JSON]]:
        while self.i < len(self.src):
            c = self.src[self.i]
            if c == "\\" and self.ch(self.i + 1) in ("_", "*", "`", "["):
                self.out.add(self.src[self.i + 1])
                self.i += 2
            elif c in _MD_KINDS:
                self._entity(c)
            else:
                self.out.add(c)
                self.i += 1
        return self.result()

    def _entity(self, c: str) -> None:
        begin = self.i
        self.i += 1
        is_pre = c == "`" and self.src.startswith("``", self.i)
        language = None
        if is_pre:
            self.i += 2
            language = self.pre_header()
        end = "]" if c == "[" else c
        start, part = self.out.u16, len(self.out.parts)
        while self.i < len(self.src) and not self._at_end(end, is_pre):
            self.out.add(self.src[self.i])
            self.i += 1
        if self.i >= len(self.src):
            raise self.error("Can't find end of the entity starting", begin)
        if is_pre:
            self.i += 3
            self.emit("pre", start, **({"language": language} if language else {}))
        elif c == "[":
            self.emit("text_link", start, url=self._url() or self.out.since(part))
        else:
            self.i += 1
            self.emit(_MD_KINDS[c], start)

    def _at_end(self, end: str, is_pre: bool) -> bool:
        if self.src[self.i] != end:
            return False
        return not is_pre or self.src.startswith("``", self.i + 1)

    def _url(self) -> str:
        if self.ch(self.i + 1) != "(":
            self.i += 1
            return ""
        close = self.src.find(")", self.i + 2)
        close = len(self.src) if close < 0 else close
        url = self.src[self.i + 2 : close]
        self.i = close + 1
        return url


_PARSERS: dict[str, type[_HtmlParser | _MarkdownV2Parser | _MarkdownParser]] = {
    "html": _HtmlParser,
    "markdownv2": _MarkdownV2Parser,
    "markdown": _MarkdownParser,
}


def parse_text(
    text: str, parse_mode: str | None, entities: list[JSON] | None = None
) -> tuple[str, list[JSON]]:
    """Text and entities as Telegram would store them; raises EntityParseError."""
    if entities is not None or not parse_mode:
        return _trim(text, list(entities or []))
    parser = _PARSERS.get(parse_mode.lower())
    if parser is None:
        raise UnsupportedParseMode(parse_mode)
    return _trim(*parser(text).parse())


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Telegram strips surrounding whitespace and clips entities to what is left."""
    body = text.strip()
    if body == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    size = utf16_len(body)
    clipped = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            clipped.append({**entity, "offset": start, "length": end - start})
    return body, clipped


# --------------------------------------------------------------------------- flood limits


@dataclass(frozen=True)
class RateLimits:
    """Telegram's documented bot limits; a token bucket per scope allows short bursts."""

    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3
    global_per_second: float = 30.0
    group_per_minute: float = 20.0


@dataclass
class _Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class _RateLimiter:
    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._global: _Bucket | None = None
        self._chats: dict[int, _Bucket] = {}
        self._groups: dict[int, _Bucket] = {}

    def acquire(self, chat_id: int) -> int | None:
        """Take one message slot; returns retry_after seconds when over a limit."""
        now = self.clock()
        buckets = self._buckets(chat_id, now)
        for bucket in buckets:
            bucket.refill(now)
        wait = max(bucket.wait() for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait - 1e-9))
        for bucket in buckets:
            bucket.tokens -= 1
        return None

    def _buckets(self, chat_id: int, now: float) -> list[_Bucket]:
        limits = self.limits
        if self._global is None:
            rate = limits.global_per_second
            self._global = _Bucket(rate, rate, rate, now)
        burst, rate = limits.per_chat_burst, limits.per_chat_per_second
        buckets = [self._global, self._chats.setdefault(chat_id, _Bucket(burst, rate, burst, now))]
        if chat_id < 0:
            per_minute = limits.group_per_minute
            group = _Bucket(per_minute, per_minute / 60, per_minute, now)
            buckets.append(self._groups.setdefault(chat_id, group))
        return buckets


# --------------------------------------------------------------------------- request params


class _Params:
    """Typed access to a call's decoded parameters, failing like Telegram does."""

    def __init__(self, values: JSON) -> None:
        self.values = values

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    def integer(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f'field "{key}" must be of type Integer')
        return value

    def flag(self, key: str) -> bool:
        return self.values.get(key) is True

    def chat_id(self) -> int:
        value = self.values.get("chat_id")
        if value is None:
            raise bad_request("chat_id is empty")
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request("chat not found")
        return value

    def message_id(self) -> int:
        value = self.integer("message_id")
        if value is None:
            raise bad_request("message identifier is not specified")
        return value


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if key in _BOOL_FIELDS and value in ("true", "false"):
        return value == "true"
    return value


def _decode_params(raw: Mapping[str, Any]) -> JSON:
    return {key: _decode_value(key, value) for key, value in raw.items()}


def _mime_of(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _command_entities(text: str) -> list[JSON]:
    """Telegram marks a leading /command with a bot_command entity."""
    match = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if not match:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match.group())}]


Handler = Callable[[_Params], Any]


class LocalAiohttpSession(AiohttpSession):
    """aiogram's AiohttpSession minus the 250 ms sleep its close() takes so TLS connections
    can shut down; the fake speaks plain HTTP and tests close many sessions."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


# --------------------------------------------------------------------------- the server


class FakeTelegramServer(LocalServer[Fault]):
    """In-memory Telegram Bot API on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        strict_token: bool = False,
        max_poll_wait: float = 1.0,
        enforce_limits: bool = False,
        limits: RateLimits | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``max_poll_wait`` caps getUpdates' long-poll ``timeout`` (seconds) to keep tests
        fast. ``clock`` drives the flood limits (defaults to the event loop's time)."""
        super().__init__()
        self.token = token
        self.strict_token = strict_token
        self.max_poll_wait = max_poll_wait
        self.enforce_limits = enforce_limits
        self.tokens_seen: set[str] = set()
        self.calls: list[ApiCall] = []
        self.rate_limited = 0
        self.chat_actions: list[tuple[int, str]] = []
        self.pushed_updates: list[JSON] = []
        self.discarded_updates: list[JSON] = []
        self.allowed_updates: list[str] | None = None
        self.confirmed_offset = 0
        self._limiter = _RateLimiter(limits or RateLimits(), clock or self._loop_time)
        self._queue: list[JSON] = []
        self._next_update_id = 10_001
        self._chats: dict[int, _Chat] = {}
        self._callbacks: dict[str, _CallbackQuery] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._poll_ticket = 0
        self._file_counter = 0
        self._files: dict[str, _File] = {}  # by file_id
        self.downloads: list[str] = []  # file paths fetched from the download route
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "getFile": self._get_file,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
        }
        self._method_names = {name.lower(): name for name in self._handlers}

    # ----------------------------------------------------------------- lifecycle

    def _application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._download)
        return app

    async def __aenter__(self) -> FakeTelegramServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def api(self) -> TelegramAPIServer:
        """The aiogram endpoint config for this server."""
        if not self.base_url:
            raise RuntimeError("call start() first")
        return TelegramAPIServer.from_base(self.base_url)

    def make_bot(self, *, fast_close: bool = True, **kwargs: Any) -> Bot:
        """A real aiogram Bot whose session talks to this server; ``fast_close=False`` uses
        the stock AiohttpSession (closing it costs 250 ms)."""
        session_type = LocalAiohttpSession if fast_close else AiohttpSession
        return Bot(self.token, session=session_type(api=self.api()), **kwargs)

    @property
    def bot_id(self) -> int:
        prefix = self.token.split(":", 1)[0]
        return int(prefix) if prefix.isdigit() else 1

    # ----------------------------------------------------------------- updates (test side)

    def push_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        chat_type: str = "private",
        message_thread_id: int | None = None,
        reply_to: int | None = None,
        entities: list[JSON] | None = None,
    ) -> int:
        """Queue a user's text message; returns its update_id."""
        if chat_type == "private" and chat_id < 0:
            raise ValueError("private chats have positive ids; pass chat_type='supergroup'")
        chat = self._chat(chat_id, chat_type, forum=message_thread_id is not None)
        if reply_to is not None and reply_to not in chat.by_id:
            raise LookupError(f"no message {reply_to} in chat {chat_id}")
        message = self._store(
            chat_id,
            sender_id=user_id,
            from_bot=False,
            text=text,
            entities=_command_entities(text) if entities is None else entities,
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to,
            source=text,
        )
        return self._push("message", self._message_json(message))

    def push_message(
        self,
        chat_id: int,
        user_id: int,
        *,
        text: str | None = None,
        caption: str | None = None,
        chat_type: str = "private",
        message_thread_id: int | None = None,
        **fields: Any,
    ) -> int:
        """Queue a user's message of any shape: a ``text``, or a photo with a ``caption``
        (or none), plus any other Message fields verbatim (``forward_origin``, ``via_bot``,
        ``sticker``, ...); returns its update_id."""
        if chat_type == "private" and chat_id < 0:
            raise ValueError("private chats have positive ids; pass chat_type='supergroup'")
        if text is not None and caption is not None:
            raise ValueError("a message has a text or a caption, not both")
        self._chat(chat_id, chat_type, forum=message_thread_id is not None)
        body = text if text is not None else caption or ""
        if text is None:
            fields.setdefault("photo", [{"file_id": "photo-1", "file_unique_id": "p1",
                                         "width": 90, "height": 90}])
        message = self._store(
            chat_id,
            sender_id=user_id,
            from_bot=False,
            text=body,
            entities=_command_entities(body),
            message_thread_id=message_thread_id,
            source=body,
            is_caption=text is None,
            fields=fields,
        )
        return self._push("message", self._message_json(message))

    def push_document(
        self,
        chat_id: int,
        user_id: int,
        name: str,
        data: bytes,
        caption: str | None = None,
        media_group_id: str | None = None,
        *,
        mime_type: str | None = None,
        chat_type: str = "private",
        reply_to: int | None = None,
        **fields: Any,
    ) -> int:
        """Queue a user's file sent as a document (a piece of the album ``media_group_id``
        when given, a reply to message ``reply_to``); its bytes can then be fetched with
        getFile. Returns the update_id."""
        file = self._new_file(data, "document")
        document = file.json(file_name=name, mime_type=mime_type or _mime_of(name))
        return self._push_file(chat_id, user_id, caption, media_group_id, chat_type,
                               reply_to, fields, document=document)

    def push_photo(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        caption: str | None = None,
        media_group_id: str | None = None,
        *,
        chat_type: str = "private",
        reply_to: int | None = None,
        **fields: Any,
    ) -> int:
        """Queue a user's photo: a small size (other bytes) and the full one, as Telegram
        sends them, smallest first (``media_group_id``, ``reply_to``: as for
        ``push_document``). Returns the update_id."""
        small = self._new_file(data[:64] + b"-small", "photo")
        full = self._new_file(data, "photo")
        sizes = [small.json(width=THUMBNAIL_SIDE, height=THUMBNAIL_SIDE),
                 full.json(width=1280, height=960)]
        return self._push_file(chat_id, user_id, caption, media_group_id, chat_type,
                               reply_to, fields, photo=sizes)

    def _push_file(self, chat_id: int, user_id: int, caption: str | None,
                   media_group_id: str | None, chat_type: str, reply_to: int | None,
                   fields: JSON, **media: Any) -> int:
        if chat_type == "private" and chat_id < 0:
            raise ValueError("private chats have positive ids; pass chat_type='supergroup'")
        chat = self._chat(chat_id, chat_type)
        if reply_to is not None and reply_to not in chat.by_id:
            raise LookupError(f"no message {reply_to} in chat {chat_id}")
        if media_group_id is not None:
            fields = {**fields, "media_group_id": media_group_id}
        body = caption or ""
        message = self._store(chat_id, sender_id=user_id, from_bot=False, text=body,
                              entities=_command_entities(body), source=body, is_caption=True,
                              reply_to_message_id=reply_to, fields=fields, **media)
        return self._push("message", self._message_json(message))

    def push_edit(self, chat_id: int, message_id: int, text: str) -> int:
        """Queue an ``edited_message`` update: the user changed the text of their message."""
        message = self._chats[chat_id].by_id[message_id]
        if message.from_bot:
            raise ValueError("users can only edit their own messages")
        message.text = message.source = text
        message.history.append(text)
        message.edit_date = int(time.time())
        return self._push("edited_message", self._message_json(message))

    def push_update(self, kind: str, payload: JSON) -> int:
        """Queue an update of any kind with ``payload`` as it is; returns its update_id."""
        return self._push(kind, payload)

    def user_json(self, user_id: int) -> JSON:
        """A user as Telegram describes one (``from`` of messages and button presses)."""
        return self._user_json(user_id)

    def push_callback(self, chat_id: int, user_id: int, message_id: int, data: str) -> int:
        """Queue a press on an inline button of a stored message; returns its update_id."""
        message = self._chats[chat_id].by_id.get(message_id) if chat_id in self._chats else None
        if message is None or message.deleted:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        query_id = str(4_000_000_000_000_000 + len(self._callbacks))
        query = {
            "id": query_id,
            "from": self._user_json(user_id),
            "message": self._message_json(message),
            "chat_instance": str(abs(chat_id) * 7 + 13),
            "data": data,
        }
        update_id = self._push("callback_query", query)
        self._callbacks[query_id] = _CallbackQuery(update_id)
        return update_id

    @property
    def pending_updates(self) -> list[JSON]:
        """Queued updates not yet confirmed by an offset."""
        return list(self._queue)

    # ----------------------------------------------------------------- inspection

    @property
    def chats(self) -> dict[int, list[StoredMessage]]:
        return {chat_id: list(chat.messages) for chat_id, chat in self._chats.items()}

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """Every message in the chat (user and bot, deleted included), in order."""
        chat = self._chats.get(chat_id)
        return list(chat.messages) if chat else []

    def bot_messages(self, chat_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        return [
            message
            for message in self.messages(chat_id)
            if message.from_bot and (include_deleted or not message.deleted)
        ]

    def documents(self, chat_id: int) -> list[StoredMessage]:
        """The documents the bot sent to the chat, in order."""
        return [message for message in self.bot_messages(chat_id) if message.document]

    def photos(self, chat_id: int) -> list[StoredMessage]:
        """The photos the bot sent to the chat, in order."""
        return [message for message in self.bot_messages(chat_id) if message.photo]

    def texts(self, chat_id: int) -> list[str]:
        """Current texts of the bot's visible messages in the chat."""
        return [message.text for message in self.bot_messages(chat_id)]

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        return self._chats[chat_id].by_id[message_id]

    def calls_to(self, method: str) -> list[ApiCall]:
        name = self._method_names.get(method.lower(), method)
        return [call for call in self.calls if call.method == name]

    def count_status(self, status: int) -> int:
        return sum(call.status == status for call in self.calls)

    def in_flight(self, method: str | None = None) -> list[ApiCall]:
        calls = self.calls if method is None else self.calls_to(method)
        return [call for call in calls if call.outcome in ("pending", "hanging")]

    def callback_answer(self, update_id: int) -> JSON | None:
        """What answerCallbackQuery said for the callback pushed as ``update_id``."""
        for query in self._callbacks.values():
            if query.update_id == update_id:
                return query.answer
        raise LookupError(f"update {update_id} is not a pushed callback query")

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    # ----------------------------------------------------------------- fault injection

    def fail_next(self, method: str, fault: Fault, times: int = 1, *,
                  when: Callable[[JSON], bool] | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` ("*" for any) with ``fault``;
        with ``when``, the next calls whose parameters it accepts (others go through)."""
        name = method if method == "*" else self._method_names.get(method.lower())
        if name is None:
            raise ValueError(f"unknown method {method!r}")
        self._queue_fault(name, fault, times, when)

    # ----------------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token, method = request.match_info["token"], request.match_info["method"]
        self.tokens_seen.add(token)
        call = ApiCall(
            method=self._method_names.get(method.lower(), method),
            params=await self._read_params(request),
            token=token,
            at=self._loop_time(),
        )
        self.calls.append(call)
        self._notify()
        try:
            status, body = await self._answer(call)
        except Dropped:
            self._finish(call, "dropped")
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        except asyncio.CancelledError:
            self._finish(call, "cancelled")
            raise
        self._finish(call, "answered", status, body)
        return web.json_response(body, status=status)

    @staticmethod
    async def _read_params(request: web.Request) -> JSON:
        """The call's fields; an uploaded file (multipart, referred to as ``attach://NAME``
        or sent under the field's own name) becomes an ``Upload``."""
        raw: dict[str, Any] = dict(request.query)
        if request.body_exists:
            if request.content_type == "application/json":
                raw.update(await request.json())
            else:
                form = await request.post()
                files = {key: Upload(value.filename, value.file.read())
                         for key, value in form.items() if isinstance(value, web.FileField)}
                raw.update({key: value for key, value in form.items() if isinstance(value, str)})
                for key, value in list(raw.items()):
                    if isinstance(value, str) and value.startswith("attach://"):
                        raw[key] = files.get(value.removeprefix("attach://"), value)
                raw.update({key: upload for key, upload in files.items()
                            if key in ("document", "photo", "thumbnail")})
        return _decode_params(raw)

    def _finish(
        self,
        call: ApiCall,
        outcome: CallOutcome,
        status: int | None = None,
        body: JSON | None = None,
    ) -> None:
        call.outcome, call.status, call.response = outcome, status, body
        call.finished_at = self._loop_time()
        self._notify()

    async def _answer(self, call: ApiCall) -> tuple[int, JSON]:
        if self.strict_token and call.token != self.token:
            return 401, ApiError(401, "Unauthorized").body()
        handler = self._handlers.get(call.method)
        if handler is None:
            return 404, ApiError(404, "Not Found").body()
        fault = self._take_fault(call.method, call.params)
        if fault is not None and fault.kind == "error":
            return fault.status, fault.as_error().body()
        if fault is not None and fault.kind == "hang":
            await self._hang(call)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            raise Dropped
        try:
            result = await self._run(handler, _Params(call.params))
        except ApiError as error:
            return error.status, error.body()
        if fault is not None and fault.kind == "drop":
            raise Dropped
        return 200, {"ok": True, "result": result}

    @staticmethod
    async def _run(handler: Handler, params: _Params) -> Any:
        result = handler(params)
        return await result if asyncio.iscoroutine(result) else result

    # ----------------------------------------------------------------- state helpers

    def _push(self, kind: str, payload: JSON) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, kind: payload}
        self.pushed_updates.append(update)
        # Telegram filters by allowed_updates when updates are created, not when fetched.
        accepted = (
            kind not in OPT_IN_UPDATES
            if self.allowed_updates is None
            else kind in self.allowed_updates
        )
        (self._queue if accepted else self.discarded_updates).append(update)
        self._notify()
        return update_id

    def _chat(self, chat_id: int, chat_type: str | None = None, forum: bool = False) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(self._chat_info(chat_id, chat_type))
        elif chat_type is not None and chat.info["type"] != chat_type:
            chat.info = self._chat_info(chat_id, chat_type)
        if forum and chat.info["type"] == "supergroup":
            chat.info["is_forum"] = True
        return chat

    @staticmethod
    def _chat_info(chat_id: int, chat_type: str | None) -> JSON:
        if chat_type is None:
            chat_type = "private" if chat_id > 0 else "supergroup"
        if chat_type == "private":
            return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
        return {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}

    def _store(self, chat_id: int, **fields: Any) -> StoredMessage:
        chat = self._chat(chat_id)
        message = StoredMessage(
            chat_id=chat_id, message_id=chat.next_id, date=int(time.time()), **fields
        )
        chat.next_id += 1
        chat.messages.append(message)
        chat.by_id[message.message_id] = message
        return message

    def _user_json(self, user_id: int) -> JSON:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User {user_id}",
            "username": f"user{user_id}",
            "language_code": "en",
        }

    def _bot_json(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Cadenza Test Bot",
            "username": "cadenza_test_bot",
        }

    def _message_json(self, message: StoredMessage, *, nested: bool = False) -> JSON:
        chat = self._chats[message.chat_id]
        sender = self._bot_json() if message.from_bot else self._user_json(message.sender_id)
        body: JSON = {
            "message_id": message.message_id,
            "from": sender,
            "chat": dict(chat.info),
            "date": message.date,
        }
        text_key, entities_key = ("caption", "caption_entities") if message.is_caption else (
            "text", "entities")
        if message.text or not message.is_caption:
            body[text_key] = message.text
        optional: JSON = {
            entities_key: message.entities or None,
            "document": message.document,
            "photo": message.photo,
            "reply_markup": message.reply_markup,
            "edit_date": message.edit_date,
            "message_thread_id": message.message_thread_id,
            "is_topic_message": True if message.message_thread_id is not None else None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        reply_to = chat.by_id.get(message.reply_to_message_id or 0)
        if reply_to is not None and not nested:
            body["reply_to_message"] = self._message_json(reply_to, nested=True)
        body.update(message.fields)
        return body

    def _bot_message(self, chat_id: int, message_id: int, missing: str) -> StoredMessage:
        chat = self._chats.get(chat_id)
        message = chat.by_id.get(message_id) if chat else None
        if message is None or message.deleted:
            raise bad_request(missing)
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _formatted(self, params: _Params) -> tuple[str, list[JSON]]:
        source = params.text("text") or ""
        if not source.strip():
            raise bad_request("message text is empty")
        entities = params.get("entities")
        try:
            text, parsed = parse_text(
                source,
                params.text("parse_mode"),
                entities if isinstance(entities, list) else None,
            )
        except EntityParseError as error:
            raise bad_request(f"can't parse entities: {error}") from None
        except UnsupportedParseMode:
            raise bad_request("unsupported parse_mode") from None
        if not text:
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise bad_request("message is too long")
        return text, parsed

    @staticmethod
    def _reply_markup(params: _Params) -> JSON | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                FakeTelegramServer._check_button(button)
        return markup

    @staticmethod
    def _check_button(button: JSON) -> None:
        if not BUTTON_ACTIONS & button.keys():
            raise bad_request(
                "can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard"
            )
        if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")

    def _reply_target(self, chat_id: int, params: _Params) -> int | None:
        reply = params.get("reply_parameters")
        reply = reply if isinstance(reply, dict) else {}
        target = reply.get("message_id", params.integer("reply_to_message_id"))
        if target is None:
            return None
        chat = self._chats.get(chat_id)
        if chat is not None and target in chat.by_id and not chat.by_id[target].deleted:
            return int(target)
        if reply.get("allow_sending_without_reply") or params.flag("allow_sending_without_reply"):
            return None
        raise bad_request("message to be replied not found")

    def _check_flood(self, chat_id: int) -> None:
        if not self.enforce_limits:
            return
        retry_after = self._limiter.acquire(chat_id)
        if retry_after is not None:
            self.rate_limited += 1
            raise too_many_requests(retry_after)

    @staticmethod
    def _commands_key(scope: Any, language_code: str | None) -> tuple[str, str]:
        scope = scope if isinstance(scope, dict) else {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code or ""

    # ----------------------------------------------------------------- API methods

    def _get_me(self, params: _Params) -> JSON:
        return {
            **self._bot_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: _Params) -> list[JSON]:
        self._poll_ticket += 1
        ticket, epoch = self._poll_ticket, self._epoch
        self._apply_allowed_updates(params.get("allowed_updates"))
        self._confirm(params.integer("offset"))
        limit = min(max(params.integer("limit") or 100, 1), 100)
        wait = min(max(params.integer("timeout") or 0, 0), self.max_poll_wait)
        if not self._queue and wait > 0:
            with contextlib.suppress(TimeoutError):
                await self.wait_for(
                    lambda: self._queue or self._poll_ticket != ticket or self._epoch != epoch,
                    wait,
                )
        if self._epoch != epoch:
            raise Dropped
        if self._poll_ticket != ticket:
            raise ApiError(409, CONFLICT)
        return self._queue[:limit]

    def _apply_allowed_updates(self, allowed: Any) -> None:
        if isinstance(allowed, list):
            self.allowed_updates = [str(kind) for kind in allowed] or None

    def _confirm(self, offset: int | None) -> None:
        if not offset:
            return
        if offset < 0:
            self._queue = self._queue[offset:]
            return
        self._queue = [update for update in self._queue if update["update_id"] >= offset]
        self.confirmed_offset = max(self.confirmed_offset, offset)

    def _delete_webhook(self, params: _Params) -> bool:
        if params.flag("drop_pending_updates"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, params: _Params) -> JSON:
        pending = len(self._queue)
        return {"url": "", "has_custom_certificate": False, "pending_update_count": pending}

    def _set_my_commands(self, params: _Params) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.text("language_code"))
        self._commands[key] = commands
        return True

    def _get_my_commands(self, params: _Params) -> list[JSON]:
        return self.commands(params.get("scope"), params.text("language_code") or "")

    def _delete_my_commands(self, params: _Params) -> bool:
        key = self._commands_key(params.get("scope"), params.text("language_code"))
        self._commands.pop(key, None)
        return True

    def _send_message(self, params: _Params) -> JSON:
        chat_id = params.chat_id()
        text, entities = self._formatted(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_target(chat_id, params)
        self._check_flood(chat_id)
        message = self._store(
            chat_id,
            sender_id=self.bot_id,
            from_bot=True,
            text=text,
            entities=entities,
            reply_markup=markup,
            message_thread_id=params.integer("message_thread_id"),
            reply_to_message_id=reply_to,
            source=params.text("text") or "",
            parse_mode=params.text("parse_mode"),
        )
        return self._message_json(message)

    def _send_document(self, params: _Params) -> JSON:
        upload = self._upload(params, "document", MAX_UPLOAD_BYTES)
        name = upload.filename or "document"
        file = self._new_file(upload.data, "document")
        return self._send_file(params, upload,
                               document=file.json(file_name=name, mime_type=_mime_of(name)))

    def _send_photo(self, params: _Params) -> JSON:
        upload = self._upload(params, "photo", MAX_PHOTO_BYTES)
        file = self._new_file(upload.data, "photo")
        sizes = [file.json(width=1280, height=960)]
        return self._send_file(params, upload, photo=sizes)

    def _upload(self, params: _Params, field_name: str, limit: int) -> Upload:
        """The file a send uploads, checked as Telegram checks it."""
        upload = params.get(field_name)
        if isinstance(upload, str):
            raise bad_request("wrong remote file identifier specified: can't unserialize it")
        if not isinstance(upload, Upload):
            raise bad_request(f"there is no {field_name} in the request")
        if len(upload.data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        if len(upload.data) > limit:
            raise bad_request("file is too big")
        if not upload.data:
            raise bad_request("file must be non-empty")
        return upload

    def _send_file(self, params: _Params, upload: Upload, **media: Any) -> JSON:
        chat_id = params.chat_id()
        caption, entities = self._caption(params)
        markup = self._reply_markup(params)
        self._check_flood(chat_id)
        message = self._store(
            chat_id,
            sender_id=self.bot_id,
            from_bot=True,
            text=caption,
            entities=entities,
            reply_markup=markup,
            message_thread_id=params.integer("message_thread_id"),
            source=params.text("caption") or "",
            parse_mode=params.text("parse_mode"),
            is_caption=True,
            data=upload.data,
            **media,
        )
        return self._message_json(message)

    def _new_file(self, data: bytes, kind: str) -> _File:
        self._file_counter += 1
        file = _File(f"{kind}-{self._file_counter}", f"{kind[0]}{self._file_counter}", data)
        self._files[file.file_id] = file
        return file

    def _get_file(self, params: _Params) -> JSON:
        file = self._files.get(params.text("file_id") or "")
        if file is None:
            raise bad_request("invalid file_id")
        if len(file.data) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return file.json(file_path=file.path)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """``/file/bot<token>/<file_path>``: the bytes of a file getFile described."""
        path = request.match_info["path"]
        self.downloads.append(path)
        self._notify()
        if self.strict_token and request.match_info["token"] != self.token:
            return web.Response(status=401)
        file = next((f for f in self._files.values() if f.path == path), None)
        if file is None or len(file.data) > MAX_DOWNLOAD_BYTES:
            return web.Response(status=404)
        return web.Response(body=file.data, content_type="application/octet-stream")

    def _edit_message_text(self, params: _Params) -> JSON:
        return self._edit_content(params, caption=False)

    def _edit_content(self, params: _Params, *, caption: bool) -> JSON:
        """editMessageText (a text message) or editMessageCaption (a file's caption)."""
        if params.get("inline_message_id") is not None:
            raise bad_request("inline messages are not supported by the fake")
        message = self._bot_message(
            params.chat_id(), params.message_id(), "message to edit not found"
        )
        if message.is_caption != caption:
            raise bad_request(f"there is no {'caption' if caption else 'text'} in the message "
                              "to edit")
        text, entities = self._caption(params) if caption else self._formatted(params)
        # Telegram drops an inline keyboard that an edit does not repeat.
        markup = self._reply_markup(params)
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise bad_request(NOT_MODIFIED)
        self._check_flood(message.chat_id)
        message.text, message.entities, message.reply_markup = text, entities, markup
        if not caption:
            message.source = params.text("text") or ""
            message.parse_mode = params.text("parse_mode")
        message.history.append(text)
        message.edit_date = int(time.time())
        return self._message_json(message)

    @staticmethod
    def _caption(params: _Params) -> tuple[str, list[JSON]]:
        caption, entities = "", []
        if params.text("caption"):
            try:
                caption, entities = parse_text(
                    params.text("caption") or "", params.text("parse_mode"),
                    params.get("caption_entities") if isinstance(
                        params.get("caption_entities"), list) else None)
            except EntityParseError as error:
                raise bad_request(f"can't parse entities: {error}") from None
            if utf16_len(caption) > MAX_CAPTION_UTF16:
                raise bad_request("message caption is too long")
        return caption, entities

    def _edit_message_caption(self, params: _Params) -> JSON:
        return self._edit_content(params, caption=True)

    def _edit_message_reply_markup(self, params: _Params) -> JSON:
        if params.get("inline_message_id") is not None:
            raise bad_request("inline messages are not supported by the fake")
        message = self._bot_message(
            params.chat_id(), params.message_id(), "message to edit not found"
        )
        markup = self._reply_markup(params)
        if markup == message.reply_markup:
            raise bad_request(NOT_MODIFIED)
        self._check_flood(message.chat_id)
        message.reply_markup = markup
        message.edit_date = int(time.time())
        return self._message_json(message)

    def _delete_message(self, params: _Params) -> bool:
        chat = self._chats.get(params.chat_id())
        message = chat.by_id.get(params.message_id()) if chat else None
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        message.deleted = True
        return True

    def _send_chat_action(self, params: _Params) -> bool:
        chat_id = params.chat_id()
        action = params.text("action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.chat_actions.append((chat_id, action))
        return True

    def _answer_callback_query(self, params: _Params) -> bool:
        query = self._callbacks.get(params.text("callback_query_id") or "")
        if query is None or query.answer is not None:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        query.answer = {key: params.get(key) for key in ("text", "show_alert", "url", "cache_time")}
        return True
