"""Compact one-line renderings of tool calls and outputs, shared by the agent parsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LINE = 160


def compact(text: str, limit: int = LINE) -> str:
    """The first non-empty line, shortened to ``limit`` characters."""
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    more = len(stripped) > len(first)
    if len(first) > limit:
        return first[: limit - 1] + "…"
    return first + (" …" if more else "")


_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt")


def tool_summary(name: str, params: Mapping[str, Any]) -> str:
    """``Bash: echo hi`` — the tool and the one argument that says most about the call."""
    for key in _KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return f"{name}: {compact(value)}"
    return name
