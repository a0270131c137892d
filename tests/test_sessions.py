"""Named sessions through the bot, the fake agent and, for restarts, real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from cadenza.api import ChatRef
from conftest import CHAT, agent_config, read_until, start

OTHER = ChatRef("test", "chat-2")


@pytest.fixture
def start_app(state_backend: Backend, start_app):
    """conftest's ``start_app``, on each state backend (set up first: torn down last)."""
    async def on_backend(toml: str = "", *args: Any, **kwargs: Any) -> Any:
        return await start_app(toml + state_backend.toml(), *args, **kwargs)
    return on_backend


def texts(h, session: str) -> list[str]:
    return ["".join(e.text for e in h.recorder.events if e.turn.id == end.turn.id
                    and e.kind == "text")
            for end in h.recorder.terminals() if end.turn.session == session]


def notices(h) -> list[str]:
    return [n.text for n in h.recorder.notices]


@pytest.mark.usefixtures("agent_path")
async def test_two_named_sessions_run_beside_the_foreground(start_app) -> None:
    h = await start_app(agent_config("claude"))
    began = time.monotonic()
    await h.say("@alpha sleep 0.6; say A")
    await h.say("/session beta sleep 0.6; say B")
    await h.say("sleep 0.6; say F")
    ends = await h.recorder.finished(3)
    assert time.monotonic() - began < 1.8  # concurrently, not one after the other
    assert {(e.turn.session, e.kind) for e in ends} == {
        ("alpha", "completed"), ("beta", "completed"), ("", "completed")}
    assert texts(h, "alpha") == ["A"] and texts(h, "beta") == ["B"] and texts(h, "") == ["F"]
    assert "▶ session alpha started in the background" in notices(h)[0]


