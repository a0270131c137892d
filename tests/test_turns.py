"""Turns through the real bot and a real agent subprocess (the fake agent)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from conftest import CHAT, agent_config, gone

pytestmark = pytest.mark.usefixtures("agent_path")


async def test_claude_turn_streams_events_in_order(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("say hello; tool echo from-tool; say bye")
    (end,) = await h.recorder.finished()
    kinds = [e.kind for e in h.recorder.events if e.turn.id == end.turn.id]
    assert kinds == ["started", "session", "text", "tool_use", "tool_result", "text", "usage",
                     "completed"]
    assert [e.seq for e in h.recorder.events] == list(range(len(kinds)))
    assert h.recorder.text_of(end.turn.id) == "hello\n\nbye"
    assert end.data["cost_usd"] == pytest.approx(0.0123)


@pytest.mark.parametrize("agent", ["claude", "codex"])
async def test_follow_up_resumes_the_agent_session(start_app, agent: str) -> None:
    h = await start_app(agent_config(agent))
    await h.say("say one")
    (first,) = await h.recorder.finished()
    await h.say("say two")
    second = (await h.recorder.finished(2))[1]
    assert second.turn.resume_id == first.data["agent_session_id"]
    assert second.data["agent_session_id"] == first.data["agent_session_id"]
    await h.say("/new")
    await h.say("say three")
    third = (await h.recorder.finished(3))[2]
    assert third.turn.resume_id is None


async def test_garbage_output_does_not_break_the_turn(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("say a; garbage; say b")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    assert h.recorder.text_of(end.turn.id) == "a\n\nb"
    notices = [e for e in h.recorder.events if e.kind == "notice"]
    assert [n.text for n in notices] == ["this is not json {"]


async def test_failure_shows_the_stderr_tail(start_app) -> None:
    h = await start_app(agent_config("command", 'command = ["sh", "-c", "{prompt}"]'))
    await h.say("echo partial; echo 'disk on fire' >&2; exit 3")
    (end,) = await h.recorder.finished()
    assert end.kind == "failed"
    assert "exited with code 3" in end.text and "disk on fire" in end.text
    assert h.recorder.text_of(end.turn.id) == "partial\n"


async def test_api_error_fails_with_its_message(start_app) -> None:
    h = await start_app(agent_config("codex"))
    await h.say("fail quota exceeded")
    (end,) = await h.recorder.finished()
    assert (end.kind, end.text) == ("failed", "quota exceeded")


async def test_missing_binary_is_a_clear_message(start_app) -> None:
    h = await start_app('[plugins]\nconsole = false\n[agent]\ndefault = "claude"\n'
                        '[agent.claude]\nbinary = "no-such-claude-binary"\n')
    await h.say("hello")
    (end,) = await h.recorder.finished()
    assert end.kind == "failed"
    assert "no-such-claude-binary was not found" in end.text


async def test_huge_output_is_delivered_complete_within_max_output(start_app) -> None:
    h = await start_app(agent_config("claude", "[core]\nmax_output = 4000000\n"))
    await h.say("big 3000000")
    (end,) = await h.recorder.finished(timeout=60)
    assert end.kind == "completed"
    assert len(h.recorder.text_of(end.turn.id)) == 3_000_000
    assert "output_file" not in end.data


async def test_output_beyond_max_output_is_head_tail_and_a_private_file(start_app) -> None:
    h = await start_app(agent_config("claude", "[core]\nmax_output = 100000\n"))
    await h.say("big 3000000")
    (end,) = await h.recorder.finished(timeout=60)
    assert end.kind == "completed"
    shown = h.recorder.text_of(end.turn.id)
    assert len(shown) < 100_200 and "KB omitted" in shown
    whole = Path(end.data["output_file"]).read_text()
    assert len(whole) == 3_000_000
    assert whole.startswith(shown[:50_000]) and whole.endswith(shown[-50_000:])
    assert end.data["output_omitted"] == 3_000_000 - 100_000
    assert stat.S_IMODE(Path(end.data["output_file"]).stat().st_mode) == 0o600
    notices = [e for e in h.recorder.events if e.data.get("output_capped")]
    assert len(notices) == 1


async def test_prompt_while_running_is_queued_and_told(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("tick 2 0.3 first")
    await h.say("say second")
    first, second = await h.recorder.finished(2)
    assert [first.kind, second.kind] == ["completed", "completed"]
    assert h.recorder.text_of(second.turn.id) == "second"
    queued = [n for n in h.recorder.notices if n.kind == "queued"]
    assert len(queued) == 1 and queued[0].data["turn_id"] == second.turn.id
    # strictly one after the other
    first_end = h.recorder.events.index(first)
    second_start = next(i for i, e in enumerate(h.recorder.events)
                        if e.turn.id == second.turn.id and e.kind == "started")
    assert first_end < second_start


async def test_stop_kills_the_whole_process_group(start_app, tmp_path: Path) -> None:
    h = await start_app(agent_config("claude", extra="") + "[timeout]\nkill_grace = 0.3\n")
    await h.say("ignore_term; grandchild; sleep 30")
    said = await h.recorder.wait_for(
        lambda: [e.text for e in h.recorder.events if e.kind == "text"])
    grandchild = int(said[0].split()[-1])
    leader = next(iter(h.bot._runners.values()))._process.proc.pid
    started = time.monotonic()
    await h.say("/stop")
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled"
    assert time.monotonic() - started < 5
    assert gone(leader) and gone(grandchild)


async def test_stop_with_nothing_running_and_unknown_command(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("/stop")
    await h.say("/frobnicate now")
    await h.recorder.wait_for(lambda: len(h.recorder.notices) >= 2)
    assert h.recorder.notices[0].text == "Nothing is running."
    assert "Unknown command /frobnicate" in h.recorder.notices[1].text


async def test_status_and_help(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("tick 2 0.5 x")
    await h.recorder.wait_for(lambda: any(e.kind == "text" for e in h.recorder.events))
    await h.say("/status")
    await h.say("/help@cadenza_bot")
    await h.recorder.wait_for(lambda: len(h.recorder.notices) >= 2)
    status, help_text = h.recorder.notices
    assert "running" in status.text and "with claude: tick 2 0.5 x" in status.text
    for command in ("/stop", "/new", "/status", "/help"):
        assert command in help_text.text
    await h.recorder.finished()


async def test_shutdown_interrupts_running_turns(start_app) -> None:
    h = await start_app(agent_config("claude") + "[timeout]\nkill_grace = 0.5\n")
    await h.say("say working; sleep 30")
    await h.recorder.wait_for(lambda: any(e.kind == "text" for e in h.recorder.events))
    pid = next(iter(h.bot._runners.values()))._process.proc.pid
    await h.bot.shutdown()
    (end,) = h.recorder.terminals()
    assert end.kind == "interrupted"
    assert gone(pid)


async def test_chats_run_concurrently(start_app) -> None:
    from cadenza.api import ChatRef

    h = await start_app(agent_config("claude"))
    started = time.monotonic()
    await h.say("sleep 0.8; say a", chat=CHAT)
    await h.say("sleep 0.8; say b", chat=ChatRef("test", "chat-2"))
    ends = await h.recorder.finished(2)
    assert {e.kind for e in ends} == {"completed"}
    assert time.monotonic() - started < 1.6


async def test_cadenzas_secrets_are_withheld_from_agents(start_app, monkeypatch, tmp_path) -> None:
    from cadenza.config import Config
    from cadenza.frontends.telegram.settings import TelegramSettings

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:AAFakeTokenForCadenzaTests_0123456789")
    monkeypatch.setenv("CADENZA_VISIBLE", "shown")
    config = tmp_path / "telegram.toml"
    config.write_text("[telegram]\nallowed_users = [1]\n")
    TelegramSettings.read(Config.load(config).settings("telegram"))  # as the frontend does
    h = await start_app(agent_config("command", 'command = ["sh", "-c", "{prompt}"]'))
    await h.say('echo "token=[$TELEGRAM_BOT_TOKEN] other=[$CADENZA_VISIBLE]"')
    (end,) = await h.recorder.finished()
    assert h.recorder.text_of(end.turn.id) == "token=[] other=[shown]\n"


@pytest.mark.parametrize(("agent", "prompt", "needle"), [
    ("claude", "say a\0b", "contains a NUL character"),  # on stdin
    ("command", "echo a\0b", "contains a NUL character"),  # in argv
    ("command", "echo " + "x" * 200_000, "too long to hand to the agent"),  # in argv
], ids=["nul-on-stdin", "nul-in-argv", "too-long-for-argv"])
async def test_prompts_no_program_can_receive_fail_clearly(start_app, agent, prompt,
                                                           needle) -> None:
    h = await start_app(agent_config(agent))
    await h.say(prompt)
    (end,) = await h.recorder.finished()
    assert end.kind == "failed" and needle in end.text
