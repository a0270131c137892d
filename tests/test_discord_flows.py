"""The Discord frontend's flows beyond one streamed answer, end to end: the real App with
``[plugins] discord = true`` (or ``cadenza run`` as a real process), real discord.py over
real sockets, the fake Discord of ``tests/fakes/discord_api.py``, the scripted agent.

Timeout warnings and their Extend / Stop buttons (also pressed after a restart), an answer
over ``[core] max_output``, typing while the agent is quiet, lifecycle and recovery notices,
SIGHUP, where slash commands are synced, plain ``/status`` in a DM, the new message at the
end of a long turn, and SIGTERM. Durations are configured short; tests wait on the fake's
state (``server.wait_for``), never on time.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import conftest
import pytest
import test_discord
from cadenza.frontends.discord import egress
from cadenza.frontends.live.engine import Engine
from cadenza.testing.fake_agent import big_text
from cadenza.testing.harness import kit_config
from test_discord import CHANNEL, DONE, GUILD, STRANGER, USER, config, containing, dm

from tests.fakes.discord.model import ATTACH_FILES
from tests.fakes.discord_api import (
    DEFAULT_TOKEN,
    EDIT,
    GLOBAL_COMMANDS,
    GUILD_COMMANDS,
    SEND,
    TYPING,
    FakeDiscordServer,
    InteractionRecord,
    StoredMessage,
)

pytestmark = pytest.mark.usefixtures("agent_path")
server = test_discord.server
OTHER = 900_000_000_000_000_013  # a second allowed user
TIMEOUT = ("\n[timeout]\nseconds = 6\nwarn_before = [5.7]\nextend_by = 30\nmax_seconds = 120\n"
           "kill_grace = 0.2\n")  # a warning 0.3 s into a turn, with time left to press
EPHEMERAL = 1 << 6
Launch = Callable[..., Awaitable[Any]]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)
    return DEFAULT_TOKEN


@pytest.fixture
def launch(server: FakeDiscordServer, start_app: Any, token: str) -> Launch:
    """``await launch(tables, **discord)``: Cadenza on the fake with ``tables`` (TOML) after
    the ``[discord]`` table, returned once discord.py is connected (on_ready: the engine may
    send). The state directory is the test's, so a second launch is a restart."""

    async def go(tables: str = "", **discord: str) -> Any:
        h = await start_app(config(server, **discord) + tables)
        async with asyncio.timeout(15):
            await h.plugin("discord").engine.ready.wait()
        return h

    return go


async def answer(server: FakeDiscordServer, press: InteractionRecord) -> str:
    """What the bot answered a button press or slash command (an ephemeral message)."""
    body = await server.wait_for(lambda: press.response, 10)
    assert body["data"]["flags"] & EPHEMERAL
    return str(body["data"]["content"])


def starting(server: FakeDiscordServer, channel: int, prefix: str) -> Callable[[], Any]:
    """A wait_for predicate: the bot's newest message in ``channel`` starting with ``prefix``."""

    def find() -> StoredMessage | None:
        return next((m for m in reversed(server.bot_messages(channel))
                     if m.content.startswith(prefix)), None)

    return find


def shown_at(server: FakeDiscordServer, channel: int, needle: str) -> float:
    """When the first send or edit showing ``needle`` in ``channel`` was made (loop time)."""
    return next(call.at for call in server.calls
                if call.route in (SEND, EDIT) and call.channel_id == channel
                and needle in (call.body or {}).get("content", ""))


async def crash(h: Any) -> None:
    """Stop as a crash would leave Discord: from now on no edit reaches it, so live messages
    keep "working…" and their buttons (``flush_timeout`` should be short)."""

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    transport = h.plugin("discord").connection.transport
    transport.edit = transport.clear_buttons = stuck
    await h.stop()


