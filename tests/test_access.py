"""Access fails closed, hostile text never costs a turn, and what a chat may queue is bounded."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cadenza.api import ChatMessage, ChatRef, hookimpl
from cadenza.app import agent_workdir, instance_lock, plugin_health
from cadenza.config import Config, ConfigError
from cadenza.plugins.journal import turns
from cadenza.secrets import install_redaction, register_secret
from cadenza.state import StateError, Store, private_dir
from conftest import CHAT, agent_config
from sqlalchemy import column, insert, select, table

pytestmark = pytest.mark.usefixtures("agent_path")


class RaisingVeto:
    @hookimpl
    def on_inbound_message(self, message):
        raise RuntimeError("the allowlist service is down")


async def test_a_veto_that_raises_refuses_the_message(start_app) -> None:
    h = await start_app(agent_config("claude"), veto=RaisingVeto())
    await h.say("say stolen", user="stranger")
    await asyncio.sleep(0)
    await h.bot.idle()
    assert h.recorder.events == []


async def test_a_switched_off_frontend_takes_no_more_messages(start_app) -> None:
    h = await start_app(agent_config("claude") + "\n[core]\nmax_failures = 1\n")

    class Flaky:
        @hookimpl
        def on_notice(self, notice):
            raise RuntimeError("rendering broke")

    h.app.loader.register("test", Flaky())  # the "test" frontend's own plugin
    await h.say("/status")  # its on_notice fails once: the plugin is switched off
    assert h.app.relay.disabled("test")
    await h.say("say stolen")
    await h.bot.idle()
    assert h.recorder.events == []


async def test_hook_authorize(start_app) -> None:
    """A user removed from the allowlist while their prompts wait: those turns do not run."""
    h = await start_app(agent_config("claude"))
    await h.say("sleep 0.3; say first", user="alice")
    await h.say("say second", user="alice")
    await h.say("say third", user="bob")
    await h.recorder.wait_for(lambda: any(e.kind == "started" for e in h.recorder.events))
    h.recorder.refused.add("alice")  # as a SIGHUP reload of the allowlist would
    ends = await h.recorder.finished(3)
    by_prompt = {end.turn.prompt: end for end in ends}
    assert by_prompt["sleep 0.3; say first"].kind == "completed"
    assert by_prompt["say second"].kind == "cancelled"
    assert by_prompt["say second"].data["refused"]
    assert by_prompt["say third"].kind == "completed"


async def test_turns_of_a_frontend_that_does_not_answer_authorize_are_refused(start_app) -> None:
    h = await start_app(agent_config("claude"))
    elsewhere = ChatRef("nobody-owns-this", "1")
    await h.bot.handle(ChatMessage(elsewhere, "u1", "say hi"))
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled" and end.data["refused"]
    assert h.recorder.text_of(end.turn.id) == ""


async def test_hook_on_config_reload(start_app, tmp_path) -> None:
    seen = []

    class Reloads:
        @hookimpl
        def on_config_reload(self, config):
            seen.append(config.settings("mine").values.get("allowed"))

    h = await start_app(agent_config("claude") + "\n[mine]\nallowed = [1]\n", mine=Reloads())
    (tmp_path / "plugins.toml").write_text(agent_config("claude") + "\n[mine]\nallowed = [2]\n")
    await h.app.reload()
    (tmp_path / "plugins.toml").write_text("[mine\nbroken")
    await h.app.reload()  # logged; nothing reloaded
    assert seen == [[2]]


@pytest.mark.parametrize("text", ["say a\ud800b", "say \u202eevil\u202c", "say " + "x" * 100_000],
                         ids=["lone-surrogate", "right-to-left", "100k-characters"])
async def test_hostile_text_is_journaled_and_run(start_app, text) -> None:
    h = await start_app(agent_config("claude"))
    await h.say(text)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    assert end.turn.prompt == text.replace("\ud800", "\ufffd")
    row = await h.app.store.fetch_one(
        select(turns.c.prompt, turns.c.state).where(turns.c.id == end.turn.id))
    assert row == {"prompt": end.turn.prompt, "state": "completed"}


async def test_a_nul_byte_is_refused_clearly(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("say a\0b")
    (end,) = await h.recorder.finished()
    assert end.kind == "failed" and "NUL" in end.text


async def test_a_chat_queues_at_most_max_queued_prompts(start_app) -> None:
    h = await start_app(agent_config("claude", "\n[core]\nmax_queued = 2\n"))
    for n in range(4):
        await h.say(f"sleep 0.2; say {n}")
        if n == 0:  # running, so no longer waiting
            await h.recorder.wait_for(lambda: h.recorder.events)
    ends = await h.recorder.finished(3)
    assert sorted(end.turn.prompt for end in ends) == [f"sleep 0.2; say {n}" for n in range(3)]
    assert [n.kind for n in h.recorder.notices].count("error") == 1
    assert "already waiting" in h.recorder.notices[-1].text


async def test_max_running_makes_turns_wait_in_order_and_says_their_place(start_app) -> None:
    h = await start_app(agent_config("claude", "\n[core]\nmax_running = 1\n"))
    chats = [ChatRef(CHAT.frontend, f"chat-{n}") for n in range(3)]
    for n, chat in enumerate(chats):
        await h.say(f"sleep 0.2; say {n}", chat=chat)
    ends = await h.recorder.finished(3)
    assert [end.turn.chat for end in ends] == chats
    starts = [e for e in h.recorder.events if e.kind == "started"]
    for earlier, later in zip(ends, starts[1:], strict=False):
        assert earlier.seq >= 0 and later.turn.chat != earlier.turn.chat
    places = [n.data["ahead"] for n in h.recorder.notices if n.kind == "queued"]
    assert places == [0, 1]


async def test_idle_lanes_are_pruned(start_app) -> None:
    h = await start_app('[plugins]\nconsole = false\n[agent]\ndefault = "command"\n')
    for n in range(50):
        await h.say("true", chat=ChatRef(CHAT.frontend, f"chat-{n}"))
    await h.recorder.finished(50)
    await h.bot.idle()
    assert len(h.bot._lanes) == 0


async def test_a_resumed_turn_of_a_removed_user_does_not_run(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("sleep 30; say late", user="alice")
    await h.recorder.wait_for(lambda: h.recorder.events)
    await h.app.stop()  # the turn is interrupted; the next start resumes it

    class Gate:  # alice was removed from the allowlist meanwhile
        @hookimpl
        def authorize(self, chat, user_id):
            return False if user_id == "alice" else None

    h2 = await start_app(agent_config("claude"), gate=Gate())
    (end,) = await h2.recorder.finished()
    assert (end.kind, end.turn.user_id, end.data["refused"]) == ("cancelled", "alice", True)
    assert end.turn.attempt == 2 and h2.recorder.text_of(end.turn.id) == ""


def test_state_is_private_and_the_lock_follows_no_symlink(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with instance_lock(state):
        store = Store.in_dir(state)
        store.migrate("t", ["CREATE TABLE t (x INTEGER)"])
        store.execute_sync(insert(table("t", column("x"))).values(x=1))
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in state.iterdir()}
        store.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert modes == {"cadenza.lock": 0o600, "state.db": 0o600, "state.db-wal": 0o600,
                     "state.db-shm": 0o600}
    (state / "cadenza.lock").unlink()
    target = tmp_path / "elsewhere"
    (state / "cadenza.lock").symlink_to(target)
    with pytest.raises(StateError, match="lock file"), instance_lock(state):
        pass
    assert not target.exists()


def test_an_open_state_dir_is_made_private_and_a_foreign_one_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    private_dir(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    if os.getuid() == 0:
        os.chown(state, 65534, -1)
        with pytest.raises(StateError, match="belongs to uid 65534"):
            private_dir(state)


@pytest.mark.parametrize(("workdir", "holds"), [(".", "the config file"),
                                                ("..", "the config file"),
                                                ("state/..", "the config file")])
def test_a_workdir_holding_config_or_state_is_refused(tmp_path: Path, workdir, holds) -> None:
    (tmp_path / "plugins.toml").write_text(f'[agent]\nworkdir = "{workdir}"\n')
    config = Config.load(tmp_path / "plugins.toml")
    with pytest.raises(ConfigError, match=f"workdir: .* holds {holds}"):
        agent_workdir(config, tmp_path / "state")


def test_the_state_dir_inside_the_workdir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "plugins.toml").write_text('[agent]\nworkdir = "../work"\n')
    config = Config.load(tmp_path / "conf" / "plugins.toml")
    assert agent_workdir(config, tmp_path / "state") == (tmp_path / "work").resolve()
    with pytest.raises(ConfigError, match="holds the state directory"):
        agent_workdir(config, tmp_path / "work" / ".cadenza")


def test_the_default_workdir_is_a_folder_of_its_own(tmp_path: Path) -> None:
    config = Config.load(tmp_path / "plugins.toml")
    assert agent_workdir(config, tmp_path / ".cadenza") == (tmp_path / "workspace").resolve()


def test_secrets_are_redacted_from_every_log_handler() -> None:
    token = "123456789:AAE-secret-token-value"
    register_secret(token)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction()
        log = logging.getLogger("some.library.nobody.configured")
        log.error("GET https://api.example/bot%s/getMe failed", token)
        try:
            raise OSError(f"cannot connect to https://api.example/bot{token}/getMe")
        except OSError:
            log.exception("request failed")
    finally:
        root.removeHandler(handler)
    output = stream.getvalue()
    assert token not in output
    assert output.count("[redacted]") == 2  # the message and the exception's text


async def test_plugin_failures_are_stored_redacted(start_app) -> None:
    token = "987654321:BBF-another-secret"
    register_secret(token)

    class Leaky:
        @hookimpl
        def on_stream_event(self, event):
            raise RuntimeError(f"POST https://api.example/bot{token}/sendMessage: refused")

    h = await start_app(agent_config("claude"), leaky=Leaky())
    await h.say("say hi")
    await h.recorder.finished()
    (problem,) = [row["problem"] for row in await h.app.store.fetch(select(plugin_health))]
    assert token not in problem and "[redacted]" in problem


def test_hostile_text_through_the_console(run_cli, tmp_path: Path) -> None:
    """A lone surrogate (as bytes that are not UTF-8), right-to-left text, 100,000 characters
    and a NUL through `cadenza run`: each turn is journaled and run, or clearly refused."""
    lines = [b"echo a\xed\xa0\x80b", "echo \u202eevil\u202c".encode(),
             b"echo " + b"x" * 100_000, b"echo a\0b"]
    done = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "run"], input=b"\n".join(lines) + b"\n",
        capture_output=True, cwd=tmp_path, timeout=60, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "a\ufffd\ufffd\ufffdb" in out and "\u202eevil\u202c" in out and "x" * 100_000 in out
    assert "NUL character" in out
    db = sqlite3.connect(tmp_path / ".cadenza" / "state.db")
    states = [row[0] for row in db.execute("SELECT state FROM journal_turns ORDER BY created_at")]
    db.close()
    assert states == ["completed", "completed", "completed", "failed"]
