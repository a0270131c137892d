"""Tool approvals in chat, through the running app and the scripted agent.

The scripted claude's ``ask CMD`` step is a Bash call needing permission: with Cadenza
answering permission prompts it prints Claude's ``can_use_tool`` control request and waits
for the answer on its stdin (tests/../core/testing/fake_agent.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cadenza.agents.claude import ClaudeParser
from cadenza.api import APPROVAL, TOOL_RESULT, hookimpl
from cadenza.plugins.approvals_store import OPEN, requests_table
from cadenza.testing import ManualClock
from cadenza.testing.agents import launchers
from conftest import agent_config
from sqlalchemy import bindparam, update

pytestmark = pytest.mark.usefixtures("agent_path")


@pytest.fixture
def agent_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    return log


def config(timeout: float = 600, allow: tuple[str, ...] = (), extra: str = "") -> str:
    return agent_config("claude", f'{extra}\n[approvals]\nmode = "chat"\ntimeout = {timeout}\n'
                                  f"allow = {json.dumps(list(allow))}\n")


def questions(h) -> list[Any]:
    return [n for n in h.recorder.notices if n.kind == "approval" and "ask" in n.data]


def answers(h) -> list[Any]:
    return [n for n in h.recorder.notices if n.kind == "approval" and "answered" in n.data]


async def asked(h, count: int = 1) -> Any:
    """The ``count``-th question the chat was asked, once it is."""
    await h.recorder.wait_for(lambda: len(questions(h)) >= count)
    return questions(h)[count - 1]


def runs(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def tool_results(h, turn_id: str) -> list[Any]:
    return [e for e in h.recorder.events if e.turn.id == turn_id and e.kind == TOOL_RESULT]


async def test_allow_once_runs_the_tool_and_the_turn_goes_on(start_app, tmp_path,
                                                             agent_log) -> None:
    target = tmp_path / "allowed"
    h = await start_app(config())
    await h.say(f"say before; ask touch {target}; say after")
    question = await asked(h)
    key = question.data["ask"]
    assert len(key) == 6 and int(key, 16) >= 0
    assert f"$ touch {target}" in question.text
    assert question.data["buttons"] == [
        ("✅ Allow once", f"/approve {key}"),
        ("♾ Allow for this conversation", f"/approve {key} conversation"),
        ("⛔ Deny", f"/deny {key}")]
    assert not target.exists()  # nothing runs unapproved
    await h.say(f"/approve {key}", user="u1")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed", end.text
    assert target.exists()
    assert h.recorder.text_of(end.turn.id) == "before\n\napproved\n\nafter"
    (answer,) = answers(h)
    assert answer.data["answered"] == key and answer.text.startswith("✅ allowed once by u1")
    argv = runs(agent_log)[0]["argv"]
    for flag in ("--permission-prompt-tool", "--input-format", "--setting-sources"):
        assert flag in argv
    assert argv[argv.index("--setting-sources") + 1] == "user"
    assert [e.kind for e in h.recorder.events].count(APPROVAL) == 1


async def test_deny_with_a_reason_reaches_the_agent(start_app, tmp_path) -> None:
    target = tmp_path / "denied"
    h = await start_app(config())
    await h.say(f"ask touch {target}; say after")
    key = (await asked(h)).data["ask"]
    await h.say(f"/deny {key} not today")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed" and not target.exists()
    (result,) = tool_results(h, end.turn.id)
    assert result.data["is_error"] and result.text == "the user said: not today"
    assert "denied: the user said: not today" in h.recorder.text_of(end.turn.id)
    assert answers(h)[0].text.startswith("⛔ denied by u1 — “not today”")


async def test_no_answer_is_denied_at_the_timeout_without_consuming_the_deadline(
        start_app, tmp_path) -> None:
    clock = ManualClock()
    timeout = "\n[timeout]\nseconds = 30\nwarn_before = [10]\nactivity_window = 1\n"
    h = await start_app(config(timeout=50, extra=timeout), clock)
    await h.say(f"ask touch {tmp_path / 'late'}; say after")
    await asked(h)
    await clock.advance(45)  # past the turn's 30 s: it waits for the user, which is free
    assert h.recorder.terminals() == [] and h.recorder.warnings == []
    await clock.advance(6)  # the request's 50 s are up
    (end,) = await h.recorder.finished()
    assert end.kind == "completed", end.text
    assert h.recorder.warnings == []
    (result,) = tool_results(h, end.turn.id)
    assert result.text == "denied: no answer from the user within 50 s"
    (answer,) = answers(h)
    assert answer.text.startswith("⌛ denied: no answer from the user within 50 s")


async def test_the_deadline_runs_again_after_the_answer(start_app, tmp_path) -> None:
    clock = ManualClock()
    timeout = "\n[timeout]\nseconds = 30\nwarn_before = [10]\nactivity_window = 1\n"
    h = await start_app(config(extra=timeout), clock)
    await h.say(f"ask touch {tmp_path / 'x'}; sleep 30")
    key = (await asked(h)).data["ask"]
    await clock.advance(100)
    await h.say(f"/approve {key}")
    await h.recorder.wait_for(lambda: "approved" in h.recorder.text_of(questions(h)[0].data[
        "turn_id"]))
    entry = h.plugin("timeout").deadlines[questions(h)[0].data["turn_id"]]
    assert entry.deadline == pytest.approx(130)  # 30 s of its own, after 100 s of waiting
    await clock.advance(25)
    await h.recorder.wait_for(lambda: h.recorder.warnings)
    await clock.advance(10)
    (end,) = await h.recorder.finished()
    assert end.kind == "timed_out"


async def test_allow_for_the_conversation_holds_across_turns_and_restarts_until_new(
        start_app, tmp_path, agent_log) -> None:
    target = tmp_path / "again"
    prompt = f"ask touch {target}; say after"
    h = await start_app(config(allow=("Bash(git status)",)))
    await h.say(prompt)
    key = (await asked(h)).data["ask"]
    await h.say(f"/approve {key} conversation")
    await h.recorder.finished()
    assert answers(h)[0].text == f"♾ allowed for this conversation by u1: Bash(touch {target})"
    target.unlink()
    await h.say(prompt)  # the same request in the next turn: not asked
    await h.recorder.finished(2)
    assert target.exists() and len(questions(h)) == 1
    argv = runs(agent_log)[1]["argv"]
    assert argv[argv.index("--allowedTools") + 1:][:2] == ["Bash(git status)",
                                                            f"Bash(touch {target})"]

    h = await h.restart()
    target.unlink()
    await h.say(prompt)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed" and target.exists() and questions(h) == []

    await h.say("/new")
    await h.say(prompt)
    await asked(h)  # a fresh conversation: asked again
    assert f"Bash(touch {target})" not in runs(agent_log)[-1]["argv"]
    await h.say("/deny")
    await h.recorder.finished(2)


class Policy:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def decide_approval(self, request):
        self.seen.append(request)
        command = request.input.get("command", "")
        if command.startswith("rm "):
            return "deny"
        if command.startswith("touch "):
            return "allow"
        if command.startswith("false"):
            raise RuntimeError("a policy that breaks")
        return None


async def test_hook_decide_approval(start_app, tmp_path) -> None:
    """A policy plugin answers first; one that raises lets the chat decide."""
    policy = Policy()
    h = await start_app(config(), policy=policy)
    target = tmp_path / "by-policy"
    await h.say(f"ask touch {target}; ask rm -rf {tmp_path}; ask false; say after")
    key = (await asked(h)).data["ask"]  # the failing policy: the chat decides
    assert "$ false" in questions(h)[0].text
    assert target.exists() and tmp_path.exists()
    await h.say(f"/deny {key}")
    (end,) = await h.recorder.finished()
    results = tool_results(h, end.turn.id)
    assert [r.data["is_error"] for r in results] == [False, True, True]
    assert results[1].text == "denied: a policy of this bot"
    assert results[2].text == "the user denied this"
    assert [r.tool for r in policy.seen] == ["Bash"] * 3
    assert policy.seen[0].rules == (f"Bash(touch {target})",)
    notes = [e.text for e in h.recorder.events if e.data.get("approval")]
    assert notes[0].startswith("✅ allowed by a policy plugin: $ touch ")
    assert notes[1].startswith("⛔ denied by a policy plugin: $ rm -rf ")


async def test_a_stranger_cannot_answer(start_app, tmp_path) -> None:
    h = await start_app(config())
    h.recorder.refused.add("stranger")
    await h.say(f"ask touch {tmp_path / 's'}; say after")
    key = (await asked(h)).data["ask"]
    await h.say(f"/approve {key}", user="stranger")
    refusal = await h.recorder.wait_for(
        lambda: [n for n in h.recorder.notices if n.kind == "refusal"])
    assert "Only the users allowed" in refusal[0].text
    assert answers(h) == [] and h.recorder.terminals() == []
    await h.say("/approve")  # no key: the chat's oldest request
    (end,) = await h.recorder.finished()
    assert end.kind == "completed" and answers(h)[0].data["answered"] == key


async def test_requests_are_asked_one_at_a_time_in_order(start_app, tmp_path) -> None:
    h = await start_app(config())
    await h.say(f"ask touch {tmp_path / 'one'}; ask touch {tmp_path / 'two'}; say after")
    first = await asked(h)
    assert "one" in first.text and len(questions(h)) == 1
    await h.say("/approve")
    second = await asked(h, 2)
    assert "two" in second.text
    await h.say(f"/approve {first.data['ask']}")  # already answered
    await h.recorder.wait_for(lambda: any("No request" in t for t in h.recorder.notice_texts()))
    await h.say(f"/approve {second.data['ask']}")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed" and (tmp_path / "two").exists()


async def test_status_lists_the_open_requests_with_what_is_asked_and_how_long(
        start_app) -> None:
    clock = ManualClock()
    h = await start_app(config(), clock)
    await h.say("ask touch waits; say after")
    question = await asked(h)
    key = question.data["ask"]
    await clock.advance(125)
    plugin = h.plugin("approvals")
    assert plugin.report_status() == {"open_approval_requests": [
        {"chat": question.chat.key, "session": None, "key": key, "tool": "Bash",
         "asked": "$ touch waits", "waiting": "2 min 5 s"}]}
    await h.say(f"/approve {key}")
    await h.recorder.finished()
    assert plugin.report_status() == {"open_approval_requests": []}


async def test_stop_ends_a_waiting_turn_and_withdraws_its_request(start_app, tmp_path) -> None:
    h = await start_app(config())
    await h.say(f"ask touch {tmp_path / 'never'}; say after")
    key = (await asked(h)).data["ask"]
    await h.say("/stop")
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled"
    answer = (await h.recorder.wait_for(lambda: answers(h)))[0]
    assert answer.data["answered"] == key and "withdrawn" in answer.text
    assert not (tmp_path / "never").exists()


async def test_a_request_open_at_a_restart_is_never_answered_by_itself(start_app,
                                                                      tmp_path) -> None:
    h = await start_app(config())
    await h.say(f"ask touch {tmp_path / 'x'}; say after")
    key = (await asked(h)).data["ask"]
    plugin = h.plugin("approvals")
    rows = await plugin.store.fetch(OPEN)
    assert [row["key"] for row in rows] == [key]  # journaled as open
    h.app.loader.instances["approvals"].queues.clear()  # as if the process died here
    await plugin.store.execute(_reopen(), {"of_key": key})
    h = await h.restart()
    lapsed = await h.recorder.wait_for(lambda: answers(h))
    assert lapsed[0].data["answered"] == key and "nothing was allowed" in lapsed[0].text
    again = await asked(h)  # the journal resumed the turn: its agent asks again, and so the chat
    assert again.data["ask"] != key and "$ touch" in again.text
    await h.say(f"/approve {key}")
    await h.recorder.wait_for(lambda: any(f"No request {key}" in t
                                          for t in h.recorder.notice_texts()))


def _reopen() -> Any:
    return update(requests_table).where(requests_table.c.key == bindparam("of_key")).values(
        state="open")


async def test_mode_off_launches_claude_as_before(start_app, agent_log) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("say hi")
    await h.recorder.finished()
    assert "--permission-prompt-tool" not in runs(agent_log)[0]["argv"]


def test_the_parser_reads_a_permission_request() -> None:
    parser = ClaudeParser()
    line = json.dumps({"type": "control_request", "request_id": "r1", "request": {
        "subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "touch /tmp/x"},
        "description": "Run touch /tmp/x", "blocked_path": "/tmp/x",
        "permission_suggestions": [{"type": "addRules", "behavior": "allow", "rules": [
            {"toolName": "Bash", "ruleContent": "touch /tmp/x"}]}],
    }})
    (parsed,) = parser.feed(line)
    assert parsed.kind == APPROVAL and parsed.data["request_id"] == "r1"
    assert parsed.data["tool"] == "Bash" and parsed.data["blocked_path"] == "/tmp/x"
    assert parser.feed('{"type":"control_response","response":{"subtype":"success"}}') == []
    (usage,) = parser.feed('{"type":"result","subtype":"success","total_cost_usd":0}')
    assert usage.end_of_input


def test_approve_typed_on_the_console(tmp_path: Path) -> None:
    """``cadenza run`` with the console: the question is printed with the commands to type,
    and a typed ``/approve KEY`` answers it."""
    target = tmp_path / "console"
    (tmp_path / "project").mkdir()
    (tmp_path / "plugins.toml").write_text(
        '[plugins]\nconsole = true\nfiles = false\n\n[agent]\ndefault = "claude"\n'
        f'workdir = {json.dumps(str(tmp_path / "project"))}\n\n[agent.claude]\n'
        f'binary = {json.dumps(str(launchers() / "claude"))}\n\n[approvals]\nmode = "chat"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "cadenza.cli", "run", "--config", str(tmp_path / "plugins.toml"),
         "--state-dir", str(tmp_path / "state")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ})
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"ask touch {target}; say after\n")
        proc.stdin.flush()
        seen = []
        deadline = time.monotonic() + 30
        while not (line := proc.stdout.readline()).startswith("/approve "):
            seen.append(line)
            assert line and time.monotonic() < deadline, (seen, proc.stderr)
        key = line.split()[1]
        assert any(f"$ touch {target}" in line for line in seen), seen
        status = subprocess.run(  # beside the running bot: the open request, by chat
            [sys.executable, "-m", "cadenza.cli", "status", "--config",
             str(tmp_path / "plugins.toml"), "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert status.returncode == 0, status.stderr
        (row,) = [line for line in status.stdout.splitlines() if f"key={key}" in line]
        assert f"key={key}  tool=Bash  asked=$ touch /" in row and "  waiting=" in row
        assert "open_approval_requests: 1" in status.stdout
        proc.stdin.write(f"/approve {key}\n")
        proc.stdin.flush()
        while "after" not in (line := proc.stdout.readline()):
            seen.append(line)
            assert line and time.monotonic() < deadline, seen
        assert target.exists()
        assert any(line.startswith("✅ allowed once by") for line in seen), seen
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=20)


async def test_a_read_only_codex_turn_is_offered_a_run_with_write_access(
        start_app, agent_log) -> None:
    h = await start_app(agent_config("codex", '\n[approvals]\nmode = "chat"\n'))
    await h.say("say I could not write that")
    (first,) = await h.recorder.finished()
    offer = (await asked(h)).data
    key = offer["ask"]
    assert offer["buttons"] == [("✍ Run with write access", f"/writable {key}")]
    await h.say(f"/writable {key}")
    _, again = await h.recorder.finished(2)
    assert again.turn.options["sandbox"] == "workspace-write"
    assert again.turn.prompt.endswith("say I could not write that")
    first_argv, again_argv = (run["argv"] for run in runs(agent_log))
    thread = first.data["agent_session_id"]
    assert again_argv[-5:] == ["-s", "workspace-write", "resume", thread, "-"]
    assert "-s" not in first_argv
    assert answers(h)[0].data["answered"] == key
    assert len(questions(h)) == 1  # the run with write access earns no new offer
    await h.say(f"/writable {key}")  # once only
    await h.recorder.wait_for(lambda: any("Nothing to run again" in t
                                          for t in h.recorder.notice_texts()))
