"""A scripted fake of the Anthropic Messages API and the OpenAI Responses API.

The real Claude Code and Codex CLIs are pointed at it, and it answers from a tiny
script written in the prompt (see `parse_script`). It also stands in as the HTTP(S)
proxy of the CLIs, so any request meant for another host is refused and recorded in
`remote_requests()`, which a test asserts is empty.

    with FakeModelAPI().in_thread() as api:  # sync code; in async code: await api.start()
        run_agent(claude_argv(binary, "say hi"), claude_env(api.base_url, home), cwd)
        assert api.remote_requests() == []

Script language (one instruction per line, or `;`-separated on one line):
    say TEXT                  a text block / message TEXT
    tick N [SECONDS] TEXT     N texts "TEXT 1".."TEXT N", SECONDS (default 1) apart
    sleep SECONDS             silence
    big N                     one text of exactly N characters (see `big_text`)
    tool CMD                  a shell tool call; the script goes on when its result comes back
    read PATH                 a call to Claude Code's Read tool for PATH (absolute), likewise
    error STATUS MESSAGE      HTTP error STATUS (or an in-stream error after output began)
Anything else is answered "echo: PROMPT".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

# --- the script language ---------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class ToolCall:
    command: str


@dataclass(frozen=True)
class ReadFile:
    """A call to Claude Code's Read tool (Anthropic only: the Responses API answers 500)."""

    path: str


@dataclass(frozen=True)
class Fail:
    status: int
    message: str


Event = Text | Delay | ToolCall | ReadFile | Fail
Call = ToolCall | ReadFile  # a tool call: the script goes on when its result comes back

_NUMBER = r"\d+(?:\.\d+)?"
_SAY = re.compile(r"say\s+(?P<text>.+)", re.S)
_TICK = re.compile(rf"tick\s+(?P<n>\d+)(?:\s+(?P<secs>{_NUMBER}))?\s+(?P<text>.+)", re.S)
_SLEEP = re.compile(rf"sleep\s+(?P<secs>{_NUMBER})")
_BIG = re.compile(r"big\s+(?P<n>\d+)")
_TOOL = re.compile(r"tool\s+(?P<cmd>.+)", re.S)
_READ = re.compile(r"read\s+(?P<path>/.+)")
_ERROR = re.compile(r"error\s+(?P<status>\d{3})\s+(?P<msg>.+)", re.S)

BIG_LINE_DIGITS = "0123456789" * 7


def big_text(size: int) -> str:
    """Exactly `size` characters of numbered lines, so a test can compare what arrives."""
    lines: list[str] = []
    total, number = 0, 1
    while total < size:
        line = f"L{number:05d} {BIG_LINE_DIGITS}\n"
        lines.append(line)
        total += len(line)
        number += 1
    return "".join(lines)[:size]


def _parse_line(line: str) -> list[Event] | None:
    if m := _SAY.fullmatch(line):
        return [Text(m["text"])]
    if m := _TICK.fullmatch(line):
        count, secs = int(m["n"]), float(m["secs"] or 1)
        events: list[Event] = []
        for i in range(1, count + 1):
            events += [Delay(secs)] if i > 1 else []
            events.append(Text(f"{m['text']} {i}"))
        return events
    if m := _SLEEP.fullmatch(line):
        return [Delay(float(m["secs"]))]
    if m := _BIG.fullmatch(line):
        return [Text(big_text(int(m["n"])))]
    if m := _TOOL.fullmatch(line):
        return [ToolCall(m["cmd"])]
    if m := _READ.fullmatch(line):
        return [ReadFile(m["path"])]
    if m := _ERROR.fullmatch(line):
        return [Fail(int(m["status"]), m["msg"])]
    return None


def parse_script(prompt: str) -> list[Event]:
    """Turn a prompt into the model's events.

    Instructions are one per line; a one-line prompt may also separate them with `;`
    (so a multi-line script can carry a shell command containing `;`). If any line is
    not an instruction, the whole answer is the text "echo: PROMPT".
    """
    # A first paragraph that is not a script, before one that is, is a note for the agent
    # (Cadenza's prompt preamble): a model reads it and follows the script.
    for text in (prompt, prompt.strip().partition("\n\n")[2]):
        if events := _script(text):
            return events
    return [Text(f"echo: {prompt}")]


def _script(prompt: str) -> list[Event] | None:
    """The events of a script; None when a line of it is not an instruction."""
    text = prompt.strip()
    lines = text.splitlines() if "\n" in text else text.split(";")
    events: list[Event] = []
    for line in filter(None, (raw.strip() for raw in lines)):
        parsed = _parse_line(line)
        if parsed is None:
            return None
        events += parsed
    return events