@pytest.mark.usefixtures("agent_path")
async def test_follow_ups_continue_the_agent_session_and_queue(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("@alpha tick 2 0.3 one")
    await h.say("@alpha say two")
    first, second = await h.recorder.finished(2)
    assert second.turn.resume_id == first.data["agent_session_id"]
    assert any("Queued in session alpha: 1 turn ahead" in text for text in notices(h))
    await h.say("/sessions")
    listing = await h.recorder.wait_for(lambda: [n for n in notices(h) if "Sessions:" in n])
    assert "• alpha [idle]" in listing[0] and "2 turn(s)" in listing[0]
    assert "say two — @alpha PROMPT" in listing[0]


@pytest.mark.usefixtures("agent_path")
async def test_generated_names_and_invalid_names(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("/session - say hi")
    await h.recorder.finished()
    (end,) = h.recorder.terminals()
    assert end.turn.session and end.turn.session.count("-") == 1
    for bad in ("@Bad!Name do it", "/session end do it", "@" + "x" * 40 + " hi", "/session",
                "@solo"):
        await h.say(bad)
    await h.recorder.wait_for(lambda: len(h.recorder.notices) >= 6)
    said = notices(h)[1:]
    assert "is not one" in said[0]
    assert "No session named 'do it'" in said[1]
    assert "is not one" in said[2]
    assert said[3].startswith("Usage: /session NAME PROMPT")
    assert "What should session solo do?" in said[4]
    assert len(h.recorder.terminals()) == 1  # none of them reached an agent


@pytest.mark.usefixtures("agent_path")
async def test_end_cancels_and_the_next_prompt_starts_fresh(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("@alpha say one")
    (first,) = await h.recorder.finished()
    await h.say("@alpha sleep 30")
    await h.recorder.wait_for(lambda: len([e for e in h.recorder.events
                                           if e.kind == "session"]) == 2)
    await h.say("/session end alpha")
    second = (await h.recorder.finished(2))[1]
    assert second.kind == "cancelled"
    assert "■ session alpha ended." in notices(h)
    await h.say("@alpha say again")
    third = (await h.recorder.finished(3))[2]
    assert third.turn.resume_id is None and first.data["agent_session_id"]


@pytest.mark.usefixtures("agent_path")
async def test_idle_sessions_expire_with_a_notice(start_app) -> None:
    h = await start_app(agent_config("claude") + "[sessions]\nidle_timeout = 0.4\n")
    await h.say("@alpha say hi")
    await h.recorder.finished()
    await h.recorder.wait_for(lambda: any("ended after" in n for n in notices(h)), timeout=5)
    await h.say("/sessions")
    listing = await h.recorder.wait_for(lambda: [n for n in notices(h) if "Sessions:" in n])
    assert "• alpha [ended]" in listing[0]


@pytest.mark.usefixtures("agent_path")
async def test_chats_are_isolated(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("@alpha say in chat one")
    (first,) = await h.recorder.finished()
    await h.say("/sessions", chat=OTHER)
    await h.recorder.wait_for(lambda: any("No named sessions" in n for n in notices(h)))
    await h.say("@alpha say in chat two", chat=OTHER)
    second = (await h.recorder.finished(2))[1]
    assert second.turn.chat == OTHER and second.turn.resume_id is None
    assert second.data["agent_session_id"] != first.data["agent_session_id"]
    assert all(n.chat == OTHER for n in h.recorder.notices if "No named" in n.text)


# --- restarts, with real processes -----------------------------------------------------


@pytest.fixture
def proc_env(agent_bin: Path, tmp_path: Path, state_backend: Backend) -> dict[str, str]:
    (tmp_path / "plugins.toml").write_text(
        agent_config("claude").replace("console = false", "console = true")
        + state_backend.toml())
    return {"PATH": f"{agent_bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AGENT_LOG": str(tmp_path / "agent.log")}


def argvs(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in (tmp_path / "agent.log").read_text().splitlines()]


def sessions(tmp_path: Path, backend: Backend) -> dict[str, dict]:
    return {row["name"]: row
            for row in backend.rows(tmp_path / ".cadenza", "SELECT * FROM sessions")}


def test_kill_9_during_a_session_turn_resumes_it(proc_env, tmp_path: Path,
                                                 state_backend: Backend) -> None:
    first = start(["run"], proc_env, tmp_path)
    first.stdin.write("@docs say writing; sleep 1; say written\n")
    first.stdin.flush()
    read_until(first, "writing")
    first.send_signal(signal.SIGKILL)
    first.wait()
    row = sessions(tmp_path, state_backend)["docs"]
    assert row["state"] == "running" and row["agent_session_id"]

    second = start(["run"], proc_env, tmp_path)
    out, err = second.communicate(timeout=30)
    assert "[docs] ↻ resuming your interrupted task (attempt 2): say writing" in out, err
    assert "[docs] written" in out
    row = sessions(tmp_path, state_backend)["docs"]
    assert row["state"] == "idle" and row["last_prompt"].startswith("say writing; sleep 1")
    resumed = argvs(tmp_path)[-1]
    assert resumed[resumed.index("--resume") + 1] == row["agent_session_id"]


def test_follow_up_after_a_restart_continues_the_conversation(proc_env, tmp_path, run_cli,
                                                              state_backend: Backend) -> None:
    first = start(["run"], proc_env, tmp_path)
    first.communicate("@docs say one\n", timeout=30)
    session_id = sessions(tmp_path, state_backend)["docs"]["agent_session_id"]
    second = start(["run"], proc_env, tmp_path)
    out, _ = second.communicate("@docs say two\n", timeout=30)
    assert "[docs] two" in out
    follow_up = argvs(tmp_path)[-1]
    assert follow_up[follow_up.index("--resume") + 1] == session_id
    status = run_cli("status", "--json", env=proc_env)
    rows = json.loads(status.stdout)["sessions"]
    assert [(r["chat"], r["name"], r["turns"]) for r in rows] == [("console:local", "docs", 2)]


def test_ended_sessions_are_not_resumed(proc_env, tmp_path: Path,
                                        state_backend: Backend) -> None:
    first = start(["run"], proc_env, tmp_path)
    first.stdin.write("@docs say started; sleep 30\n")
    first.stdin.flush()
    read_until(first, "started")
    first.stdin.write("/session end docs\n")
    first.stdin.flush()
    read_until(first, "⏹ stopped")
    first.send_signal(signal.SIGKILL)
    first.wait()
    out, _ = start(["run"], proc_env, tmp_path).communicate(timeout=30)
    assert "resuming" not in out
    assert sessions(tmp_path, state_backend)["docs"]["state"] == "ended"


def test_sessions_listed_with_the_chat(proc_env, tmp_path: Path) -> None:
    out, _ = start(["run"], proc_env, tmp_path).communicate(
        "@docs say hi\n/sessions\n", timeout=30)
    assert CHAT.frontend == "test" and "• docs [" in out


@pytest.mark.usefixtures("agent_path")
async def test_a_chat_has_at_most_max_per_chat_sessions(start_app) -> None:
    h = await start_app(agent_config("claude") + "\n[sessions]\nmax_per_chat = 2\n")
    for name in ("one", "two", "three"):
        await h.say(f"@{name} say {name}")
    await h.say("@one say again")  # an open session takes follow-ups
    await h.say("@three say hi", chat=OTHER)  # the limit is per chat
    ends = await h.recorder.finished(4)
    assert sorted((e.turn.chat.chat_id, e.turn.session) for e in ends) == [
        ("chat-1", "one"), ("chat-1", "one"), ("chat-1", "two"), ("chat-2", "three")]
    assert any("has 2 sessions, the most it may have" in text for text in notices(h))
    await h.say("/session end two")
    await h.say("@three say now")
    (*_, last) = await h.recorder.finished(5)
    assert last.turn.session == "three"
