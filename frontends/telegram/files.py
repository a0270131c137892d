"""Files a person sends in Telegram, as ``Attachment``s the core hands to ``on_attachments``.

A photo (its largest size, named ``photo-<file_unique_id>.jpg``), a document, or a video,
audio, voice note or animation sent as a file becomes one attachment; nothing is downloaded
until the files plugin calls its ``fetch`` (getFile, then the file's URL on the configured
``api_base``). The cloud Bot API lets a bot download files of up to 20 MB: a bigger one is
refused before any call (a local Bot API server decides for itself), and a refusal by
Telegram is a ``DownloadError`` that says why. An album arrives as one message per file,
sharing a ``media_group_id``: ``Albums`` holds its pieces for a moment and hands them on as
one message with all the attachments (the caption is on one of them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiohttp import ClientError, ClientResponseError
from cadenza.api import Attachment, ChatMessage
from cadenza.frontends.live.holding import Holding

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from aiogram import Bot as Client
    from aiogram.types import Message
    from cadenza.api import Clock

MAX_DOWNLOAD = 20 * 1024 * 1024  # what the cloud Bot API lets a bot download
DOWNLOAD_TIMEOUT = 300  # seconds one download may take
ALBUM_WINDOW = 1.0  # seconds the next piece of an album may take to arrive
# a file sent as one of these kinds: its type and name suffix when Telegram gives none
_KINDS = {
    "document": ("application/octet-stream", ""),
    "video": ("video/mp4", ".mp4"),
    "audio": ("audio/mpeg", ".mp3"),
    "voice": ("audio/ogg", ".ogg"),
    "video_note": ("video/mp4", ".mp4"),
    "animation": ("video/mp4", ".mp4"),
}


class DownloadError(RuntimeError):
    """A file could not be downloaded from Telegram; the message says why."""


def attachments_of(message: Message, client: Client,
                   max_download: int | None) -> tuple[Attachment, ...]:
    """The file ``message`` carries, as an attachment (none for text, stickers, ...)."""
    if message.photo:
        size = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return (_attachment(client, size.file_id, f"photo-{size.file_unique_id}.jpg",
                            size.file_size, "image/jpeg", max_download),)
    for kind, (mime, suffix) in _KINDS.items():
        media: Any = getattr(message, kind, None)
        if media is not None:
            name = getattr(media, "file_name", None) or f"{kind}-{media.file_unique_id}{suffix}"
            return (_attachment(client, media.file_id, name, media.file_size,
                                getattr(media, "mime_type", None) or mime, max_download),)
    return ()


def _attachment(client: Client, file_id: str, name: str, size: int | None, mime: str,
                max_download: int | None) -> Attachment:
    async def fetch(path: Path) -> None:
        if max_download is not None and size is not None and size > max_download:
            raise DownloadError(f"{name} is {_mb(size)}; Telegram lets a bot download files "
                                f"of up to {_mb(max_download)}")
        try:
            await client.download(file_id, destination=path, timeout=DOWNLOAD_TIMEOUT)
        except Exception as exc:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            # not chained: the download's URL, in an HTTP error, holds the bot token
            raise DownloadError(_reason(name, size, exc)) from None

    return Attachment(name, size, mime, fetch)


def _reason(name: str, size: int | None, exc: Exception) -> str:
    if isinstance(exc, TelegramBadRequest) and "file is too big" in exc.message.lower():
        about = f" ({_mb(size)})" if size is not None else ""
        return (f"{name}{about} is too big for Telegram to hand to a bot: it lets a bot "
                f"download files of up to {_mb(MAX_DOWNLOAD)}")
    if isinstance(exc, TelegramAPIError):
        return f"Telegram refused to hand over {name}: {exc.message}"
    if isinstance(exc, ClientResponseError):  # its text names the URL, with the token
        return f"could not download {name} from Telegram: HTTP {exc.status}"
    if isinstance(exc, ClientError | TimeoutError):
        return f"could not download {name} from Telegram ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"could not write {name}: {exc.strerror or type(exc).__name__}"
    return f"could not download {name} from Telegram ({type(exc).__name__})"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def _album(parts: list[ChatMessage]) -> ChatMessage:
    text = "\n\n".join(part.text for part in parts if part.text.strip())
    return replace(parts[0], text=text, attachments=tuple(
        file for part in parts for file in part.attachments))


class Albums:
    """The pieces of albums, per (chat, person, album), until ``window`` seconds pass without
    a new one; then ``deliver`` gets them as one message."""

    def __init__(self, clock: Clock, deliver: Callable[[ChatMessage], None], *,
                 window: float = ALBUM_WINDOW) -> None:
        self._held = Holding(clock, window, _album, deliver)

    def add(self, album: str, message: ChatMessage) -> None:
        self._held.add((message.chat.key, message.user_id, album), message)

    def continues(self, chat_key: str, user_id: str, album: str | None) -> bool:
        """Whether a message that would not count on its own (in a group: not addressed to
        the bot) is the next piece of an album held for this person."""
        return album is not None and (chat_key, user_id, album) in self._held

    def flush(self, chat_key: str) -> None:
        """Hand on, in order, every album held in this chat."""
        self._held.flush(chat_key)

    def flush_all(self) -> None:
        self._held.flush_all()
