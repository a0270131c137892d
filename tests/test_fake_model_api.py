"""The fake model API: fast unit tests over HTTP, and the real CLIs run against it.

The `agent_cli` tests run Claude Code and Codex (pinned, installed from npm) and check that
their stdout has the same shapes as the real recordings shipped with cadenza.testing.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cadenza.testing import recorded

from tests.fakes.agent_clis import (
    CLAUDE,
    CODEX,
    DUMMY_KEY,
    CliRun,
    NpmMissingError,
    PinnedCLI,
    claude_argv,
    claude_env,
    codex_argv,
    codex_env,
    ensure_installed,
    run_agent,
)
from tests.fakes.model_api import (
    Delay,
    Fail,
    FakeModelAPI,
    ReadFile,
    Text,
    ToolCall,
    big_text,
    parse_script,
    segment,
)

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = recorded("claude-text").parent

# --- the script language ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "events"),
    [
        ("say hello", [Text("hello")]),
        ("say a; say b", [Text("a"), Text("b")]),
        ("tick 2 0.5 t", [Text("t 1"), Delay(0.5), Text("t 2")]),
        ("tick 2 t", [Text("t 1"), Delay(1.0), Text("t 2")]),
        ("sleep 2.5\nsay x", [Delay(2.5), Text("x")]),
        ("tool ls -l; say done", [ToolCall("ls -l"), Text("done")]),
        ("tool echo a; echo b\nsay done", [ToolCall("echo a; echo b"), Text("done")]),
        ("error 429 slow down", [Fail(429, "slow down")]),
        ("read /w/a b.png; say seen", [ReadFile("/w/a b.png"), Text("seen")]),
        ("read me", [Text("echo: read me")]),  # Read takes an absolute path only
        ("what is this?", [Text("echo: what is this?")]),
        ("say a; what", [Text("echo: say a; what")]),
    ],
)
def test_parse_script(prompt: str, events: list[Any]) -> None:
    assert parse_script(prompt) == events


def test_big_text_is_exact_and_deterministic() -> None:
    text = big_text(20_000)
    assert len(text) == 20_000
    assert text == big_text(20_000)
    assert text.startswith("L00001 0123456789")
    assert text.splitlines()[99].startswith("L00100 ")


def test_segment_continues_after_each_tool_result() -> None:
    events = parse_script("say a; tool x; say b; read /y; say c")
    assert segment(events, 0) == [Text("a"), ToolCall("x")]
    assert segment(events, 1) == [Text("b"), ReadFile("/y")]
    assert segment(events, 2) == [Text("c")]
    assert segment(events, 3) == []


# --- the server over HTTP --------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[FakeModelAPI]:
    fake = FakeModelAPI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sse_events(body: str) -> list[dict[str, Any]]:
    """The `data` payloads of an SSE body, each checked against its `event` name."""
    events = []
    for chunk in filter(None, body.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append(data)
    return events


def user(text: str) -> dict[str, Any]:
    reminder = {"type": "text", "text": "<system-reminder>\nignore me\n</system-reminder>"}
    return {"role": "user", "content": [reminder, {"type": "text", "text": text}]}


async def post_sse(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    async with http.post(url, json=body) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        return sse_events(await response.text())


def anthropic_text(events: list[dict[str, Any]]) -> list[str]:
    deltas: dict[int, str] = {}
    for event in events:
        if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
            deltas[event["index"]] = deltas.get(event["index"], "") + event["delta"]["text"]
    return [deltas[index] for index in sorted(deltas)]


async def test_messages_stream_text_blocks(api: FakeModelAPI, http: aiohttp.ClientSession) -> None:
    body = {"model": "m", "stream": True, "messages": [user("say one; big 2500")]}
    events = await post_sse(http, f"{api.base_url}/v1/messages?beta=true", body)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    assert anthropic_text(events) == ["one", big_text(2500)]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    logged = api.requests("/v1/messages")
    assert [(r.method, r.query, r.body["model"]) for r in logged] == [("POST", "beta=true", "m")]


async def test_messages_tool_call_then_rest_of_script(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    url = f"{api.base_url}/v1/messages"
    messages = [user("say before; tool echo hi; say after")]
    first = await post_sse(http, url, {"stream": True, "messages": messages})
    starts = [e["content_block"] for e in first if e["type"] == "content_block_start"]
    tool = starts[1]
    assert (tool["type"], tool["name"]) == ("tool_use", "Bash")
    deltas = [e["delta"] for e in first if e["type"] == "content_block_delta"]
    (partial,) = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
    assert json.loads(partial) == {"command": "echo hi", "description": "Run echo hi"}
    assert first[-2]["delta"]["stop_reason"] == "tool_use"

    result = {"type": "tool_result", "tool_use_id": tool["id"], "content": "hi"}
    messages += [{"role": "assistant", "content": starts}, {"role": "user", "content": [result]}]
    second = await post_sse(http, url, {"stream": True, "messages": messages})
    assert anthropic_text(second) == ["after"]


async def test_messages_json_and_count_tokens(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello?"}]}
    async with http.post(f"{api.base_url}/v1/messages", json=body) as response:
        message = await response.json()
    assert message["content"] == [{"type": "text", "text": "echo: hello?"}]
    assert message["stop_reason"] == "end_turn"
    async with http.post(f"{api.base_url}/v1/messages/count_tokens", json=body) as response:
        assert (await response.json())["input_tokens"] > 0


async def test_messages_errors(api: FakeModelAPI, http: aiohttp.ClientSession) -> None:
    body = {"stream": True, "messages": [user("error 400 fake quota exceeded")]}
    async with http.post(f"{api.base_url}/v1/messages", json=body) as response:
        assert response.status == 400
        error = await response.json()
    assert error["error"] == {"type": "invalid_request_error", "message": "fake quota exceeded"}

    body = {"stream": True, "messages": [user("say partial; error 529 overloaded")]}
    events = await post_sse(http, f"{api.base_url}/v1/messages", body)
    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "overloaded"},
    }


def responses_body(text: str, *extra: dict[str, Any], **fields: Any) -> dict[str, Any]:
    prompt = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return {"model": "m", "stream": True, "input": [prompt, *extra], **fields}


CODE_MODE_TOOLS = {
    "type": "additional_tools",
    "role": "developer",
    "tools": [
        {"type": "namespace", "name": "functions", "tools": [{"type": "custom", "name": "exec"}]}
    ],
}


def done_items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


async def test_responses_stream_messages(api: FakeModelAPI, http: aiohttp.ClientSession) -> None:
    events = await post_sse(http, f"{api.base_url}/v1/responses", responses_body("say a; say b"))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] > 0
    texts = [item["content"][0]["text"] for item in done_items(events)]
    assert texts == ["a", "b"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "ab"


async def test_responses_code_mode_shell_call(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    url = f"{api.base_url}/v1/responses"
    body = responses_body("tool echo 'hi'; say done")
    body["input"].insert(0, CODE_MODE_TOOLS)
    (call,) = done_items(await post_sse(http, url, body))
    assert (call["type"], call["name"]) == ("custom_tool_call", "exec")
    assert "tools.exec_command({cmd: \"echo 'hi'\"})" in call["input"]

    body["input"] += [call, {"type": "custom_tool_call_output", "call_id": call["call_id"]}]
    (message,) = done_items(await post_sse(http, url, body))
    assert message["content"][0]["text"] == "done"


async def test_responses_function_shell_call(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    tools = [{"type": "function", "name": "shell_command"}]
    body = responses_body("tool ls", tools=tools)
    (call,) = done_items(await post_sse(http, f"{api.base_url}/v1/responses", body))
    assert (call["type"], call["name"]) == ("function_call", "shell_command")
    assert json.loads(call["arguments"]) == {"command": "ls"}


async def test_responses_without_a_shell_tool_fail_the_response(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    events = await post_sse(http, f"{api.base_url}/v1/responses", responses_body("tool ls"))
    assert events[-1]["type"] == "response.failed"
    assert "no shell tool" in events[-1]["response"]["error"]["message"]


async def test_responses_errors(api: FakeModelAPI, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.base_url}/v1/responses", json=responses_body("error 400 no")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"] == "no"
    events = await post_sse(
        http, f"{api.base_url}/v1/responses", responses_body("say a; error 500 x")
    )
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == "x"


async def test_sleep_is_silence(api: FakeModelAPI, http: aiohttp.ClientSession) -> None:
    body = {"stream": True, "messages": [user("sleep 0.3; say late")]}
    started = time.monotonic()
    events = await post_sse(http, f"{api.base_url}/v1/messages", body)
    assert time.monotonic() - started >= 0.3
    assert anthropic_text(events) == ["late"]


async def test_proxy_trap_refuses_and_logs_remote_requests(
    api: FakeModelAPI, http: aiohttp.ClientSession
) -> None:
    async with http.get("http://example.com/x", proxy=api.base_url) as response:
        assert response.status == 403
    with pytest.raises(aiohttp.ClientHttpProxyError):
        await http.get("https://example.com/", proxy=api.base_url)
    remote = [(r.method, r.host, r.path) for r in api.remote_requests()]
    assert remote == [
        ("GET", "example.com", "http://example.com/x"),
        ("CONNECT", "example.com", "example.com:443"),
    ]


def test_in_thread_serves_sync_callers() -> None:
    with FakeModelAPI().in_thread() as fake:
        request = urllib.request.Request(
            f"{fake.base_url}/v1/messages",
            data=json.dumps({"messages": [{"role": "user", "content": "say hi"}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            assert json.load(response)["content"][0]["text"] == "hi"
        assert [r.path for r in fake.requests()] == ["/v1/messages"]


def test_ci_install_script_pins_match() -> None:
    script = (ROOT / ".ci" / "install-agent-clis").read_text()
    pins = set(re.findall(r'"(@[\w./-]+@[\w.]+) (\w+)"', script))
    assert pins == {(cli.spec, cli.binary) for cli in (CLAUDE, CODEX)}


# --- the real CLIs ---------------------------------------------------------------------


def installed(cli: PinnedCLI) -> Path:
    try:
        return ensure_installed(cli)
    except NpmMissingError as error:
        pytest.skip(f"{error} (agent_cli tests need npm to install the pinned CLIs)")


@dataclass
class Agent:
    """One CLI, a scratch HOME with a project dir in it, and the fake it talks to."""

    name: str
    binary: Path
    api: FakeModelAPI
    home: Path

    @property
    def cwd(self) -> Path:
        return self.home / "project"

    def run(self, prompt: str, resume: str | None = None) -> CliRun:
        base_url = self.api.base_url
        if self.name == "claude":
            argv = claude_argv(self.binary, prompt, resume=resume)
            env = claude_env(base_url, self.home)
        else:
            argv = codex_argv(self.binary, base_url, prompt, resume=resume)
            env = codex_env(base_url, self.home)
        run = run_agent(argv, env, self.cwd, timeout=90)
        assert self.api.remote_requests() == []
        return run


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return installed(CLAUDE)


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    return installed(CODEX)


@pytest.fixture
def fake_api() -> Iterator[FakeModelAPI]:
    with FakeModelAPI().in_thread() as fake:
        yield fake


def make_agent(name: str, binary: Path, api: FakeModelAPI, tmp_path: Path) -> Agent:
    agent = Agent(name, binary, api, tmp_path / "home")
    agent.cwd.mkdir(parents=True)
    return agent


@pytest.fixture
def claude(claude_bin: Path, fake_api: FakeModelAPI, tmp_path: Path) -> Agent:
    return make_agent("claude", claude_bin, fake_api, tmp_path)


@pytest.fixture
def codex(codex_bin: Path, fake_api: FakeModelAPI, tmp_path: Path) -> Agent:
    return make_agent("codex", codex_bin, fake_api, tmp_path)


def recording(name: str) -> list[dict[str, Any]]:
    lines = (RECORDINGS / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def shape(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a parser relies on: the event kind, its keys, and those of its message/item."""
    inner = event.get("message") or event.get("item") or {}
    inner = inner if isinstance(inner, dict) else {}
    content = inner.get("content") if isinstance(inner.get("content"), list) else []
    blocks = tuple(tuple(sorted(block)) for block in content)
    return (event["type"], event.get("subtype"), tuple(sorted(event)), tuple(sorted(inner)), blocks)


