"""The Discord frontend: the real discord.py client, over real sockets, against the fake
Discord (``tests/fakes/discord_api.py``).

Every test runs the real App with ``[plugins] discord = true``, the scripted agent, and
``[discord] api_base`` pointed at the fake; users' messages are pushed to the fake and the
tests wait on the fake's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from cadenza.api import ChatRef
from cadenza.config import Config, ConfigError
from cadenza.frontends.discord.doctor import doctor
from cadenza.frontends.discord.settings import DiscordSettings
from cadenza.testing.fake_agent import big_text
from conftest import agent_config

from tests.fakes.discord_api import (
    DEFAULT_TOKEN,
    EDIT,
    FakeDiscordServer,
    StoredMessage,
)

pytestmark = pytest.mark.usefixtures("agent_path")

GUILD = 900_000_000_000_000_001
CHANNEL = 900_000_000_000_000_002
USER = 900_000_000_000_000_010
STRANGER = 900_000_000_000_000_011
DONE = "✅ done"
PROMPT = "say hi; sleep 0.2; say more"


def config(server: FakeDiscordServer, **discord: str) -> str:
    values = {"api_base": f'"{server.api_base}"', "allowed_users": f'["{USER}"]',
              "edit_interval": "0.3", "backoff_min": "0.05", "backoff_max": "0.3",
              "flush_timeout": "3", **discord}
    table = "".join(f"{key} = {value}\n" for key, value in values.items())
    return (agent_config("claude").replace("console = false", "console = false\ndiscord = true")
            + "\n[discord]\n" + table)


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscordServer]:
    async with FakeDiscordServer() as fake:
        fake.add_guild(GUILD, "Cadenza HQ", channels={CHANNEL: "general"}, members=[USER])
        yield fake


@pytest.fixture
def start(server: FakeDiscordServer, start_app: Any,
          monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)

    async def go(**discord: str) -> Any:
        h = await start_app(config(server, **discord))
        await server.wait_for(lambda: server.gateway.connected, 10)
        await server.wait_for(lambda: server.commands(), 10)
        return h

    return go


def containing(server: FakeDiscordServer, channel: int, needle: str) -> Callable[[], Any]:
    def find() -> StoredMessage | None:
        return next((m for m in server.bot_messages(channel) if needle in m.content), None)

    return find


def dm(server: FakeDiscordServer, user: int = USER) -> int:
    return server.dm_channel(user).id


async def test_a_streamed_reply_is_edited_into_one_message(start, server) -> None:
    h = await start()
    server.push_dm(USER, PROMPT + "; sleep 1; say end")
    channel = dm(server)
    final = await server.wait_for(containing(server, channel, DONE), 15)
    (message,) = server.bot_messages(channel)
    assert message is final
    assert message.content.startswith("hi")
    assert "more" in message.content
    assert message.history[0].startswith("⏳") or message.history[0].startswith("hi")
    assert len(message.history) >= 2 and message.buttons == []
    first = server.calls_to("POST /channels/{channel_id}/messages")[0]
    assert first.body["allowed_mentions"] == {"parse": []}
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.chat == ChatRef("discord", str(channel)) and turn.prompt.startswith(PROMPT)
    assert {"stop", "new", "status", "help"} <= {c["name"] for c in server.commands()}


async def test_a_stranger_is_refused_once_and_no_agent_starts(start, server) -> None:
    h = await start()
    server.push_dm(STRANGER, "say hi")
    server.push_dm(STRANGER, "say hi again")
    server.push_message(CHANNEL, STRANGER, "say hi", mention_bot=True)
    channel = dm(server, STRANGER)
    await server.wait_for(containing(server, channel, "only works for"), 10)
    await server.wait_for(lambda: len(server.calls_to("POST /channels/{channel_id}/messages"))
                          >= 1, 5)
    assert h.recorder.events == []
    assert len(server.bot_messages(channel)) == 1  # once an hour, not per message
    assert str(STRANGER) in server.bot_messages(channel)[0].content


async def test_a_guild_mention_gets_20000_characters_complete_and_in_order(start, server) -> None:
    await start(edit_interval="0.05")
    server.push_message(CHANNEL, USER, "big 20000", mention_bot=True)
    await server.wait_for(containing(server, CHANNEL, DONE), 60)
    messages = server.bot_messages(CHANNEL)
    assert len(messages) >= 10
    assert all(len(m.content) <= 2000 for m in messages)
    assert DONE in messages[-1].content
    text = "\n".join(m.content for m in messages).rsplit("\n\n", 1)[0]
    assert text.replace("\n\n", "\n") == big_text(20000).rstrip("\n")


async def test_three_429s_on_edits_still_end_complete(start, server) -> None:
    await start()
    server.rate_limit_next(EDIT, times=3, retry_after=0.2)
    server.push_dm(USER, "say hi; sleep 0.5; say more; sleep 0.5; say end")
    channel = dm(server)
    final = await server.wait_for(containing(server, channel, DONE), 20)
    assert "hi" in final.content and "more" in final.content and "end" in final.content
    assert server.count_status(429) >= 3


async def test_everyone_in_agent_output_pings_nobody(start, server) -> None:
    await start()
    server.push_message(CHANNEL, USER, "say @everyone look <@900000000000000010>",
                        mention_bot=True)
    final = await server.wait_for(containing(server, CHANNEL, DONE), 15)
    assert "@everyone" in final.content
    assert all(not m.pings.users and not m.pings.roles and not m.pings.everyone
               for m in server.bot_messages(CHANNEL))


async def test_the_stop_button_stops_the_turn(start, server) -> None:
    await start()
    server.push_dm(USER, "say working; sleep 30")
    channel = dm(server)
    live = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(channel) if m.buttons), None), 10)
    custom_id = live.buttons[0]["custom_id"]
    assert custom_id.startswith("stop:")
    server.press_button(live, custom_id, STRANGER)
    server.press_button(live, custom_id, USER)
    await server.wait_for(lambda: not server.message(live.id).buttons, 15)
    assert "working" in server.message(live.id).content
    assert "only works for" not in server.message(live.id).content


async def test_a_slash_command_runs_through_the_core(start, server) -> None:
    await start()
    server.run_command("status", USER, CHANNEL)
    status = await server.wait_for(lambda: [m for m in server.bot_messages(CHANNEL)
                                            if not m.flags & 64], 10)  # not the ephemeral ack
    assert status[0].content
    server.run_command("status", STRANGER, CHANNEL)
    await server.wait_for(lambda: any("allowed" in m.content for m in server.bot_messages(CHANNEL)
                                      if m.flags & 64), 10)
    assert len([m for m in server.bot_messages(CHANNEL) if not m.flags & 64]) == 1


async def test_messages_sent_while_down_are_handled_after_a_restart(start, server) -> None:
    h = await start()
    server.push_dm(USER, "say first")
    channel = dm(server)
    await server.wait_for(containing(server, channel, DONE), 15)
    await h.stop()
    server.push_dm(USER, "say second")
    server.push_dm(USER, "say third")
    await h.restart()
    await server.wait_for(lambda: len([m for m in server.bot_messages(channel)
                                       if DONE in m.content]) == 3, 20)
    texts = [m.content for m in server.bot_messages(channel) if DONE in m.content]
    assert [t.split("\n")[0] for t in texts] == ["first", "second", "third"]


async def test_a_gateway_drop_mid_turn_still_ends_complete(start, server) -> None:
    await start()
    server.push_dm(USER, "say one; sleep 0.5; say two; sleep 0.5; say three")
    channel = dm(server)
    await server.wait_for(containing(server, channel, "one"), 10)
    server.drop_gateway()
    final = await server.wait_for(containing(server, channel, DONE), 15)
    assert all(word in final.content for word in ("one", "two", "three"))


async def test_a_thread_is_a_chat_of_its_own(start, server) -> None:
    h = await start()
    thread = server.add_thread(CHANNEL, name="work")
    server.push_message(thread.id, USER, "say in the thread", mention_bot=True)
    final = await server.wait_for(containing(server, thread.id, DONE), 15)
    assert "in the thread" in final.content
    assert not server.bot_messages(CHANNEL)
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.chat == ChatRef("discord", str(CHANNEL), str(thread.id))


async def test_a_role_in_an_allowed_guild_lets_a_member_in(start, server) -> None:
    role = 900_000_000_000_000_020
    member = 900_000_000_000_000_012
    server.add_role(GUILD, role, "cadenza")
    server.add_member(GUILD, member, roles=[role])
    await start(allowed_guilds=f'["{GUILD}"]', allowed_roles=f'["{role}"]')
    server.push_message(CHANNEL, member, "say hello", mention_bot=True)
    await server.wait_for(containing(server, CHANNEL, DONE), 15)
    server.push_dm(member, "say hello")  # in DMs only allowed_users counts
    await server.wait_for(containing(server, dm(server, member), "only works for"), 10)


async def test_doctor_logs_in_and_checks_the_intent(start, server) -> None:
    h = await start()
    checks = await h.app.loader.instances["discord"].doctor_checks()
    assert (True, f"discord: {server.api_base} answers: this is Cadenza") in checks
    assert (True, "discord: the Message Content intent is enabled") in checks
    assert all(DEFAULT_TOKEN not in text for _, text in checks)


async def test_a_refused_message_content_intent_says_how_to_enable_it(
        start_app, monkeypatch, caplog) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)
    async with FakeDiscordServer(privileged_intents=0) as fake:
        h = await start_app(config(fake))
        async with asyncio.timeout(10):
            await h.bot.stop_requested()
        await h.stop()  # before the fake puts discord.py's endpoints back
    assert h.bot.exit_code == 2  # `cadenza run` exits 2: the configuration cannot work
    assert "Message Content Intent" in caplog.text
    assert h.recorder.events == []
    assert discord.http.Route.BASE == "https://discord.com/api/v10"  # put back


def settings_reader(tmp_path: Path) -> Callable[..., DiscordSettings]:
    def read(table: str, environ: dict[str, str] | None = None) -> DiscordSettings:
        path = tmp_path / "plugins.toml"
        path.write_text("[discord]\n" + table)
        env = {"DISCORD_BOT_TOKEN": DEFAULT_TOKEN} if environ is None else environ
        return DiscordSettings.read(Config.load(path).settings("discord"), env)

    return read


def test_settings_errors_are_located(tmp_path: Path) -> None:
    read = settings_reader(tmp_path)
    with pytest.raises(ConfigError, match=r"plugins.toml:1: .*allowed_users.*allow_all_users"):
        read("")
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN is not set"):
        read(f'allowed_users = ["{USER}"]\n', {})
    with pytest.raises(ConfigError, match=r":3: \[discord\] allowed_roles: .*allowed_guilds"):
        read(f'allowed_users = ["{USER}"]\nallowed_roles = ["1"]\n')
    with pytest.raises(ConfigError, match=r":3: \[discord\] allowed_channels: 'general'"):
        read(f'allowed_users = ["{USER}"]\nallowed_channels = ["general"]\n')
    with pytest.raises(ConfigError, match=r":3: \[discord\] api_base"):
        read(f'allowed_users = ["{USER}"]\napi_base = "discord.com"\n')
    assert read("allow_all_users = true\n").allowlist.anyone
    assert DEFAULT_TOKEN not in repr(read(f'allowed_users = ["{USER}"]\n'))


def pieces_of_a_paste(first_line: str) -> list[str]:
    """What a Discord client makes of a long paste: pieces at its 2,000-character limit."""
    piece = 1990
    return [first_line + "\n" + "x" * (piece - len(first_line) - 1), "y" * piece, "z" * piece]


async def test_one_paste_split_in_three_messages_is_one_prompt(start, server) -> None:
    h = await start()
    paste = pieces_of_a_paste("say merged")
    for piece in paste:
        server.push_dm(USER, piece)
    channel = dm(server)
    await server.wait_for(containing(server, channel, DONE), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.prompt == "".join(paste)
    assert len([m for m in server.bot_messages(channel) if DONE in m.content]) == 1


async def test_in_a_guild_the_pieces_after_the_first_need_no_mention(start, server) -> None:
    h = await start()
    paste = pieces_of_a_paste("say merged")
    server.push_message(CHANNEL, USER, paste[0], mention_bot=True)
    for piece in paste[1:]:
        server.push_message(CHANNEL, USER, piece)
    await server.wait_for(containing(server, CHANNEL, DONE), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.prompt == "".join(paste)


async def test_a_short_message_is_not_held_for_a_paste(start, server) -> None:
    h = await start()
    h.app.loader.instances["discord"].connection.pastes.window = 600.0
    server.push_dm(USER, "say quick")
    await server.wait_for(containing(server, dm(server), DONE), 15)  # long before 600 s


def permissions(**names: bool) -> int:
    return discord.Permissions(**names).value


async def test_doctor_names_each_permission_the_bot_lacks_in_each_channel(
        server, tmp_path) -> None:
    locked, hidden, granted = (900_000_000_000_000_003, 900_000_000_000_000_004,
                               900_000_000_000_000_005)
    for channel, name in ((locked, "locked"), (hidden, "hidden"), (granted, "granted")):
        server.add_channel(GUILD, channel, name)
    bot_role = server.bot_role(GUILD).id
    server.set_overwrite(locked, GUILD, deny=permissions(send_messages=True))  # @everyone
    server.set_overwrite(hidden, bot_role, deny=permissions(view_channel=True))
    server.set_overwrite(granted, GUILD, deny=permissions(send_messages=True))
    server.set_overwrite(granted, bot_role, allow=permissions(send_messages=True))
    admin_guild, admin_channel = 900_000_000_000_000_100, 900_000_000_000_000_101
    server.add_guild(admin_guild, "Admins", channels={admin_channel: "staff"})
    server.set_bot_permissions(admin_guild, permissions(administrator=True))
    server.set_overwrite(admin_channel, admin_guild, deny=permissions(view_channel=True))
    absent_guild = 900_000_000_000_000_200
    settings = settings_reader(tmp_path)(
        f'api_base = "{server.api_base}"\nallowed_users = ["{USER}"]\n'
        f'allowed_channels = ["{CHANNEL}", "{locked}", "{hidden}", "{granted}"]\n'
        f'lifecycle_channels = ["{admin_channel}", "{dm(server)}"]\n'
        f'allowed_guilds = ["{GUILD}", "{absent_guild}"]\nguild_ids = ["{admin_guild}"]\n')
    checks = await doctor(settings)
    failed = [text for ok, text in checks if not ok]
    assert failed == [
        f"discord: the bot lacks Send Messages in #locked ({locked}): allow it for the bot's "
        "role in the channel (Edit Channel → Permissions) or in the server (Server Settings → "
        "Roles)",
        f"discord: the bot lacks Attach Files in #locked ({locked}): allow it for the bot's "
        "role in the channel (Edit Channel → Permissions) or in the server (Server Settings → "
        "Roles)",  # Discord takes it away with Send Messages
        f"discord: the bot cannot see channel {hidden}: it lacks View Channel there, or is not "
        "in its server: allow it for the bot's role in the channel (Edit Channel → "
        "Permissions) or in the server (Server Settings → Roles)",
        f"discord: the bot is not in server {absent_guild}: invite the bot (Developer Portal "
        "→ OAuth2 → URL Generator, scopes bot and applications.commands) or fix [discord]",
    ]
    passed = [text for ok, text in checks if ok]
    for where in (f"#general ({CHANNEL})", f"#granted ({granted})", f"#staff ({admin_channel})"):
        assert f"discord: the bot may do what it needs in {where}" in passed


async def test_doctor_checks_the_servers_roles_when_the_bot_listens_everywhere(
        server, tmp_path) -> None:
    threads = permissions(create_public_threads=True)
    everyone = server.guilds[GUILD].roles[GUILD].permissions
    server.set_role_permissions(GUILD, GUILD, everyone & ~threads)
    server.set_bot_permissions(GUILD, server.bot_role(GUILD).permissions & ~threads)
    settings = settings_reader(tmp_path)(
        f'api_base = "{server.api_base}"\nallowed_users = ["{USER}"]\n'
        f'guild_ids = ["{GUILD}"]\n')
    failed = [text for ok, text in await doctor(settings) if not ok]
    assert failed == [f"discord: the bot lacks Create Public Threads in server Cadenza HQ "
                      f"({GUILD}): allow it for the bot's role: Server Settings → Roles"]


def threads_under(server: FakeDiscordServer, channel: int) -> list[Any]:
    return [c for c in server.channels.values() if c.parent_id == channel]


async def test_a_named_session_in_a_channel_runs_in_a_thread_of_its_own(start, server) -> None:
    h = await start()
    server.push_message(CHANNEL, USER, "/session work say in the thread", mention_bot=True)
    thread = (await server.wait_for(lambda: threads_under(server, CHANNEL), 10))[0]
    assert (thread.name, thread.type) == ("work", 11)  # public, named after the session
    final = await server.wait_for(containing(server, thread.id, DONE), 15)
    assert "in the thread" in final.content and "[work]" in final.content
    assert not any(DONE in m.content for m in server.bot_messages(CHANNEL))
    server.push_message(thread.id, USER, "say again", mention_bot=True)  # continues it
    await server.wait_for(lambda: len([m for m in server.bot_messages(thread.id)
                                       if DONE in m.content]) == 2, 15)
    turns = list({event.turn.id: event.turn for event in h.recorder.events}.values())
    assert [(t.session, t.chat) for t in turns] == [("work", ChatRef("discord", str(CHANNEL)))] * 2
    assert turns[1].prompt == "say again"
    server.push_message(CHANNEL, USER, "@work say from the channel", mention_bot=True)
    await server.wait_for(containing(server, thread.id, "from the channel"), 15)
    assert len(threads_under(server, CHANNEL)) == 1  # the session keeps its thread


async def test_no_thread_is_opened_for_a_session_in_a_dm_or_a_thread(start, server) -> None:
    await start()
    server.push_dm(USER, "/session work say in the dm")
    await server.wait_for(containing(server, dm(server), DONE), 15)
    thread = server.add_thread(CHANNEL, name="talk")
    server.push_message(thread.id, USER, "/session work say in the thread", mention_bot=True)
    await server.wait_for(containing(server, thread.id, DONE), 15)
    assert not server.calls_to("POST /channels/{channel_id}/threads")
    assert threads_under(server, CHANNEL) == [thread]


async def test_without_create_public_threads_the_session_runs_in_the_channel(
        start, server) -> None:
    server.set_overwrite(CHANNEL, server.bot_role(GUILD).id,
                         deny=permissions(create_public_threads=True))
    await start()
    server.push_message(CHANNEL, USER, "/session work say still here", mention_bot=True)
    final = await server.wait_for(containing(server, CHANNEL, DONE), 15)
    assert "still here" in final.content
    (notice,) = [m for m in server.bot_messages(CHANNEL) if "thread" in m.content]
    assert notice.content == ("Could not open a thread for session work (the bot lacks "
                              "Create Public Threads here); it runs here.")
    assert not threads_under(server, CHANNEL)


async def test_the_stop_button_in_a_sessions_thread_stops_its_turn(start, server) -> None:
    await start()
    server.push_message(CHANNEL, USER, "/session work say working; sleep 30", mention_bot=True)
    thread = (await server.wait_for(lambda: threads_under(server, CHANNEL), 10))[0]
    live = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(thread.id) if m.buttons), None), 10)
    server.press_button(live, live.buttons[0]["custom_id"], USER)
    final = await server.wait_for(lambda: (m := server.message(live.id)).buttons == []
                                  and m, 15)
    assert "working" in final.content and DONE not in final.content


async def test_a_sessions_thread_is_still_its_home_after_a_restart(start, server) -> None:
    h = await start()
    server.push_message(CHANNEL, USER, "/session work say before", mention_bot=True)
    thread = (await server.wait_for(lambda: threads_under(server, CHANNEL), 10))[0]
    await server.wait_for(containing(server, thread.id, DONE), 15)
    await h.stop()
    await h.restart()
    await server.wait_for(lambda: server.gateway.connected, 10)
    server.push_message(CHANNEL, USER, "@work say after", mention_bot=True)
    await server.wait_for(containing(server, thread.id, "after"), 15)
    assert threads_under(server, CHANNEL) == [thread]