def run_cadenza(tmp_path: Path, toml: str) -> subprocess.Popen[str]:
    """``cadenza run`` as a real process on the test's plugins.toml and state directory, with
    the toml as the in-process tests run it (``kit_config``)."""
    path = tmp_path / "plugins.toml"
    path.write_text(kit_config(toml))
    return conftest.start(["run", "--config", str(path), "--state-dir",
                           str(tmp_path / "state")], {}, tmp_path)


async def ended(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[str, str]:
    """Its output once it exited; waited for in a thread, so the fake keeps serving it."""
    return await asyncio.to_thread(proc.communicate, timeout=timeout)


# --------------------------------------------------------------------------- timeouts


async def test_a_timeout_warning_offers_extend_and_stop_and_extend_extends(
        launch, server) -> None:
    h = await launch(TIMEOUT)
    server.push_message(CHANNEL, USER, "say started; sleep 30", mention_bot=True)
    warning = await server.wait_for(starting(server, CHANNEL, "⏳ about"), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    live = server.bot_messages(CHANNEL)[0]
    assert live is not warning and "/extend for more time" in warning.content
    both = [f"extend:{turn.id}", f"stop:{turn.id}"]
    assert warning.custom_ids == both
    await server.wait_for(lambda: live.custom_ids == both, 10)
    # a member of the guild who is not on the allowlist cannot press them
    press = server.press_button(warning, f"stop:{turn.id}", STRANGER)
    assert "allowed" in await answer(server, press)
    assert h.bot.running(turn.id) is not None
    # Extend reaches the timeout plugin's /extend; the warning's buttons go away
    press = server.press_button(warning, f"extend:{turn.id}", USER)
    assert await answer(server, press) == "Asking for more time…"
    await server.wait_for(lambda: "extended by 30 s" in live.content, 10)
    await server.wait_for(lambda: not warning.buttons and live.custom_ids == [f"stop:{turn.id}"],
                          10)
    assert h.bot.running(turn.id) is not None and not h.recorder.terminals()


async def test_buttons_sent_before_a_restart_still_work_checked_by_chat_and_allowlist(
        launch, server, monkeypatch) -> None:
    h = await launch(TIMEOUT, flush_timeout="0.2")
    server.push_message(CHANNEL, USER, "say started; sleep 30", mention_bot=True)
    warning = await server.wait_for(starting(server, CHANNEL, "⏳ about"), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    live = server.bot_messages(CHANNEL)[0]
    await server.wait_for(lambda: len(live.buttons) == 2, 10)
    await crash(h)
    assert warning.buttons and live.buttons  # what a crash leaves behind
    # the restarted Cadenza's clean-up has not reached those buttons yet (held for the whole
    # test; the crash tests below see it done)
    monkeypatch.setattr(Engine, "finish_left_over", lambda engine: asyncio.Event().wait())
    channel = dm(server)
    h = await launch(TIMEOUT.replace("[5.7]", "[]"), lifecycle_channels=f'["{channel}"]')
    resumed = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(CHANNEL) if m.id > warning.id
         and m.content.startswith("started")), None), 15)
    assert h.bot.running(turn.id) is not None  # the journal resumed it: same turn id
    # the allowlist: a stranger's press on the old warning is refused
    press = server.press_button(warning, f"extend:{turn.id}", STRANGER)
    assert "allowed" in await answer(server, press)
    # the chat: the same Stop button on a message in another channel stops nothing
    notice = await server.wait_for(containing(server, channel, "🔄 Cadenza restarted"), 10)
    notice.components = copy.deepcopy(warning.components)
    press = server.press_button(notice, f"stop:{turn.id}", USER)
    assert await answer(server, press) == "That turn already ended."
    assert h.bot.running(turn.id) is not None
    assert "extended" not in resumed.content
    # the allowed user's press on the message the previous run sent extends the turn
    press = server.press_button(warning, f"extend:{turn.id}", USER)
    assert await answer(server, press) == "Asking for more time…"
    await server.wait_for(lambda: "extended by 30 s" in resumed.content, 10)


# --------------------------------------------------------------------------- output