def assert_shapes_match(run: CliRun, name: str) -> None:
    assert [shape(e) for e in run.events] == [shape(e) for e in recording(name)]


def claude_texts(run: CliRun) -> list[str]:
    return [
        block["text"]
        for event in run.events
        if event["type"] == "assistant"
        for block in event["message"]["content"]
        if block["type"] == "text"
    ]


def codex_messages(run: CliRun) -> list[str]:
    return [
        event["item"]["text"]
        for event in run.events
        if event["type"] == "item.completed" and event["item"]["type"] == "agent_message"
    ]


@pytest.mark.agent_cli
def test_claude_say(claude: Agent) -> None:
    run = claude.run("say Hello from the real Claude Code CLI; say a second text block")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "claude-text")
    assert claude_texts(run) == ["Hello from the real Claude Code CLI", "a second text block"]
    result = run.events[-1]
    assert (result["is_error"], result["result"]) == (False, "a second text block")
    assert {e["session_id"] for e in run.events} == {run.events[0]["session_id"]}
    assert claude.api.requests("/v1/messages")[0].headers["x-api-key"] == DUMMY_KEY


@pytest.mark.agent_cli
def test_claude_tool_then_text(claude: Agent) -> None:
    run = claude.run("say running a tool; tool echo hi from bash; say tool done")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "claude-tool")
    (tool_result,) = [e for e in run.events if e["type"] == "user"]
    assert tool_result["message"]["content"][0]["content"] == "hi from bash"
    assert claude_texts(run) == ["running a tool", "tool done"]
    assert len(claude.api.requests("/v1/messages")) == 2


