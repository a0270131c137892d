"""Cutting long text into messages at readable places, in the units the platform counts.

A platform limits a message's visible text (after its formatting is parsed) to a length in
some unit: Telegram counts UTF-16 code units and allows 4,096. ``Units`` says how to count;
``UTF16`` (Telegram, and APIs that count as JavaScript does) is the default, ``CODEPOINTS``
counts characters. A cut goes at the last paragraph break, else line break, else sentence
end, else space in the second half of the allowed length, and only when none exists
mid-word. The cut depends only on the text before it, so a message cut while the answer is
still streaming never has to change when more text arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?…][)\"'»]*\s")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_prefix(text: str, budget: int) -> int:
    head = text[:budget]  # a character is at least one code unit: no more can fit
    if len(head) * 2 <= budget or utf16_len(head) <= budget:
        return len(head)
    used = 0
    for index, char in enumerate(head):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return index
    return len(head)


def _codepoint_prefix(text: str, budget: int) -> int:
    return min(len(text), max(budget, 0))


@dataclass(frozen=True, slots=True)
class Units:
    """How a platform measures a message: ``length(text)``, and ``prefix(text, budget)``,
    the largest n such that ``text[:n]`` is at most ``budget`` long."""

    name: str
    length: Callable[[str], int]
    prefix: Callable[[str, int], int]


UTF16 = Units("UTF-16 code units", utf16_len, _utf16_prefix)
CODEPOINTS = Units("characters", len, _codepoint_prefix)


def clean(text: str) -> str:
    """Text safe to send: lone surrogates (from a broken agent stream) become U+FFFD,
    and NUL characters, which chat APIs treat as the end of the text, are dropped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)
    return text.replace("\0", "")


def prefix_within(text: str, budget: int, units: Units = UTF16) -> int:
    """The largest n such that ``text[:n]`` is at most ``budget`` long."""
    return units.prefix(text, budget)


def cut_point(text: str, budget: int, units: Units = UTF16) -> int:
    """Where the first message of ``text`` ends (an index into ``text``); ``len(text)``
    when all of it fits in ``budget``."""
    hard = units.prefix(text, budget)
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


def split(text: str, budget: int, units: Units = UTF16) -> list[str]:
    """All of ``text`` as consecutive parts of at most ``budget`` each."""
    parts = []
    while True:
        cut = cut_point(text, budget, units)
        parts.append(text[:cut])
        if cut >= len(text):
            return parts
        text = text[cut:]