async def test_an_answer_over_max_output_ends_with_the_whole_output_attached(
        launch, server) -> None:
    h = await launch("\n[core]\nmax_output = 2000\n")
    server.push_dm(USER, "big 20000")
    channel = dm(server)
    document = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(channel) if m.attachments), None), 20)
    (end,) = h.recorder.terminals()
    (attachment,) = document.attachments
    assert attachment.filename == f"output-{end.turn.id}.txt"
    assert attachment.data.decode() == big_text(20_000)
    assert document.content.startswith("📄 The whole output of this turn (20 KB); ")
    assert document.content.endswith("KB of it was not shown above.")
    texts = server.texts(channel)
    assert document is server.bot_messages(channel)[-1] and DONE in texts[-2]
    assert any("KB omitted" in text for text in texts)
    assert sum(len(text) for text in texts) < 5000  # the chat got the head and the tail only


async def test_a_file_the_channel_does_not_let_the_bot_attach_is_a_clear_message(
        launch, server) -> None:
    server.set_overwrite(CHANNEL, server.bot_role(GUILD).id, deny=ATTACH_FILES)
    h = await launch("\n[core]\nmax_output = 2000\n")
    server.push_message(CHANNEL, USER, "big 20000", mention_bot=True)
    await server.wait_for(lambda: server.count_status(403, SEND), 15)  # the upload refused
    async with asyncio.timeout(10):  # the room has nothing more to send
        await h.plugin("discord").engine.outboxes[CHANNEL].drain()
    told = containing(server, CHANNEL, "could not be sent as a file")()
    assert told is not None, server.texts(CHANNEL)[-1]
    (end,) = h.recorder.terminals()
    assert f"outputs/{end.turn.id}.txt" in told.content  # where the file is kept


async def test_typing_shows_while_the_agent_is_quiet_not_while_text_streams(
        launch, server, monkeypatch) -> None:
    # "typing" lasting 1.5 s, so it would be renewed every second if it were sent regardless
    monkeypatch.setattr(egress, "TYPING_LASTS", 1.5)
    await launch(edit_interval="1")  # quiet means no call for two edit intervals
    channel = dm(server)
    server.push_dm(USER, "sleep 3; say end")
    server.push_message(CHANNEL, USER, "tick 10 0.3 part", mention_bot=True)
    await server.wait_for(containing(server, channel, DONE), 20)
    await server.wait_for(containing(server, CHANNEL, DONE), 20)
    quiet = (shown_at(server, channel, "⏳ working"), shown_at(server, channel, "end"))
    assert any(quiet[0] < at < quiet[1] for at in server.typing_in(channel))
    assert all(call.ok for call in server.calls_to(TYPING, channel_id=channel))
    streaming = (shown_at(server, CHANNEL, "part 1"), shown_at(server, CHANNEL, DONE))
    assert streaming[1] - streaming[0] > 1.5  # long enough for a renewal
    assert not [at for at in server.typing_in(CHANNEL) if streaming[0] <= at <= streaming[1]]


async def test_a_turn_longer_than_notify_after_ends_with_a_new_message(launch, server) -> None:
    await launch(notify_after="1")
    channel = dm(server)
    server.push_message(CHANNEL, USER, "say quick", mention_bot=True)
    server.push_dm(USER, "say working; sleep 1.5; say finished")
    ping = await server.wait_for(starting(server, channel, DONE), 15)
    live, last = server.bot_messages(channel)
    assert last is ping and ping.id > live.id and ping.history == [ping.content]  # not an edit
    assert live.content.startswith("working\n\nfinished\n\n" + DONE)
    assert ping.content.endswith(" — say working; sleep 1.5; say finished")
    assert len(ping.content) < 100
    (quick,) = server.bot_messages(CHANNEL)  # the short turn got no message of its own
    assert quick.content.startswith("quick") and DONE in quick.content
    assert f"<@{USER}>" not in ping.content  # a DM notifies anyway


