"""Forwarded messages: never run on their own, quoted into the sender's next prompt instead.

Forwarding is how people hand a bot a log or an error message; running someone else's words
as a command is how they get tricked. So a forward is kept per (chat, user) and quoted into
that user's next typed prompt in that chat::

    Forwarded message from Alice:
    > the build fails with
    > error: ...

    <the prompt>

What is kept is bounded: a few forwards per (chat, user), a total size, a lifetime, and a
number of (chat, user) pairs; whatever is past a bound is dropped, oldest first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from aiogram.types import Message
    from cadenza.api import Clock

KEPT = 5  # forwards kept per (chat, user)
CHARS = 20_000  # their total size, in characters
LIFETIME = 1800.0  # seconds a forward waits for the prompt it goes with
HOLDERS = 1_000  # (chat, user) pairs holding forwards
NAME_MAX = 64

ARRIVED = "Got the forwarded message; it will be quoted into your next prompt."


@dataclass(frozen=True, slots=True)
class Forward:
    origin: str
    text: str
    at: float


def forwarded(message: Message) -> bool:
    """Whether ``message`` is someone else's words: a forward of any kind."""
    return bool(message.forward_origin is not None or message.forward_date is not None
                or message.forward_from is not None or message.forward_from_chat is not None
                or message.forward_sender_name or message.is_automatic_forward)


def origin_name(message: Message) -> str:
    """Who wrote the forwarded message, as far as Telegram tells (one short line)."""
    origin: Any = message.forward_origin
    name = ""
    if origin is not None:
        kind = getattr(origin, "type", "")
        if kind == "user":
            name = _user(origin.sender_user)
        elif kind == "hidden_user":
            name = origin.sender_user_name or ""
        elif kind == "chat":
            name = _titled(origin.sender_chat, origin.author_signature)
        elif kind == "channel":
            name = _titled(origin.chat, origin.author_signature)
    elif message.forward_from is not None:
        name = _user(message.forward_from)
    elif message.forward_from_chat is not None:
        name = _titled(message.forward_from_chat, message.forward_signature)
    elif message.forward_sender_name:
        name = message.forward_sender_name
    name = re.sub(r"\s+", " ", name).strip()
    return name[: NAME_MAX - 1] + "…" if len(name) > NAME_MAX else name


def _user(user: Any) -> str:
    if user is None:
        return ""
    full = " ".join(filter(None, [user.first_name, user.last_name]))
    return f"{full} (@{user.username})" if user.username else full


def _titled(chat: Any, signature: str | None) -> str:
    title = (chat.title or chat.username or "") if chat is not None else ""
    return f"{title} ({signature})" if signature else title


def quote(forward: Forward) -> str:
    header = f"Forwarded message from {forward.origin}:" if forward.origin else (
        "Forwarded message:")
    lines = forward.text.split("\n")
    return header + "\n" + "\n".join(f"> {line}" if line else ">" for line in lines) + "\n\n"


class Forwards:
    def __init__(self, clock: Clock, *, kept: int = KEPT, chars: int = CHARS,
                 lifetime: float = LIFETIME, holders: int = HOLDERS) -> None:
        self.clock = clock
        self.kept = kept
        self.chars = chars
        self.lifetime = lifetime
        self.holders = holders
        self._held: OrderedDict[tuple[str, str], list[Forward]] = OrderedDict()

    def add(self, chat: str, user: str, origin: str, text: str) -> str:
        """Keep a forward; returns what to tell the chat."""
        now = self.clock.monotonic()
        self._expire(now)
        notes = []
        if len(text) > self.chars:
            text = text[: self.chars]
            notes.append(f"only its first {self.chars:,} characters are kept")
        key = (chat, user)
        held = self._held.pop(key, [])
        held.append(Forward(origin, text, now))
        dropped = 0
        while len(held) > self.kept or sum(len(f.text) for f in held) > self.chars:
            held.pop(0)
            dropped += 1
        if dropped:
            notes.append(f"{dropped} older forward{'s' if dropped != 1 else ''} dropped to make "
                         "room")
        self._held[key] = held
        while len(self._held) > self.holders:
            self._held.popitem(last=False)
        return ARRIVED + (f" ({'; '.join(notes)})" if notes else "")

    def take(self, chat: str, user: str) -> str:
        """The quotes to put before this user's prompt (and forget), or ""."""
        now = self.clock.monotonic()
        self._expire(now)
        held = self._held.pop((chat, user), [])
        return "".join(quote(f) for f in held if now - f.at < self.lifetime)

    def _expire(self, now: float) -> None:
        """Forget forwards past their lifetime; pairs are kept in order of their latest."""
        while self._held:
            key, held = next(iter(self._held.items()))
            if now - held[-1].at < self.lifetime:
                break
            del self._held[key]

    def __len__(self) -> int:
        return len(self._held)
