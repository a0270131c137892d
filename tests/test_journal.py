"""The recovery journal with real processes: kill -9, SIGTERM, reboot, replay limits."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from backends import Backend
from cadenza.api import ChatRef
from cadenza.testing import CHAT
from conftest import StartApp, agent_config, gone, read_until, start

BOOT = "[journal]\nboot_id_file = \"{boot}\"\n"


@pytest.fixture
def setup(agent_bin: Path, tmp_path: Path, state_backend: Backend) -> dict:
    """The journal's tests, on each state backend."""
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    log = tmp_path / "agent.log"
    env = {"PATH": f"{agent_bin}{os.pathsep}{os.environ['PATH']}", "FAKE_AGENT_LOG": str(log)}
    return {"env": env, "boot": boot, "log": log, "cwd": tmp_path, "backend": state_backend}


def write_config(setup: dict, extra: str = "") -> None:
    text = agent_config("claude").replace("console = false", "console = true")
    text += setup["backend"].toml() + BOOT.format(boot=setup["boot"]) + extra
    (setup["cwd"] / "plugins.toml").write_text(text)


def sql(setup: dict, statement: str) -> list[dict]:
    return setup["backend"].rows(setup["cwd"] / ".cadenza", statement)


def turns(setup: dict) -> list[dict]:
    return sql(setup, "SELECT * FROM journal_turns ORDER BY created_at")


def agent_calls(setup: dict) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in setup["log"].read_text().splitlines()]


def agent_prompts(setup: dict) -> list[str]:
    return [json.loads(line)["prompt"] for line in setup["log"].read_text().splitlines()]


def run(setup: dict):
    return start(["run"], setup["env"], setup["cwd"])


def crash_during(setup: dict, prompt: str, needle: str) -> None:
    """Start Cadenza, give it ``prompt``, and kill -9 it once ``needle`` was printed."""
    proc = run(setup)
    proc.stdin.write(prompt + "\n")
    proc.stdin.flush()
    read_until(proc, needle)
    proc.kill()
    proc.wait()


def finish(proc) -> str:
    """Close Cadenza's stdin; it finishes what runs and exits."""
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def test_crash_then_restart_resumes_the_turn_with_its_session(setup: dict) -> None:
    write_config(setup)
    first = run(setup)
    assert "Cadenza started" in read_until(first, "started")
    first.stdin.write("say before the crash; sleep 1.5; say after\n")
    first.stdin.flush()
    read_until(first, "before the crash")
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Linux's parent-death signal takes the agent along with Cadenza
    agent_pid = json.loads(setup["log"].read_text().splitlines()[-1])["pid"]
    assert gone(agent_pid)
    (row,) = turns(setup)
    assert row["state"] == "running" and row["attempt"] == 1 and row["agent_session_id"]

    second = run(setup)
    out = read_until(second, "✅ done")
    assert "after" in out
    assert "🔄 Cadenza restarted after a crash — down " in out
    assert "resuming 1 interrupted task" in out
    assert "↻ resuming your interrupted task (attempt 2): say before the crash" in out
    finish(second)
    (row,) = turns(setup)
    assert (row["state"], row["attempt"]) == ("completed", 2)
    resumed = agent_calls(setup)[-1]
    assert resumed[resumed.index("--resume") + 1] == row["agent_session_id"]
    assert "was interrupted (Cadenza crashed)" in agent_prompts(setup)[-1]


def test_sigterm_then_start_says_restarted_and_resumes(setup: dict) -> None:
    write_config(setup, "[timeout]\nkill_grace = 0.5\n")
    first = run(setup)
    first.stdin.write("say working; sleep 1.5; say finished\n")
    first.stdin.flush()
    read_until(first, "working")
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=10)
    assert "⏸ interrupted" in out
    assert turns(setup)[0]["state"] == "interrupted"

    second = run(setup)
    out = read_until(second, "✅ done")
    assert "🔄 Cadenza restarted — down " in out and "finished" in out
    finish(second)
    assert turns(setup)[0]["state"] == "completed"


def test_changed_boot_id_says_reboot(setup: dict) -> None:
    write_config(setup)
    finish(run(setup))
    setup["boot"].write_text("boot-2\n")
    out = finish(run(setup))
    assert "🔄 Cadenza restarted after a reboot of the machine" in out


def test_max_attempts_stops_a_replay_loop(setup: dict) -> None:
    write_config(setup, "max_attempts = 1\n")
    prompt = "say crashing again; sleep 30"
    crash_during(setup, prompt, "crashing again")
    second = run(setup)
    read_until(second, "\ncrashing again")  # attempt 2 runs (the agent said so), and crashes
    second.kill()
    second.wait()
    third = run(setup)
    out = finish(third)
    assert "1 could not be resumed" in out
    assert "⚠️ your task was interrupted and will not be resumed (it was interrupted 2 times)" \
        in out
    assert prompt in out  # the full prompt, so it can be re-sent by hand
    assert turns(setup)[0]["state"] == "abandoned"


