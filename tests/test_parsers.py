"""The adapters' parsers on the real CLIs' recorded output (shipped with cadenza.testing)."""

from __future__ import annotations

import pytest
from cadenza.agents import Parsed
from cadenza.agents.claude import ClaudeAgent, ClaudeParser
from cadenza.agents.codex import CodexAgent, CodexParser
from cadenza.agents.command import CommandParser
from cadenza.testing import recorded

STREAMS = recorded("claude-text").parent


def parse(name: str, exit_code: int = 0) -> tuple[list[tuple[str, str, dict]], tuple]:
    """A recorded stream through its parser, as (kind, text, data) triples for brevity."""
    parser = ClaudeParser() if name.startswith("claude") else CodexParser()
    out = []
    for line in (STREAMS / f"{name}.jsonl").read_text().splitlines():
        out.extend(triple(parsed) for parsed in parser.feed(line))
    return out, triple(parser.outcome(exit_code))


def triple(parsed: Parsed) -> tuple[str, str, dict]:
    assert isinstance(parsed, Parsed)
    return parsed.kind, parsed.text, dict(parsed.data)


def kinds(events: list) -> list[str]:
    return [kind for kind, _, _ in events]


def text(events: list) -> str:
    return "".join(t for kind, t, _ in events if kind == "text")


@pytest.mark.parametrize("name", sorted(p.stem for p in STREAMS.glob("*.jsonl")))
def test_every_recorded_stream_parses_and_names_its_session(name: str) -> None:
    events, outcome = parse(name, 1 if "error" in name else 0)
    assert events[0][0] == "session" and events[0][2]["session_id"]
    assert outcome[0] == ("failed" if "error" in name else "completed")
    assert not [e for e in events if e[2].get("unparsed")]


def test_claude_text_blocks_render_once_with_cost() -> None:
    events, (_, _, data) = parse("claude-text")
    assert text(events) == "Hello from the real Claude Code CLI\n\na second text block"
    assert data["cost_usd"] == pytest.approx(0.049648) and data["duration_ms"] > 0


def test_claude_resumed_turn_costs_its_own_run_not_the_session() -> None:
    # after --resume, total_cost_usd is the session's total; the turn's cost is this run's
    events, (_, _, data) = parse("claude-resume")
    (usage,) = [d for kind, _, d in events if kind == "usage"]
    for reported in (usage, data):
        assert reported["cost_usd"] == pytest.approx(0.049708)
        assert reported["session_cost_usd"] == pytest.approx(0.099356)
    single = parse("claude-tool")[1][2]  # no resume: both are the run's cost
    assert single["cost_usd"] == pytest.approx(single["session_cost_usd"]) == pytest.approx(0.0992)


def test_claude_cost_without_per_run_usage_falls_back_to_the_total() -> None:
    parser = ClaudeParser()
    parser.feed('{"type":"result","is_error":false,"total_cost_usd":0.5}')
    assert parser.outcome(0).data["cost_usd"] == 0.5


def test_claude_tool_use_and_result_are_compact() -> None:
    events, _ = parse("claude-tool")
    assert kinds(events) == ["session", "text", "tool_use", "tool_result", "text", "usage"]
    assert events[2][1] == "Bash: echo hi from bash"
    assert events[3][1] == "hi from bash" and events[3][2]["name"] == "Bash"


def test_claude_permission_denial_shown_once_as_error() -> None:
    events, _ = parse("claude-denied")
    results = [e for e in events if e[0] == "tool_result"]
    assert len(results) == 1
    assert results[0][2]["is_error"] and results[0][2]["denied"]
    assert "needs approval" in results[0][1]


def test_claude_api_error_fails_the_turn_with_its_message() -> None:
    _, (kind, message, _) = parse("claude-error", 1)
    assert kind == "failed" and message == "API Error: 400 fake quota exceeded"


def test_big_blocks_arrive_whole() -> None:
    # the recordings hold 6,000 characters (their README says 20,000)
    assert text(parse("claude-big")[0]).startswith("L00001 ")
    assert len(text(parse("claude-big")[0])) == len(text(parse("codex-big")[0])) == 6000


def test_claude_partial_messages_do_not_double_the_text() -> None:
    events, _ = parse("claude-partial")
    assert text(events) == "streamed in pieces"


