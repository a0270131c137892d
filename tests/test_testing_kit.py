"""cadenza.testing, the plugin authors' kit, used the way a plugin's own tests use it: through
the ``cadenza_app`` fixture that the ``pytest11`` entry point provides, with no conftest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cadenza.api import TOOL_USE, ChatRef, hookimpl
from cadenza.testing import (
    CHAT,
    STREAMS,
    ManualClock,
    recorded,
    replay_agent,
    scripted_agent,
)
from cadenza.testing.fake_agent import big_text
from conftest import gone


class Shout:
    """A plugin under test: a /shout command, and a count of the words agents answered."""

    def __init__(self) -> None:
        self.words = 0

    @hookimpl
    def register_commands(self, register):
        register("shout", self.shout, help="say it louder")

    async def shout(self, bot, message, args):
        await bot.notify(message.chat, args.upper() + "!")

    @hookimpl
    def on_stream_event(self, event):
        if event.kind == "text":
            self.words += len(event.text.split())


async def test_a_plugin_under_test_runs_in_the_real_core(cadenza_app) -> None:
    shout = Shout()
    h = await cadenza_app(scripted_agent(), shout=shout)
    await h.say("/shout hello")
    await h.say("say one two three")
    (end,) = await h.frontend.finished()
    assert h.frontend.notice_texts() == ["HELLO!"]
    assert end.kind == "completed" and end.turn.chat == CHAT
    assert h.frontend.text_of(end.turn.id) == "one two three" and shout.words == 3
    assert h.plugin("shout") is shout and h.plugin("timeout") is not None
    kinds = [kind for kind, _ in h.frontend.log]
    assert kinds[0] == "lifecycle" and "notice" in kinds and kinds[-1] == "event"
    assert not {"console", "files"} & set(h.app.loader.instances)  # off in a test
    assert "console" not in h.config_path.read_text()  # in memory: the file is the test's
    assert h.state_dir.is_dir() and h.config_path.parent == h.state_dir.parent


async def test_a_toml_without_an_agent_gets_the_scripted_claude(cadenza_app) -> None:
    h = await cadenza_app("[timeout]\nseconds = 600\n")
    await h.say("say hi")
    (end,) = await h.frontend.finished()
    assert end.turn.agent == "claude" and h.frontend.text_of(end.turn.id) == "hi"


async def test_the_scripted_codex(cadenza_app) -> None:
    h = await cadenza_app(scripted_agent("codex"))
    await h.say("say one; tool echo two")
    (end,) = await h.frontend.finished()
    kinds = [e.kind for e in h.frontend.events]
    assert kinds == ["started", "session", "text", "tool_use", "tool_result", "usage",
                     "completed"]
    assert end.turn.agent == "codex"
    with pytest.raises(ValueError, match="claude or codex"):
        scripted_agent("gemini")


async def test_replay_agent_claude_tool_gives_the_tool_events(cadenza_app) -> None:
    h = await cadenza_app(replay_agent("claude-tool"))
    await h.say("whatever the prompt")
    (end,) = await h.frontend.finished()
    events = h.frontend.events
    (use,) = [e for e in events if e.kind == TOOL_USE]
    (result,) = [e for e in events if e.kind == "tool_result"]
    assert use.data["name"] == "Bash" and result.data["id"] == use.data["id"]
    assert events.index(use) < events.index(result)
    assert end.kind == "completed" and h.frontend.text_of(end.turn.id)


@pytest.mark.parametrize("name", STREAMS)
async def test_every_recorded_stream_replays_through_its_parser(cadenza_app, name) -> None:
    h = await cadenza_app(replay_agent(name))
    await h.say("go")
    (end,) = await h.frontend.finished()
    assert end.turn.agent == name.split("-")[0]
    assert end.kind == ("failed" if name.endswith("-error") else "completed"), end.text
    assert recorded(name).read_text().count("\n") >= 3
    lines = recorded(name).read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_recorded_names_every_shipped_stream() -> None:
    assert {"claude-text", "claude-tool", "claude-error", "claude-silence", "claude-big",
            "claude-resume", "claude-denied", "codex-text", "codex-tool", "codex-error",
            "codex-resume"} <= set(STREAMS)
    assert recorded("codex-tool.jsonl") == recorded("codex-tool")
    with pytest.raises(ValueError, match="there are: claude-big"):
        recorded("claude-nothing")


async def test_manual_clock_drives_the_timeouts_without_waiting(cadenza_app) -> None:
    clock = ManualClock()
    h = await cadenza_app(
        scripted_agent() + "[timeout]\nseconds = 1800\nwarn_before = [60, 10]\n"
        "activity_window = 30\nkill_grace = 0.2\n", clock=clock)
    await h.say("say working; sleep 60")
    await h.frontend.wait_for(lambda: any(e.kind == "text" for e in h.frontend.events))
    await h.frontend.wait_for(lambda: 1740 in clock.sleepers)  # the controller's first wake
    await clock.advance(1740)
    (first,) = await h.frontend.wait_for(lambda: h.frontend.warnings)
    assert (first.stage, first.seconds_left, first.elapsed) == (60, 60, 1740)
    clock.advance(50)
    await h.frontend.wait_for(lambda: len(h.frontend.warnings) == 2)
    assert h.frontend.warnings[1].seconds_left == 10
    clock.advance(10)  # the deadline, and the agent's last output is 30 min old
    (end,) = await h.frontend.finished(timeout=5)
    assert end.kind == "timed_out" and "30 min" in end.text
    assert [kind for kind, _ in h.frontend.log].count("warning") == 2


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock(start=100.0, wall=5000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in (("c", 30), ("a", 10), ("b", 20))]
    await asyncio.sleep(0)
    assert clock.sleepers == [110.0, 120.0, 130.0]
    await clock.advance(25)
    assert woke == [("a", 125.0), ("b", 125.0)] and clock.sleepers == [130.0]
    assert clock.time() == 5025.0
    tasks[0].cancel()
    await asyncio.sleep(0)
    assert clock.sleepers == []
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_restart_gives_a_lifecycle_and_a_recovery(cadenza_app) -> None:
    h = await cadenza_app(scripted_agent())
    assert [life.kind for life in h.frontend.lifecycles] == ["started"]
    await h.say("say slow; sleep 1; say done")
    await h.frontend.wait_for(lambda: any(e.kind == "text" for e in h.frontend.events))
    h2 = await h.restart()
    assert h.frontend.terminals()[0].kind == "interrupted"
    assert h2.frontend is not h.frontend and h2.state_dir == h.state_dir
    (life,) = h2.frontend.lifecycles
    assert (life.kind, life.interrupted) == ("restarted", 1)
    (recovery,) = h2.frontend.recoveries
    assert (recovery.action, recovery.reason, recovery.attempt) == ("resume", "restarted", 2)
    (end,) = await h2.frontend.finished()
    assert end.turn.id == recovery.turn.id and end.kind == "completed"
    await h2.stop()
    await h2.stop()  # idempotent


async def test_the_frontend_refuses_whom_it_is_told_to(cadenza_app) -> None:
    h = await cadenza_app(scripted_agent())
    h.frontend.refused.add("mallory")
    await h.say("say first; sleep 0.5")
    await h.say("say sneaky", user="mallory")  # waits behind the first, then is refused
    await h.say("say after")
    ends = await h.frontend.finished(3)
    assert [(e.kind, h.frontend.text_of(e.turn.id)) for e in ends] == [
        ("completed", "first"), ("cancelled", ""), ("completed", "after")]
    assert ends[1].data["refused"] and ends[1].turn.user_id == "mallory"
    other = ChatRef("elsewhere", "1")
    assert h.frontend.authorize(other, "u1") is None
    with pytest.raises(TimeoutError, match=r"recorded so far: .*completed"):
        await h.frontend.wait_for(lambda: False, timeout=0.1)


def test_the_scripted_agent_program_speaks_claude(tmp_path: Path) -> None:
    from cadenza.testing.agents import write_launchers

    claude = write_launchers(tmp_path) / "claude"
    done = subprocess.run([str(claude), "-p", "--output-format", "stream-json"],
                          input="say hi; big 100", capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [m["type"] for m in lines] == ["system", "assistant", "assistant", "result"]
    assert lines[2]["message"]["content"][0]["text"] == big_text(100)
    assert done.returncode == 0 and len(big_text(100)) == 100


THIRD_PARTY_TEST = '''
import pytest
from cadenza.api import hookimpl
from cadenza.testing import scripted_agent


class Echo:
    @hookimpl
    def on_stream_event(self, event):
        self.last = event.kind


@pytest.mark.asyncio
async def test_a_turn(cadenza_app):
    echo = Echo()
    h = await cadenza_app(scripted_agent("codex"), echo=echo)
    await h.say("say hi")
    (end,) = await h.frontend.finished()
    assert h.frontend.text_of(end.turn.id) == "hi" and echo.last == "completed"


@pytest.mark.asyncio
async def test_left_running(cadenza_app):
    h = await cadenza_app(scripted_agent())
    await h.say("sleep 60")
    await h.frontend.wait_for(lambda: any(e.kind == "session" for e in h.frontend.events))
'''


def test_the_fixture_needs_no_conftest_and_leaves_no_agent(tmp_path: Path) -> None:
    """A plugin distribution's tests, run by pytest in pytest-asyncio's default (strict) mode
    and with no conftest.py: the fixture comes from the entry point, and the agent a test
    left running is gone after it."""
    project = tmp_path / "cadenza-echo"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_echo.py").write_text(textwrap.dedent(THIRD_PARTY_TEST))
    (project / "pytest.ini").write_text("[pytest]\n")
    log = tmp_path / "agents.log"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env={**os.environ, "FAKE_AGENT_LOG": str(log)})
    assert "2 passed" in done.stdout, done.stdout + done.stderr
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [run["prompt"] for run in runs] == ["say hi", "sleep 60"]
    assert all(gone(run["pid"]) for run in runs)