def test_max_age_reports_old_turns_without_resuming(setup: dict) -> None:
    write_config(setup, "max_age = 0.5\n")
    crash_during(setup, "say old; sleep 30", "old")
    sql(setup, "UPDATE journal_turns SET created_at = created_at - 60")
    out = finish(run(setup))
    assert "will not be resumed (it is 1 min old)" in out
    assert len(agent_calls(setup)) == 1


def test_queued_turns_are_resumed_in_order(setup: dict) -> None:
    write_config(setup)
    first = run(setup)
    first.stdin.write("say one; sleep 1\nsay two\nsay three\n")
    first.stdin.flush()
    seen = read_until(first, "2 turns ahead")
    if "\none" not in seen:
        read_until(first, "one")
    first.kill()
    first.wait()
    assert [t["state"] for t in turns(setup)] == ["running", "queued", "queued"]
    out = finish(run(setup))
    assert "resuming 3 interrupted tasks" in out, out
    assert [t["state"] for t in turns(setup)] == ["completed"] * 3, out
    texts = [line for line in out.splitlines() if line in ("one", "two", "three")]
    assert texts == ["one", "two", "three"]


def test_status_shows_runs_and_turns(setup: dict, run_cli) -> None:
    write_config(setup)
    crash_during(setup, "say hi; sleep 1", "hi")
    finish(run(setup))
    done = run_cli("status", "--json", env=setup["env"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [run["lifecycle"] for run in report["runs"]] == ["crashed", "started"]
    assert report["turns"] == {"completed": 1}
    assert report["resumed_turns"][0]["attempt"] == 2


def test_damaged_database_is_kept_and_replaced(setup: dict) -> None:
    if setup["backend"].postgres:
        pytest.skip("SQLite's file; a PostgreSQL server keeps its own")
    write_config(setup)
    state = setup["cwd"] / ".cadenza"
    state.mkdir()
    (state / "state.db").write_bytes(b"this is not a database" * 100)
    out = finish(run(setup))
    assert "the state database was unreadable" in out
    assert list(state.glob("state.db.damaged-*"))


def test_a_second_instance_is_refused(setup: dict, run_cli) -> None:
    write_config(setup)
    first = run(setup)
    read_until(first, "started")
    second = run_cli("run", input="", env=setup["env"])
    finish(first)
    assert second.returncode == 1 and "already running" in second.stderr


def test_kill_9_at_random_points_loses_no_turn(setup: dict) -> None:
    """50 turns, Cadenza killed at random moments until all are done: the database stays
    sound and every turn ends completed or abandoned, and each abandonment is reported."""
    write_config(setup, "max_attempts = 3\n\n[core]\nmax_queued = 50\n")
    rng = random.Random(7)
    prompts = [f"say turn {n}; sleep 0.02" for n in range(50)]
    proc = run(setup)
    proc.stdin.write("".join(p + "\n" for p in prompts))
    proc.stdin.flush()
    read_until(proc, "49 turns ahead")
    outputs = []
    for _ in range(6):
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.wait()
        outputs.append(proc.stdout.read() if proc.stdout else "")
        proc = run(setup)
    outputs.append(finish(proc))
    if not setup["backend"].postgres:
        assert sql(setup, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    rows = turns(setup)
    assert sorted(row["prompt"] for row in rows) == sorted(prompts)
    assert {row["state"] for row in rows} <= {"completed", "abandoned"}
    abandoned = [row for row in rows if row["state"] == "abandoned"]
    everything = "".join(outputs)
    for row in abandoned:
        assert row["prompt"] in everything


@pytest.mark.usefixtures("agent_path")
async def test_recent_turns_are_each_chats_newest_bounded(state_backend: Backend,
                                                          start_app: StartApp) -> None:
    """What the web page's Chats view reads: per chat its newest turns, newest first, at
    most ``limit_per_chat`` each and ``limit`` in all; the prompt's head, how it ended, its
    cost and times. (``state_backend`` first: set up first, torn down after the App.)"""
    h = await start_app(agent_config() + state_backend.toml())
    other = ChatRef("test", "chat-2")
    for n in range(3):
        await h.say(f"say one {n}")
    await h.say("say two 0", chat=other)
    await h.recorder.finished(4)
    journal = h.plugin("journal")
    async with asyncio.timeout(10):  # the journal writes each end beside the frontend
        while {row["state"] for row in await journal.recent_turns()} != {"completed"}:
            await asyncio.sleep(0.02)
    rows = await journal.recent_turns(limit_per_chat=2)
    assert [(row["chat"], row["prompt"]) for row in rows] == [
        (other.key, "say two 0"), (CHAT.key, "say one 2"), (CHAT.key, "say one 1")]
    row = rows[0]
    assert row["cost_usd"] == pytest.approx(0.0123) and row["attempt"] == 1
    assert row["created_at"] <= row["started_at"] <= row["ended_at"]
    assert [row["prompt"] for row in await journal.recent_turns(limit=2)] == [
        "say two 0", "say one 2"]
    assert await journal.recent_turns(limit_per_chat=0) == []
