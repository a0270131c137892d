"""Codex CLI: ``codex [ARGS] exec --json --skip-git-repo-check [resume ID] -``, the prompt on
stdin (``-`` says so; Codex reads stdin to its end).

``[agent.codex] args`` go before ``exec``: root options such as ``-c key=value``, ``-m``,
``--profile``. Line kinds (recorded in core/testing/streams): ``thread.started`` (the session id),
``turn.started``, ``item.started`` / ``item.updated`` / ``item.completed`` (agent_message,
reasoning, command_execution, file_change, mcp_tool_call, web_search, todo_list, error),
``error``, ``turn.completed`` (usage), ``turn.failed``.

On a 5xx or a dropped stream Codex 0.171.0 retries five times, reporting each attempt as an
``error`` line "Reconnecting... 1/5 (MESSAGE)" before the real ``error`` and ``turn.failed``:
those become retry notices, not errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from cadenza import events
from cadenza.agents import NO_DATA, CliAgent, JsonLinesParser, Parsed, exit_outcome
from cadenza.agents.summary import compact, tool_summary


class CodexAgent(CliAgent):
    stdin_prompt = True

    def argv(
        self, prompt: str, resume_id: str | None, extra: Sequence[str] = ()
    ) -> list[str]:
        resume = ["resume", resume_id] if resume_id else []
        return [self.binary, *self.args, "exec", "--json", "--skip-git-repo-check",
                *extra, *resume, "-"]

    def option_args(self, options: Mapping[str, Any]) -> list[str]:
        """``sandbox``: read-only, workspace-write or danger-full-access (``exec -s``)."""
        return ["-s", str(options["sandbox"])] if options.get("sandbox") else []

    def parser(self) -> CodexParser:
        return CodexParser()


class CodexParser(JsonLinesParser):
    def __init__(self) -> None:
        self._texts = 0
        self._failure: str | None = None
        self._last_error = ""
        self._usage: Any = None

    def dispatch(self, message: dict[str, Any]) -> list[Parsed]:
        kind = message.get("type")
        if kind == "thread.started":
            return [Parsed(events.SESSION, "", {"session_id": message.get("thread_id")})]
        if kind == "item.started":
            return self._item_started(message["item"])
        if kind == "item.completed":
            return self._item_completed(message["item"])
        if kind == "error":
            text = error_message(message.get("message"))
            retry = _RECONNECTING.match(text)
            if retry:
                attempt, most, why = retry.groups()
                why = compact(why or "connection lost")
                return [Parsed(events.NOTICE, f"API error ({why}); retrying ({attempt}/{most})",
                         {"retry": True})]
            self._last_error = text
            return [Parsed(events.ERROR, text, NO_DATA)]
        if kind == "turn.completed":
            self._usage = message.get("usage")
            return [Parsed(events.USAGE, "", {"usage": self._usage})]
        if kind == "turn.failed":
            error = message.get("error") or {}
            raw = error.get("message") if isinstance(error, dict) else error
            self._failure = error_message(raw)
            return []
        return []  # turn.started, item.updated and kinds added by newer versions

    def _item_started(self, item: dict[str, Any]) -> list[Parsed]:
        if item.get("type") == "command_execution":
            command = str(item.get("command", ""))
            return [Parsed(events.TOOL_USE, tool_summary("shell", {"command": command}),
                     {"name": "shell", "input": {"command": command}, "id": item.get("id")})]
        return []

    def _item_completed(self, item: dict[str, Any]) -> list[Parsed]:
        kind = item.get("type")
        if kind == "agent_message":
            text = str(item.get("text", ""))
            prefix = "\n\n" if self._texts else ""
            self._texts += 1
            return [Parsed(events.TEXT, prefix + text, NO_DATA)] if text else []
        if kind == "reasoning":
            return [Parsed(events.THINKING, str(item.get("text", "")), NO_DATA)]
        if kind == "command_execution":
            code = item.get("exit_code")
            output = str(item.get("aggregated_output", ""))
            return [Parsed(events.TOOL_RESULT, compact(output) or f"exit code {code}",
                     {"name": "shell", "id": item.get("id"), "exit_code": code,
                      "is_error": code not in (0, None)})]
        if kind == "file_change":
            paths = [str(change.get("path")) for change in item.get("changes") or ()]
            return [Parsed(events.TOOL_USE, "edit: " + compact(", ".join(paths)),
                     {"name": "edit", "input": {"changes": item.get("changes")},
                      "id": item.get("id")})]
        if kind in ("mcp_tool_call", "web_search"):
            name = str(item.get("tool") or kind)
            params = item.get("arguments") if isinstance(item.get("arguments"), dict) else item
            return [Parsed(events.TOOL_USE, tool_summary(name, params),
                     {"name": name, "id": item.get("id")})]
        if kind == "error":
            return [Parsed(events.ERROR, str(item.get("message", "")), NO_DATA)]
        return []

    def outcome(self, exit_code: int) -> Parsed:
        if self._failure is not None:
            return Parsed(events.FAILED, self._failure,
                          {"exit_code": exit_code, "usage": self._usage, "reported": True})
        outcome = exit_outcome(exit_code, self._last_error if exit_code else "")
        return replace(outcome, data={**outcome.data, "usage": self._usage})


_RECONNECTING = re.compile(r"Reconnecting\.\.\.\s*(\d+)/(\d+)\s*(?:\((.*)\))?\s*$", re.S)


def error_message(raw: Any) -> str:
    """Codex wraps API errors as a JSON string: show the inner message."""
    text = str(raw or "unknown error")
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    if isinstance(decoded, dict):
        inner = decoded.get("error", decoded)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return text