def segment(events: list[Event], tool_results: int) -> list[Event]:
    """The events of one model response: those after the `tool_results`-th tool call,
    up to and including the next tool call (the CLI sends its result in a new request)."""
    start = 0
    for _ in range(tool_results):
        calls = [i for i, e in enumerate(events[start:], start) if isinstance(e, Call)]
        if not calls:
            return []
        start = calls[0] + 1
    rest = events[start:]
    calls = [i for i, e in enumerate(rest) if isinstance(e, Call)]
    return rest[: calls[0] + 1] if calls else rest


# --- request log -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    host: str
    path: str  # without the query; the whole request target for a remote request
    query: str
    time: float
    body: Any  # parsed JSON, else the text, else None
    remote: bool
    headers: dict[str, str]


# --- request parsing (what the CLIs forward) ---------------------------------------------


def _anthropic_prompt(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The prompt (last user text) and how many tool results followed it."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        content = message.get("content")
        if message.get("role") != "user":
            continue
        if isinstance(content, str):
            prompt = content
        else:
            if any(block.get("type") == "tool_result" for block in content):
                continue
            texts = [b["text"] for b in content if b.get("type") == "text"]
            real = [t for t in texts if not t.lstrip().startswith("<system-reminder>")]
            prompt = (real or texts or [""])[-1]
        later = messages[index + 1 :]
        return prompt, sum(_count_blocks(m.get("content"), "tool_result") for m in later)
    return "", 0


def _count_blocks(content: Any, kind: str) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for block in content if block.get("type") == kind)


def _responses_prompt(items: list[dict[str, Any]] | str) -> tuple[str, int]:
    if isinstance(items, str):
        return items, 0
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if item.get("type", "message") == "message" and item.get("role") == "user":
            parts = item.get("content")
            texts = (
                [parts]
                if isinstance(parts, str)
                else [p.get("text", "") for p in parts if p.get("type") == "input_text"]
            )
            later = items[index + 1 :]
            outputs = sum(1 for i in later if str(i.get("type", "")).endswith("_call_output"))
            return (texts or [""])[-1], outputs
    return "", 0


# --- Anthropic Messages API ------------------------------------------------------------

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _fake_id(prefix: str, length: int = 20) -> str:
    return f"{prefix}_fake_{uuid.uuid4().hex[:length]}"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def anthropic_error(status: int, message: str) -> web.Response:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    request_id = _fake_id("req", 12)
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return web.json_response(body, status=status, headers={"request-id": request_id})


def _anthropic_block(event: Text | Call) -> dict[str, Any]:
    if isinstance(event, Text):
        return {"type": "text", "text": event.text}
    if isinstance(event, ReadFile):
        input_ = {"file_path": event.path}
        return {"type": "tool_use", "id": _fake_id("toolu", 16), "name": "Read", "input": input_}
    input_ = {"command": event.command, "description": f"Run {event.command}"}
    return {"type": "tool_use", "id": _fake_id("toolu", 16), "name": "Bash", "input": input_}


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _anthropic_message(model: str, content: list[dict[str, Any]], input_tokens: int) -> dict:
    stop = "tool_use" if content and content[-1]["type"] == "tool_use" else "end_turn"
    output = sum(_tokens(json.dumps(block)) for block in content) if content else 1
    return {
        "id": _fake_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _anthropic_usage(input_tokens, output),
    }


class _AnthropicStream:
    """Writes one Messages API response as SSE, one content block per text or tool call."""

    def __init__(self, response: web.StreamResponse, model: str, input_tokens: int) -> None:
        self.response = response
        self.model = model
        self.input_tokens = input_tokens
        self.index = 0
        self.output_tokens = 0

    async def start(self) -> None:
        message = _anthropic_message(self.model, [], self.input_tokens)
        message.update(stop_reason=None, usage=_anthropic_usage(self.input_tokens, 1))
        await self.response.write(
            _sse("message_start", {"type": "message_start", "message": message})
        )
        await self.response.write(_sse("ping", {"type": "ping"}))

    async def block(self, block: dict[str, Any]) -> None:
        start = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
        await self._write("content_block_start", {"content_block": start})
        if block["type"] == "text":
            for chunk in _chunks(block["text"]):
                await self._write(
                    "content_block_delta", {"delta": {"type": "text_delta", "text": chunk}}
                )
        else:
            partial = json.dumps(block["input"])
            await self._write(
                "content_block_delta",
                {"delta": {"type": "input_json_delta", "partial_json": partial}},
            )
        await self._write("content_block_stop", {})
        self.index += 1
        self.output_tokens += _tokens(json.dumps(block))

    async def error(self, status: int, message: str) -> None:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        await self.response.write(
            _sse("error", {"type": "error", "error": {"type": kind, "message": message}})
        )

    async def finish(self, stop_reason: str) -> None:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": max(1, self.output_tokens)},
        }
        await self.response.write(_sse("message_delta", delta))
        await self.response.write(_sse("message_stop", {"type": "message_stop"}))

    async def _write(self, event: str, fields: dict[str, Any]) -> None:
        await self.response.write(_sse(event, {"type": event, "index": self.index, **fields}))