async def test_in_a_server_the_new_message_mentions_the_person_and_pings_nobody_else(
        launch, server) -> None:
    await launch(notify_after="1")
    server.push_message(CHANNEL, USER, "say working; sleep 1.5; say @everyone done",
                        mention_bot=True)
    ping = await server.wait_for(starting(server, CHANNEL, f"<@{USER}> {DONE}"), 15)
    create = [call for call in server.calls_to("POST /channels/{channel_id}/messages")
              if call.body and str(call.body.get("content", "")).startswith(f"<@{USER}>")]
    assert create[-1].body["allowed_mentions"] == {"parse": [], "users": [USER]}
    live = server.bot_messages(CHANNEL)[0]
    assert live is not ping and "@everyone" in live.content  # text, pinging nobody


# --------------------------------------------------------------------------- restarts


async def test_lifecycle_notices_go_to_lifecycle_channels(launch, server) -> None:
    h = await launch(lifecycle_channels=f'["{CHANNEL}"]')
    await server.wait_for(containing(server, CHANNEL, "▶️ Cadenza started"), 10)
    await h.stop()
    await launch(lifecycle_channels=f'["{CHANNEL}"]')
    await server.wait_for(containing(server, CHANNEL, "🔄 Cadenza restarted"), 10)
    assert [m.content.split(" —")[0] for m in server.bot_messages(CHANNEL)] == [
        "▶️ Cadenza started", "🔄 Cadenza restarted"]


async def test_lifecycle_notices_go_by_default_to_channels_active_recently(
        launch, server) -> None:
    h = await launch()
    server.push_dm(USER, "say first")
    channel = dm(server)
    await server.wait_for(containing(server, channel, DONE), 15)
    await h.stop()
    await launch()
    await server.wait_for(containing(server, channel, "🔄 Cadenza restarted"), 10)
    first, notice = server.bot_messages(channel)  # no "started" before: nothing was active
    assert first.content.startswith("first") and notice.content.startswith("🔄")
    assert server.bot_messages(CHANNEL) == []


async def test_a_turn_a_crash_cut_short_is_announced_and_resumed_where_it_ran(
        launch, server, tmp_path) -> None:
    proc = run_cadenza(tmp_path, config(server))
    PROMPT = "say first; sleep 0.6; say second; sleep 30"
    try:
        await server.wait_for(lambda: server.gateway.connected, 30)
        thread = server.add_thread(CHANNEL, name="work")
        server.push_message(thread.id, USER, PROMPT, mention_bot=True)
        # edited, so its text is on record (written before each edit; a kill -9 between a
        # send and its record is a window of its own)
        live = await server.wait_for(lambda: next(
            (m for m in server.bot_messages(thread.id) if "second" in m.content
             and len(m.history) > 1), None), 30)
    finally:
        proc.kill()
        await ended(proc)
    assert "⏳ working" in live.content and live.buttons  # what kill -9 leaves behind
    h = await launch()  # the same state directory: the journal finds the turn
    notice = await server.wait_for(containing(server, thread.id, "↻ resuming"), 15)
    assert notice.content == f"↻ resuming your interrupted task (attempt 2): {PROMPT}"
    await server.wait_for(lambda: "interrupted" in live.content and not live.buttons, 15)
    assert live.content == ("first\n\nsecond\n\n*⏸ interrupted (Cadenza crashed) — resuming it "
                            "below (attempt 2)*")
    await server.wait_for(containing(server, thread.id, "🔄 Cadenza restarted after a crash"), 10)
    await server.wait_for(lambda: len(server.bot_messages(thread.id)) >= 4, 10)  # resumed
    assert [e.turn.attempt for e in h.recorder.events if e.kind == "started"] == [2]
    assert server.bot_messages(CHANNEL) == [] and server.bot_messages(dm(server)) == []


