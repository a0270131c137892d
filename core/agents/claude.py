"""Claude Code: ``claude -p --output-format stream-json --verbose [--resume ID]``, the prompt
on stdin.

Line kinds (recorded in core/testing/streams): ``system`` (init with the session id, api_retry,
permission_denied, status), ``assistant`` (one content block per line: text, thinking,
tool_use), ``user`` (tool_result), ``stream_event`` (only with --include-partial-messages,
not used), ``result`` (cost, duration, is_error; its text repeats the last block).

Approvals (``Turn.options["approvals"] == "stdio"``, set by the approvals plugin): the CLI
runs with ``--input-format stream-json --permission-prompt-tool stdio`` and ``--setting-sources
user`` (settings files in the working directory, which the agent can write, grant nothing);
the prompt goes on stdin as a user message after the ``initialize`` control request, stdin
stays open, a ``control_request`` of subtype ``can_use_tool`` becomes an ``approval`` event,
``approval_answer`` is what the host writes back, and stdin closes after the ``result`` line
(measured with 2.1.332: ../shared/agent-permissions.md).

Cost: after ``--resume``, ``total_cost_usd`` is the whole session's so far (measured with
2.1.332: 0.0497 for the first run, 0.0994 for the resumed one); this run's own cost is in
``model_usage_since_last_result``. Events carry the turn's cost as ``cost_usd`` and the
session's as ``session_cost_usd``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cadenza import events
from cadenza.agents import NO_DATA, CliAgent, JsonLinesParser, Parsed, exit_outcome
from cadenza.agents.summary import compact, tool_summary
from cadenza.process import Launch

STDIO_APPROVALS = "stdio"  # Turn.options["approvals"]: the host answers permission prompts


class ClaudeAgent(CliAgent):
    stdin_prompt = True  # `claude -p` with no prompt argument reads it from stdin

    def argv(
        self, prompt: str, resume_id: str | None, extra: Sequence[str] = ()
    ) -> list[str]:
        resume = ["--resume", resume_id] if resume_id else []
        return [self.binary, "-p", "--output-format", "stream-json", "--verbose",
                *resume, *self.args, *extra]

    def option_args(self, options: Mapping[str, Any]) -> list[str]:
        """``allowed_tools`` (Claude's rule syntax, e.g. "Bash(git status)") and
        ``permission_mode`` (default, acceptEdits, plan, ...)."""
        args = []
        if tools := options.get("allowed_tools"):
            args += ["--allowedTools", *map(str, tools)]
        if mode := options.get("permission_mode"):
            args += ["--permission-mode", str(mode)]
        return args

    def launch(
        self, prompt: str, resume_id: str | None, options: Mapping[str, Any] = NO_DATA
    ) -> Launch:
        if options.get("approvals") != STDIO_APPROVALS:
            return super().launch(prompt, resume_id, options)
        resume = ["--resume", resume_id] if resume_id else []
        argv = [self.binary, "-p", "--input-format", "stream-json", "--output-format",
                "stream-json", "--verbose", "--permission-prompt-tool", STDIO_APPROVALS,
                *resume, *self.args, "--setting-sources", "user", *self.option_args(options)]
        return Launch(argv, control_opening(prompt), self.contain, control=True)

    def approval_answer(self, request_id: str, allow: bool, updated_input: Mapping[str, Any],
                        message: str = "") -> str:
        """The line answering the permission prompt ``request_id``: allow the tool with
        ``updated_input``, or deny it, ``message`` reaching the model as the tool's result."""
        answer: dict[str, Any] = (
            {"behavior": "allow", "updatedInput": dict(updated_input)} if allow
            else {"behavior": "deny", "message": message})
        return json_line({"type": "control_response", "response": {
            "subtype": "success", "request_id": request_id, "response": answer}})

    def parser(self) -> ClaudeParser:
        return ClaudeParser()


def json_line(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False) + "\n"


def control_opening(prompt: str) -> str:
    """What goes on stdin first in stream-json input mode: the ``initialize`` control
    request, then the prompt as the user's message."""
    return json_line({"type": "control_request", "request_id": "init1",
                      "request": {"subtype": "initialize", "hooks": None}}) + json_line(
        {"type": "user", "message": {"role": "user", "content": prompt},
         "parent_tool_use_id": None, "session_id": "default"})


class ClaudeParser(JsonLinesParser):
    def __init__(self) -> None:
        self._texts = 0
        self._tools: dict[str, str] = {}  # tool_use id → tool name
        self._denied: set[str] = set()
        self._result: Mapping[str, Any] | None = None

    def dispatch(self, message: dict[str, Any]) -> list[Parsed]:
        handler = _HANDLERS.get(message.get("type"))
        return handler(self, message) if handler is not None else []

    def _system(self, message: dict[str, Any]) -> list[Parsed]:
        subtype = message.get("subtype")
        if subtype == "init":
            return [Parsed(events.SESSION, "", {"session_id": message.get("session_id"),
                                          "model": message.get("model")})]
        if subtype == "api_retry":
            attempt, most = message.get("attempt"), message.get("max_retries")
            error = message.get("error") or message.get("error_status") or "API error"
            text = f"API error ({compact(str(error))}); retrying" + (
                f" ({attempt}/{most})" if attempt and most else "")
            return [Parsed(events.NOTICE, text, {"retry": True})]
        if subtype == "permission_denied":
            tool_id = message.get("tool_use_id")
            if tool_id:
                self._denied.add(tool_id)
            name = message.get("tool_name") or "tool"
            return [Parsed(events.TOOL_RESULT, compact(str(message.get("message", ""))),
                     {"is_error": True, "denied": True, "name": name, "id": tool_id})]
        return []

    def _assistant(self, message: dict[str, Any]) -> list[Parsed]:
        out: list[Parsed] = []
        for block in message["message"].get("content") or ():
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                separator = "\n\n" if self._texts else ""
                out.append(Parsed(events.TEXT, separator + block["text"], NO_DATA))
                self._texts += 1
            elif kind == "thinking" and block.get("thinking"):
                out.append(Parsed(events.THINKING, block["thinking"], NO_DATA))
            elif kind == "tool_use":
                name, params = block.get("name", "tool"), block.get("input") or {}
                self._tools[block.get("id", "")] = name
                out.append(Parsed(events.TOOL_USE, tool_summary(name, params),
                            {"name": name, "input": params, "id": block.get("id")}))
        return out

    def _user(self, message: dict[str, Any]) -> list[Parsed]:
        out: list[Parsed] = []
        content = message["message"].get("content")
        for block in content if isinstance(content, list) else ():
            if block.get("type") != "tool_result":
                continue
            tool_id = block.get("tool_use_id")
            if tool_id in self._denied:
                continue  # already shown from the permission_denied line
            out.append(Parsed(events.TOOL_RESULT, compact(_result_text(block.get("content"))),
                        {"is_error": bool(block.get("is_error")), "id": tool_id,
                         "name": self._tools.get(tool_id or "", "tool")}))
        return out

    def _control_request(self, message: dict[str, Any]) -> list[Parsed]:
        request = message["request"]
        if request.get("subtype") != "can_use_tool":
            return []
        tool, params = str(request.get("tool_name") or "tool"), request.get("input") or {}
        description = str(request.get("description") or "")
        return [Parsed(events.APPROVAL, description or tool_summary(tool, params), {
            "request_id": str(message["request_id"]), "tool": tool, "input": params,
            "description": description,
            "suggestions": list(request.get("permission_suggestions") or ()),
            "blocked_path": request.get("blocked_path"),
            "tool_use_id": request.get("tool_use_id")})]

    def _result_line(self, message: dict[str, Any]) -> list[Parsed]:
        self._result = message
        usage = {
            "cost_usd": turn_cost(message),
            "session_cost_usd": message.get("total_cost_usd"),
            "duration_ms": message.get("duration_ms"),
            "num_turns": message.get("num_turns"),
            "usage": message.get("usage"),
        }
        return [Parsed(events.USAGE, "", usage, end_of_input=True)]

    def outcome(self, exit_code: int) -> Parsed:
        result = self._result
        if result is None:
            return exit_outcome(exit_code)
        data = {
            "exit_code": exit_code,
            "cost_usd": turn_cost(result),
            "session_cost_usd": result.get("total_cost_usd"),
            "duration_ms": result.get("duration_ms"),
            "session_id": result.get("session_id"),
            "permission_denials": len(result.get("permission_denials") or ()),
        }
        if result.get("is_error") or exit_code != 0:
            message = str(result.get("result") or f"the agent exited with code {exit_code}")
            return Parsed(events.FAILED, message, {**data, "reported": True})
        return Parsed(events.COMPLETED, "", data)


def turn_cost(result: Mapping[str, Any]) -> Any:
    """What this run cost: ``model_usage_since_last_result`` summed over models, else
    ``total_cost_usd`` (the same number for a run that did not resume a session)."""
    since = result.get("model_usage_since_last_result")
    if isinstance(since, Mapping) and since:
        costs = [model.get("costUSD") if isinstance(model, Mapping) else None
                 for model in since.values()]
        if all(isinstance(cost, int | float) and not isinstance(cost, bool) for cost in costs):
            return sum(costs)
    return result.get("total_cost_usd")


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


_HANDLERS = {
    "system": ClaudeParser._system,
    "assistant": ClaudeParser._assistant,
    "user": ClaudeParser._user,
    "result": ClaudeParser._result_line,
    "control_request": ClaudeParser._control_request,
    "control_response": lambda parser, message: [],  # the CLI's answer to our initialize
}