def _chunks(text: str, size: int = 1000) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- OpenAI Responses API --------------------------------------------------------------


def responses_error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    # Python's default separators, as the recordings show Codex echoing this body verbatim.
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def declared_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool a Responses request declares: top-level `tools`, plus the tools Codex
    lists in `additional_tools` input items, with namespaces flattened."""
    found: list[dict[str, Any]] = []
    pending = list(body.get("tools") or [])
    items = body.get("input")
    if isinstance(items, list):
        for item in items:
            if item.get("type") == "additional_tools":
                pending += item.get("tools") or []
    while pending:
        tool = pending.pop(0)
        if tool.get("type") == "namespace":
            pending += tool.get("tools") or []
        else:
            found.append(tool)
    return found


def shell_call_item(tools: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """A call to whichever shell tool the CLI declared (see `declared_tools`)."""
    call_id = _fake_id("call", 24)
    functions = {tool.get("name") for tool in tools if tool.get("type") == "function"}
    custom = {tool.get("name") for tool in tools if tool.get("type") == "custom"}
    if "shell_command" in functions:
        return _function_call(call_id, "shell_command", {"command": command})
    if "exec_command" in functions:
        return _function_call(call_id, "exec_command", {"cmd": command})
    if "shell" in functions:
        return _function_call(call_id, "shell", {"command": ["bash", "-lc", command]})
    if "exec" in custom:
        # Codex's "code mode": its only shell is `tools.exec_command` inside a JavaScript cell.
        source = (
            f"const r = await tools.exec_command({{cmd: {json.dumps(command)}}});\ntext(r.output);"
        )
        return {
            "type": "custom_tool_call",
            "id": _fake_id("ctc"),
            "call_id": call_id,
            "name": "exec",
            "input": source,
            "status": "completed",
        }
    declared = sorted(str(tool.get("name", tool.get("type"))) for tool in tools)
    raise ValueError(f"no shell tool among the declared tools {declared}")


def _function_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": _fake_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _message_item(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": _fake_id("msg"),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


class _ResponsesStream:
    """Writes one Responses API response as SSE."""

    def __init__(self, response: web.StreamResponse, model: str, input_tokens: int) -> None:
        self.response = response
        self.input_tokens = input_tokens
        self.output: list[dict[str, Any]] = []
        self.sequence = 0
        self.body = {
            "id": _fake_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "in_progress",
            "output": [],
        }

    async def start(self) -> None:
        await self._write("response.created", {"response": self.body})
        await self._write("response.in_progress", {"response": self.body})

    async def item(self, item: dict[str, Any]) -> None:
        index = len(self.output)
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        await self._write("response.output_item.added", {"output_index": index, "item": added})
        if item["type"] == "message":
            await self._text_deltas(item, index)
        elif item["type"] == "function_call":
            done = {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}
            await self._write("response.function_call_arguments.done", done)
        elif item["type"] == "custom_tool_call":
            done = {"item_id": item["id"], "output_index": index, "input": item["input"]}
            await self._write("response.custom_tool_call_input.done", done)
        await self._write("response.output_item.done", {"output_index": index, "item": item})
        self.output.append(item)

    async def _text_deltas(self, item: dict[str, Any], index: int) -> None:
        text = item["content"][0]["text"]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        await self._write("response.content_part.added", {**where, "part": part})
        for chunk in _chunks(text):
            await self._write("response.output_text.delta", {**where, "delta": chunk})
        await self._write("response.output_text.done", {**where, "text": text})
        await self._write("response.content_part.done", {**where, "part": item["content"][0]})

    async def failed(self, status: int, message: str) -> None:
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        body = {**self.body, "status": "failed", "error": {"code": code, "message": message}}
        await self._write("response.failed", {"response": body})

    async def completed(self) -> None:
        output_tokens = sum(_tokens(json.dumps(item)) for item in self.output) or 1
        usage = {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + output_tokens,
        }
        body = {**self.body, "status": "completed", "output": self.output, "usage": usage}
        await self._write("response.completed", {"response": body})

    async def _write(self, event: str, fields: dict[str, Any]) -> None:
        payload = {"type": event, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        await self.response.write(_sse(event, payload))


# --- the server ------------------------------------------------------------------------

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _leading_delays(events: list[Event]) -> list[Event]:
    """Sleep through the delays before the first output, so an error there can still be an
    HTTP status rather than an in-stream event."""
    while events and isinstance(events[0], Delay):
        await asyncio.sleep(events[0].seconds)
        events = events[1:]
    return events


class FakeModelAPI:
    """The fake model server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- log

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Every request received (to one path if given), oldest first."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def prompts(self) -> list[str]:
        """The prompt (the last user text) of each Messages or Responses request, oldest
        first."""
        found: list[str] = []
        for request in self.requests():
            if request.path == "/v1/messages":
                found.append(_anthropic_prompt(request.body.get("messages", []))[0])
            elif request.path == "/v1/responses":
                found.append(_responses_prompt(request.body.get("input", []))[0])
        return found

    def remote_requests(self) -> list[LoggedRequest]:
        """Requests meant for another host (proxied or CONNECT): these were refused."""
        return [r for r in self.requests() if r.remote]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    # -- lifecycle

    async def start(self) -> str:
        app = web.Application(middlewares=[self._trap_and_log], client_max_size=64 * 1024**2)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a CLI killed mid-answer must not keep a sleeping handler alive
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeModelAPI]:
        """Run the server on its own event loop in a daemon thread, for sync code."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-model-api", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    # -- middleware: the proxy trap and the log

    def _is_own_host(self, host: str) -> bool:
        own = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        return host.lower() in own

    @web.middleware
    async def _trap_and_log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        absolute = not request.raw_path.startswith("/")
        remote = request.method == "CONNECT" or absolute or not self._is_own_host(host)
        body = await self._json_body(request)
        path = request.raw_path if remote else request.path
        query = "" if remote else request.query_string
        headers = dict(request.headers)
        entry = LoggedRequest(request.method, host, path, query, time.time(), body, remote, headers)
        with self._lock:
            self._log.append(entry)
        if remote:
            return web.Response(status=403, text="cadenza test fake: remote access refused\n")
        return await handler(request)

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    # -- handlers

    async def _models(self, request: web.Request) -> web.Response:
        model = {
            "id": "fake-model",
            "object": "model",
            "type": "model",
            "display_name": "Fake model",
            "created_at": "2026-01-01T00:00:00Z",
        }
        return web.json_response({"object": "list", "data": [model], "has_more": False})

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"input_tokens": _tokens(json.dumps(body))})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt, tool_results = _anthropic_prompt(body.get("messages", []))
        events = await _leading_delays(segment(parse_script(prompt), tool_results))
        if events and isinstance(events[0], Fail):
            return anthropic_error(events[0].status, events[0].message)
        model, input_tokens = body.get("model", "fake-model"), _tokens(json.dumps(body))
        if not body.get("stream"):
            return await self._message_json(events, model, input_tokens)
        return await self._message_stream(request, events, model, input_tokens)

    async def _message_json(
        self, events: list[Event], model: str, input_tokens: int
    ) -> web.Response:
        for event in events:
            if isinstance(event, Delay):
                await asyncio.sleep(event.seconds)
            if isinstance(event, Fail):
                return anthropic_error(event.status, event.message)
        blocks = [_anthropic_block(e) for e in events if isinstance(e, Text | Call)]
        message = _anthropic_message(model, blocks, input_tokens)
        return web.json_response(message, headers={"request-id": _fake_id("req", 12)})

    async def _message_stream(
        self, request: web.Request, events: list[Event], model: str, input_tokens: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**_SSE_HEADERS, "request-id": _fake_id("req", 12)})
        await response.prepare(request)
        stream = _AnthropicStream(response, model, input_tokens)
        await stream.start()
        stop_reason = "end_turn"
        for event in events:
            if isinstance(event, Delay):
                await asyncio.sleep(event.seconds)
            elif isinstance(event, Fail):
                await stream.error(event.status, event.message)
                return response
            else:
                await stream.block(_anthropic_block(event))
                stop_reason = "tool_use" if isinstance(event, Call) else stop_reason
        await stream.finish(stop_reason)
        return response

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt, tool_results = _responses_prompt(body.get("input", []))
        events = await _leading_delays(segment(parse_script(prompt), tool_results))
        if events and isinstance(events[0], Fail):
            return responses_error(events[0].status, events[0].message)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        stream = _ResponsesStream(
            response, body.get("model", "fake-model"), _tokens(json.dumps(body))
        )
        await stream.start()
        for event in events:
            if isinstance(event, Delay):
                await asyncio.sleep(event.seconds)
            elif isinstance(event, Fail):
                await stream.failed(event.status, event.message)
                return response
            elif isinstance(event, Text):
                await stream.item(_message_item(event.text))
            elif isinstance(event, ReadFile):
                await stream.failed(500, "the fake has no file-read tool for the Responses API")
                return response
            else:
                try:
                    call = shell_call_item(declared_tools(body), event.command)
                except ValueError as error:  # a CLI version that renamed its shell tool
                    await stream.failed(500, str(error))
                    return response
                await stream.item(call)
        await stream.completed()
        return response