def test_claude_api_retry_and_thinking() -> None:
    parser = ClaudeParser()
    retry = parser.feed('{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,'
                        '"error_status":529}')
    thinking = parser.feed('{"type":"assistant","message":{"content":'
                           '[{"type":"thinking","thinking":"hmm"}]}}')
    assert retry[0].kind == "notice" and "2/10" in retry[0].text
    assert thinking == [Parsed("thinking", "hmm")]


def test_codex_tool_and_text() -> None:
    events, _ = parse("codex-tool")
    assert kinds(events) == ["session", "text", "tool_use", "tool_result", "text", "usage"]
    assert events[2][1] == "shell: /bin/bash -lc 'echo hi from codex'"
    assert events[3][1] == "hi from codex" and events[3][2]["exit_code"] == 0


def test_codex_error_message_is_unwrapped() -> None:
    events, (kind, message, _) = parse("codex-error", 1)
    assert ("error", "fake quota exceeded", {}) in events
    assert kind == "failed" and message == "fake quota exceeded"


def test_codex_other_items() -> None:
    parser = CodexParser()
    lines = [
        '{"type":"item.completed","item":{"id":"1","type":"reasoning","text":"think"}}',
        '{"type":"item.completed","item":{"id":"2","type":"file_change",'
        '"changes":[{"path":"a.py","kind":"update"}]}}',
        '{"type":"item.completed","item":{"id":"3","type":"command_execution",'
        '"command":"false","aggregated_output":"","exit_code":1}}',
        '{"type":"item.updated","item":{"id":"4","type":"todo_list"}}',
    ]
    events = [triple(e) for line in lines for e in parser.feed(line)]
    assert kinds(events) == ["thinking", "tool_use", "tool_result"]
    assert events[1][1] == "edit: a.py" and events[2][2]["is_error"]


@pytest.mark.parametrize("parser", [ClaudeParser(), CodexParser()])
@pytest.mark.parametrize("line", ["", "not json", "[1,2]", '"str"', '{"type":"assistant"}',
                                  '{"type":"assistant","message":{"content":[null]}}',
                                  '{"type":"item.completed","item":null}', "\x00\xff"])
def test_malformed_lines_never_raise(parser: ClaudeParser | CodexParser, line: str) -> None:
    for parsed in parser.feed(line):
        assert parsed.kind == "notice"


def test_command_parser_keeps_lines_and_exit_code() -> None:
    parser = CommandParser()
    assert parser.feed("a b") == [Parsed("text", "a b\n")]
    assert parser.outcome(0).kind == "completed"
    assert triple(parser.outcome(3))[:2] == ("failed", "the agent exited with code 3")


def test_command_lines() -> None:
    # the prompt goes on stdin: never in argv, where "-x" would be an option
    claude = ClaudeAgent("claude", "claude", ["--model", "x"])
    assert claude.argv("hi", "S1") == ["claude", "-p", "--output-format", "stream-json",
                                       "--verbose", "--resume", "S1", "--model", "x"]
    codex = CodexAgent("codex", "codex", ["-c", "a=b"])
    assert codex.argv("-x", None) == ["codex", "-c", "a=b", "exec", "--json",
                                      "--skip-git-repo-check", "-"]
    assert codex.argv("go", "T1")[-3:] == ["resume", "T1", "-"]
    assert claude.stdin_prompt and codex.stdin_prompt


def test_codex_reconnects_are_retry_notices_not_errors() -> None:
    # Codex 0.171.0 on an HTTP 500, as printed (the message is Codex's own, not the server's)
    busy = "We\\u2019re currently experiencing high demand, which may cause temporary errors."
    lines = [
        '{"type":"thread.started","thread_id":"t1"}',
        *[f'{{"type":"error","message":"Reconnecting... {n}/5 ({busy})"}}' for n in (1, 5)],
        f'{{"type":"error","message":"{busy}"}}',
        f'{{"type":"turn.failed","error":{{"message":"{busy}"}}}}',
    ]
    parser = CodexParser()
    events = [triple(e) for line in lines for e in parser.feed(line)]
    assert kinds(events) == ["session", "notice", "notice", "error"]
    assert events[1][1] == ("API error (We’re currently experiencing high demand, which may "
                            "cause temporary errors.); retrying (1/5)")
    assert events[2][2] == {"retry": True}
    kind, message, _ = triple(parser.outcome(1))
    assert kind == "failed" and message.startswith("We’re currently experiencing high demand")
