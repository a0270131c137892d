"""What the chat is shown of a permission request: exactly what the agent wants to do.

A command is shown whole; an edit as its file and a short diff; a new file as its path and
its first lines; anything else as the tool's arguments.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from cadenza.api import ApprovalRequest, duration

MAX_SHOWN = 3000  # characters of one command or argument list; more is cut, and said so
DIFF_LINES = 24
WRITE_LINES = 12


def question(request: ApprovalRequest, timeout: float, can_remember: bool) -> str:
    """The message asking the chat; it ends with the commands that answer it."""
    key = request.key
    lines = [f"🔐 The agent asks to use {request.tool}:", *shown(request.tool, request.input)]
    if request.description and f"$ {request.description.removeprefix('Run ')}" != lines[1]:
        lines.append(f"({request.description})")
    if request.blocked_path:
        lines.append(f"outside the working directory: {request.blocked_path}")
    lines.append(f"Denied if not answered within {duration(timeout)}.")
    remember = f" · /approve {key} conversation" if can_remember else ""
    lines.append(f"/approve {key}{remember} · /deny {key} [reason]")
    return "\n".join(lines)


def shown(tool: str, params: Mapping[str, Any]) -> list[str]:
    """The lines showing what ``tool`` would do with ``params``."""
    if tool == "Bash" and isinstance(params.get("command"), str):
        return [f"$ {_cut(params['command'])}"]
    path = params.get("file_path") or params.get("notebook_path")
    if tool == "Edit" and isinstance(path, str):
        return [path, *_diff(str(params.get("old_string", "")),
                             str(params.get("new_string", "")))]
    if tool == "MultiEdit" and isinstance(path, str) and isinstance(params.get("edits"), list):
        lines = [path]
        for edit in params["edits"]:
            if isinstance(edit, Mapping):
                lines += _diff(str(edit.get("old_string", "")), str(edit.get("new_string", "")))
        return _capped(lines, DIFF_LINES + 1)
    if tool == "Write" and isinstance(path, str):
        content = str(params.get("content", ""))
        body = content.splitlines()
        head = [f"+{line}" for line in body[:WRITE_LINES]]
        more = [f"… {len(body) - WRITE_LINES} more line(s)"] if len(body) > WRITE_LINES else []
        return [f"{path} (write {len(body)} line(s))", *head, *more]
    return [_cut(json.dumps(dict(params), ensure_ascii=False))]


def _diff(old: str, new: str) -> list[str]:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))
    return _capped(lines[2:], DIFF_LINES)  # without the ---/+++ header


def _capped(lines: list[str], most: int) -> list[str]:
    if len(lines) <= most:
        return lines
    return [*lines[:most], f"… {len(lines) - most} more line(s)"]


def _cut(text: str) -> str:
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}… ({len(text) - MAX_SHOWN:,} more characters)"


def summary(request: ApprovalRequest) -> str:
    """One short line naming the request, for the answer's notice."""
    line = short(request.tool, request.input)
    return line if line.startswith("$ ") else f"{request.tool}: {line}"


def short(tool: str, params: Mapping[str, Any]) -> str:
    """The first line of what is asked, cut to 80 characters (``$ touch /tmp/x``, a path)."""
    first = shown(tool, params)[0]
    line = first.splitlines()[0] if first else ""
    return f"{line[:80]}{'…' if len(line) > 80 else ''}"
