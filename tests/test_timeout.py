"""The timeout controller through the real bot, turn runner and agent subprocess.

Durations are sub-second so the suite stays fast; assertions leave room for a loaded machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from cadenza.api import hookimpl
from conftest import agent_config, gone

pytestmark = pytest.mark.usefixtures("agent_path")


def config(**timeout: object) -> str:
    values = {"kill_grace": 0.3, **timeout}
    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in values.items())
    return agent_config("claude") + f"[timeout]\n{lines}\n"


def warnings(h) -> list[float]:
    return [w.stage for kind, w in h.recorder.other if kind == "warning"]


def kinds(h, prefix: str = "timeout_") -> list[str]:
    return [e.kind for e in h.recorder.events if e.kind.startswith(prefix)]


async def test_warnings_fire_once_per_stage_in_order_then_expiry(start_app) -> None:
    h = await start_app(config(seconds=1.2, warn_before=[0.8, 0.4], activity_window=0.1))
    await h.say("say hi; sleep 30")
    (end,) = await h.recorder.finished()
    assert warnings(h) == [0.8, 0.4]
    assert kinds(h) == ["timeout_warn_0.8", "timeout_warn_0.4"]
    assert end.kind == "timed_out"
    assert "Last output: “hi”" in end.text and "follow-up prompt" in end.text
    assert 1.2 <= end.data["elapsed"] < 3
    for event in h.recorder.events:
        if event.kind.startswith("timeout_warn"):
            assert event.data["at"] - event.data["due"] < 0.25


async def test_no_warning_for_a_turn_that_ends_early(start_app) -> None:
    h = await start_app(config(seconds=1, warn_before=[0.5]))
    await h.say("say quick")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    await asyncio.sleep(0)  # give a stray timer the chance to misbehave
    assert h.app.loader.instances["timeout"].deadlines == {}
    assert warnings(h) == [] and kinds(h) == []


async def test_activity_extends_the_deadline(start_app) -> None:
    h = await start_app(config(seconds=0.5, warn_before=[0.2], extend_by=0.5, max_seconds=10,
                               activity_window=0.4))
    await h.say("tick 12 0.1 x")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    extended = [e for e in h.recorder.events if e.kind == "timeout_extended"]
    assert extended and "extension 1 of at most 19" in extended[0].text


async def test_silence_does_not_extend(start_app) -> None:
    h = await start_app(config(seconds=0.5, warn_before=[0.2], extend_by=5, max_seconds=10,
                               activity_window=0.2))
    await h.say("say once; sleep 30")
    (end,) = await h.recorder.finished()
    assert end.kind == "timed_out" and "timeout_extended" not in kinds(h)
    assert end.data["elapsed"] < 2


async def test_the_cap_holds_under_continuous_output_and_warnings_rearm(start_app) -> None:
    h = await start_app(config(seconds=0.6, warn_before=[0.3], extend_by=0.4, max_seconds=1.4,
                               activity_window=0.5))
    await h.say("tick 100 0.05 x")
    (end,) = await h.recorder.finished()
    assert end.kind == "timed_out"
    assert end.data["extensions"] == 2 == len([k for k in kinds(h) if k == "timeout_extended"])
    assert 1.4 <= end.data["elapsed"] < 3
    # one warning before each deadline: 0.6, 1.0 and the capped 1.4
    assert kinds(h, "timeout_warn") == ["timeout_warn_0.3"] * 3


async def test_extend_and_stop_from_chat(start_app) -> None:
    h = await start_app(config(seconds=0.8, warn_before=[0.4], extend_by=1, max_seconds=2.5,
                               activity_window=0))
    await h.say("sleep 30")
    await h.recorder.wait_for(lambda: warnings(h))
    await h.say("/extend")
    await h.recorder.wait_for(lambda: "timeout_extended" in kinds(h))
    extended = next(e for e in h.recorder.events if e.kind == "timeout_extended")
    assert "asked in chat" in extended.text
    await h.recorder.wait_for(lambda: len(warnings(h)) == 2)  # re-armed for the new deadline
    assert not h.recorder.terminals()
    runner = next(iter(h.bot._runners.values()))
    assert runner.elapsed > 0.8  # outlived the original deadline
    await h.say("/stop")
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled"


async def test_extend_at_the_cap_is_refused(start_app) -> None:
    h = await start_app(config(seconds=1, warn_before=[0.5], extend_by=1, max_seconds=1))
    await h.say("sleep 30")
    await h.recorder.wait_for(lambda: any(e.kind == "text" or e.kind == "session"
                                          for e in h.recorder.events))
    await h.say("/extend")
    await h.recorder.wait_for(lambda: h.recorder.notices)
    assert "already at its hard limit" in h.recorder.notices[0].text
    await h.recorder.finished()


async def test_expiry_kills_the_whole_group(start_app) -> None:
    h = await start_app(config(seconds=0.8, warn_before=[0.4], activity_window=0))
    await h.say("ignore_term; grandchild; sleep 30")
    said = await h.recorder.wait_for(
        lambda: [e.text for e in h.recorder.events if e.kind == "text"])
    grandchild = int(said[0].split()[-1])
    leader = next(iter(h.bot._runners.values()))._process.proc.pid
    (end,) = await h.recorder.finished()
    assert end.kind == "timed_out"
    assert gone(leader) and gone(grandchild)


async def test_a_hanging_warning_plugin_does_not_delay_the_kill(start_app) -> None:
    class Hangs:
        @hookimpl
        async def on_timeout_warning(self, warning):
            await asyncio.sleep(3600)

    h = await start_app(config(seconds=0.8, warn_before=[0.6, 0.3], activity_window=0)
                        + "[core]\nhook_timeout = 30\n", hangs=Hangs())
    began = time.monotonic()
    await h.say("sleep 30")
    (end,) = await h.recorder.finished()
    assert end.kind == "timed_out"
    assert time.monotonic() - began < 2.5
    assert warnings(h) == [0.6, 0.3]


@pytest.mark.parametrize(("setting", "needle"), [
    ("seconds = -1", "[timeout] seconds: must be at least"),
    ("warn_before = [60, 4000]", "[timeout] warn_before: each stage must be between 0 and"),
    ("seconds = 100\nmax_seconds = 50", "[timeout] max_seconds: must be at least seconds"),
    ("extend_by = 'long'", "[timeout] extend_by: must be a number"),
])
def test_invalid_settings_exit_2_naming_the_key(run_cli, tmp_path, setting, needle) -> None:
    (tmp_path / "plugins.toml").write_text(f"[timeout]\n{setting}\n")
    done = run_cli("run", input="")
    assert done.returncode == 2 and needle in done.stderr, done.stderr


async def test_events_plugins_add_follow_the_turn_in_order_and_never_after_its_end(
        start_app) -> None:
    """What a plugin posts into a turn (as the timeout's warnings and extensions) goes out in
    sequence with the agent's own events; once the terminal event is out, posts are dropped."""
    runners = {}

    class Poster:
        @hookimpl
        async def on_stream_event(self, event):
            runner = runners.setdefault(event.turn.id, h.bot.running(event.turn.id))
            if event.kind == "text":
                runner.post("note", f"after {event.text}")
                await asyncio.sleep(0.01)  # slow: the agent's next lines queue up meanwhile
            elif event.terminal:
                runner.post("too_late")

    h = await start_app(agent_config("claude"), poster=Poster())
    await h.say("say a; say b; say c")
    (end,) = await h.recorder.finished()
    await asyncio.sleep(0.05)  # room for a late post to show up, were it not dropped
    seen = [e for e in h.recorder.events if e.turn.id == end.turn.id]
    assert [e.seq for e in seen] == list(range(len(seen)))
    assert seen[-1] is end and "too_late" not in [e.kind for e in seen]
    assert [e.text for e in seen if e.kind == "note"] == ["after a", "after \n\nb",
                                                          "after \n\nc"]
