"""Cutting long text into Telegram-sized messages at readable places.

Telegram counts a message's length in UTF-16 code units after parsing its formatting, and
allows 4,096. A cut goes at the last paragraph break, else line break, else sentence end,
else space in the second half of the allowed length, and only when none exists mid-word.
The cut depends only on the text before it, so a message cut while the answer is still
streaming never has to change when more text arrives.
"""

from __future__ import annotations

import re

MAX_MESSAGE = 4096  # UTF-16 code units of visible text

_SENTENCE_END = re.compile(r"[.!?…][)\"'»]*\s")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """Text safe to send: lone surrogates (from a broken agent stream) become U+FFFD,
    and NUL characters, which Telegram treats as the end of the text, are dropped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)
    return text.replace("\0", "")


def prefix_within(text: str, budget: int) -> int:
    """The largest n such that ``text[:n]`` is at most ``budget`` UTF-16 code units."""
    head = text[:budget]  # a character is at least one code unit: no more can fit
    if len(head) * 2 <= budget or utf16_len(head) <= budget:
        return len(head)
    used = 0
    for index, char in enumerate(head):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return index
    return len(head)


def cut_point(text: str, budget: int) -> int:
    """Where the first message of ``text`` ends (an index into ``text``); ``len(text)``
    when all of it fits in ``budget`` UTF-16 code units."""
    hard = prefix_within(text, budget)
    if hard >= len(text):
        return len(text)
    floor = hard // 2
    for separator in ("\n\n", "\n"):
        found = text.rfind(separator, floor, hard)
        if found > 0:
            return found + len(separator)
    sentences = [found.end() for found in _SENTENCE_END.finditer(text, floor, hard)]
    if sentences:
        return sentences[-1]
    found = text.rfind(" ", floor, hard)
    if found > 0:
        return found + 1
    return max(hard, 1)


def split(text: str, budget: int = MAX_MESSAGE) -> list[str]:
    """All of ``text`` as consecutive parts of at most ``budget`` UTF-16 code units each."""
    parts = []
    while True:
        cut = cut_point(text, budget)
        parts.append(text[:cut])
        if cut >= len(text):
            return parts
        text = text[cut:]