@pytest.mark.agent_cli
def test_claude_big(claude: Agent) -> None:
    run = claude.run("big 20000")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "claude-big")
    assert claude_texts(run) == [big_text(20_000)]


@pytest.mark.agent_cli
def test_claude_api_error(claude: Agent) -> None:
    run = claude.run("error 400 fake quota exceeded")
    assert run.returncode == 1
    assert_shapes_match(run, "claude-error")
    assert claude_texts(run) == ["API Error: 400 fake quota exceeded"]
    assert (run.events[-1]["is_error"], run.events[-1]["api_error_status"]) == (True, 400)


@pytest.mark.agent_cli
def test_claude_resume(claude: Agent) -> None:
    first = claude.run("say before the resume")
    session_id = first.events[0]["session_id"]
    run = claude.run("say resumed in the same session", resume=session_id)
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "claude-resume")
    assert {e["session_id"] for e in run.events} == {session_id}
    assert claude_texts(run) == ["resumed in the same session"]
    history = json.dumps(claude.api.requests("/v1/messages")[-1].body["messages"])
    assert "say before the resume" in history


@pytest.mark.agent_cli
def test_codex_say(codex: Agent) -> None:
    run = codex.run("say Hello from the real Codex CLI; say a second message")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "codex-text")
    assert codex_messages(run) == ["Hello from the real Codex CLI", "a second message"]
    auth = codex.api.requests("/v1/responses")[0].headers["Authorization"]
    assert auth == f"Bearer {DUMMY_KEY}"