async def test_an_abandoned_turn_is_announced_where_it_ran(launch, server) -> None:
    never = "\n[journal]\nmax_attempts = 0\n"
    h = await launch(never, flush_timeout="0.2")
    server.push_message(CHANNEL, USER, "say first; sleep 30", mention_bot=True)
    live = await server.wait_for(containing(server, CHANNEL, "first"), 15)
    await crash(h)
    await launch(never)
    told = await server.wait_for(starting(server, CHANNEL, "⚠️"), 15)
    assert told.content.startswith("⚠️ your task was interrupted and will not be resumed")
    assert told.content.endswith("\nsay first; sleep 30")
    await server.wait_for(lambda: "⏸ interrupted" in live.content and not live.buttons, 15)
    assert live.content.startswith(
        "first\n\n*⏸ interrupted (Cadenza restarted) — it will not be resumed")
    assert server.bot_messages(dm(server)) == []


# --------------------------------------------------------------------------- access, commands


async def test_sighup_removing_a_user_refuses_their_next_message(launch, server, caplog) -> None:
    caplog.set_level(logging.INFO)
    both = f'["{USER}", "{OTHER}"]'
    h = await launch(allowed_users=both)
    other = dm(server, OTHER)
    server.push_dm(OTHER, "say hello")
    await server.wait_for(containing(server, other, DONE), 15)
    toml = h.config_path.read_text()

    async def reload(allowed: str) -> None:
        h.config_path.write_text(toml.replace(f"allowed_users = {both}",
                                              f"allowed_users = {allowed}"))
        await h.app.reload()  # what SIGHUP does

    await reload('["someone"]')
    assert "the allowlist was not reloaded" in caplog.text
    await reload(f'["{USER}"]')
    assert "discord: allowlist reloaded: 1 user(s)" in caplog.text
    server.push_dm(OTHER, "say again")
    refusal = await server.wait_for(containing(server, other, "only works for"), 10)
    assert str(OTHER) in refusal.content
    assert {event.turn.prompt for event in h.recorder.events} == {"say hello"}


@pytest.mark.parametrize("per_guild", [True, False], ids=["guild_ids", "global"])
async def test_slash_commands_are_synced_per_guild_with_guild_ids_else_globally(
        launch, server, per_guild) -> None:
    h = await launch(**({"guild_ids": f'["{GUILD}"]'} if per_guild else {}))
    where, elsewhere = (GUILD, None) if per_guild else (None, GUILD)
    synced = await server.wait_for(lambda: server.commands(where), 10)
    assert {"stop", "new", "status", "help", "session", "sessions", "extend"} <= {
        command["name"] for command in synced}
    assert server.commands(elsewhere) == []
    assert not server.calls_to(GLOBAL_COMMANDS if per_guild else GUILD_COMMANDS)
    press = server.run_command("status", USER, CHANNEL)
    assert await answer(server, press) == "`/status`"
    status = await server.wait_for(containing(server, CHANNEL, "Nothing is running."), 10)
    assert not status.flags & EPHEMERAL and h.recorder.events == []


async def test_plain_slash_status_in_a_dm_runs_the_command(launch, server) -> None:
    h = await launch()
    server.push_dm(USER, "/status")
    channel = dm(server)
    status = await server.wait_for(containing(server, channel, "Nothing is running."), 10)
    assert status.content == "Nothing is running.\nAgent: claude."
    assert h.recorder.events == []  # a command, not a prompt for the agent


# --------------------------------------------------------------------------- cadenza run


async def test_cadenza_run_exits_0_on_sigterm_with_the_live_message_finished(
        server, token, tmp_path) -> None:
    proc = run_cadenza(tmp_path, config(server))
    try:
        await server.wait_for(lambda: server.gateway.connected, 30)
        server.push_dm(USER, "say first; sleep 30")
        live = await server.wait_for(containing(server, dm(server), "first"), 30)
        assert live.buttons
        proc.send_signal(signal.SIGTERM)
        out, err = await ended(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            await ended(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "⏸ interrupted" in live.content and not live.buttons
    assert DEFAULT_TOKEN not in out + err
    assert not server.gateway.connected