@pytest.mark.agent_cli
def test_codex_tool_then_text(codex: Agent) -> None:
    run = codex.run("say running a tool; tool echo hi from codex; say tool done")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "codex-tool")
    command = run.events[-3]["item"]
    assert (command["aggregated_output"], command["exit_code"]) == ("hi from codex\n", 0)
    assert codex_messages(run) == ["running a tool", "tool done"]


@pytest.mark.agent_cli
def test_codex_big(codex: Agent) -> None:
    run = codex.run("big 20000")
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "codex-big")
    assert codex_messages(run) == [big_text(20_000)]


@pytest.mark.agent_cli
def test_codex_api_error(codex: Agent) -> None:
    run = codex.run("error 400 fake quota exceeded")
    assert run.returncode == 1
    assert_shapes_match(run, "codex-error")
    assert "fake quota exceeded" in run.events[-1]["error"]["message"]


@pytest.mark.agent_cli
def test_codex_resume(codex: Agent) -> None:
    first = codex.run("say before the resume")
    thread_id = first.events[0]["thread_id"]
    run = codex.run("say resumed in the same thread", resume=thread_id)
    assert run.returncode == 0, run.stderr
    assert_shapes_match(run, "codex-resume")
    assert run.events[0]["thread_id"] == thread_id
    assert codex_messages(run) == ["resumed in the same thread"]
    history = json.dumps(codex.api.requests("/v1/responses")[-1].body["input"])
    assert "say before the resume" in history
