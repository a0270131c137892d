"""The fake Discord REST API and gateway, exercised through the real discord.py client."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands

from tests.fakes.discord_api import (
    CALLBACK,
    DEFAULT_TOKEN,
    DISPATCH,
    EDIT,
    EPHEMERAL,
    FOLLOWUP,
    GUILD_COMMANDS,
    HEARTBEAT,
    HISTORY,
    IDENTIFY,
    LOADING,
    OPEN_DM,
    RESUME,
    SEND,
    TYPING,
    FakeDiscordServer,
    Fault,
    RateLimits,
    RouteLimit,
    adopt_gateway,
    discord_endpoints,
    running,
)

pytestmark = pytest.mark.asyncio

GUILD = 900_000_000_000_000_001
CHANNEL = 900_000_000_000_000_002
OTHER = 900_000_000_000_000_003
USER = 900_000_000_000_000_010
STRANGER = 900_000_000_000_000_011
ROLE = 900_000_000_000_000_020
NEW_CHANNEL = 900_000_000_000_000_030


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bot(discord.Client):
    """A discord.py client recording what the gateway delivered."""

    def __init__(self, *, content: bool = True, members: bool = False, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = content
        intents.members = members
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.seen: list[discord.Message] = []
        self.edits: list[discord.Message] = []
        self.tree = app_commands.CommandTree(self)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every IDENTIFY but the first; not in tests."""

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        self.edits.append(after)

    def from_users(self) -> list[str]:
        return [m.content for m in self.seen if m.author.id != self.user.id]  # type: ignore[union-attr]


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait for a condition on the client's side (the server's wait_for only sees the server)."""
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.005)
    return value


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeDiscordServer]:
    async with FakeDiscordServer() as fake:
        fake.add_guild(GUILD, "Cadenza HQ", channels={CHANNEL: "general", OTHER: "random"},
                       members=[USER])
        yield fake
        assert fake.errors == []


@pytest_asyncio.fixture
async def bot(server: FakeDiscordServer) -> AsyncIterator[Bot]:
    async with running(Bot(), server.token) as client:
        yield client  # type: ignore[misc]


async def text_channel(bot: Bot, channel_id: int = CHANNEL) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


# ------------------------------------------------------------------ connecting


async def test_connect_identify_ready_and_guild_create(server: FakeDiscordServer, bot: Bot) -> None:
    assert bot.user is not None and bot.user.id == server.bot_id and bot.user.bot
    assert bot.application_id == server.application_id
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.name == "Cadenza HQ"
    assert [c.name for c in guild.text_channels] == ["general", "random"]
    assert guild.me is not None and guild.me.guild_permissions.send_messages
    assert (await text_channel(bot)).permissions_for(guild.me).mention_everyone

    (session,) = server.sessions
    assert session.connected and session.intents == bot.intents.value
    (identify,) = server.gateway.frames(op=IDENTIFY)
    assert identify.d["token"] == server.token and identify.d["intents"] == bot.intents.value
    hello = server.gateway.frames(direction="out")[0]
    ready, guild_create = server.gateway.frames(op=DISPATCH)[:2]
    assert hello.d == {"heartbeat_interval": 500}
    assert (ready.t, ready.s, guild_create.t) == ("READY", 1, "GUILD_CREATE")
    assert ready.d["resume_gateway_url"] == server.resume_gateway_url
    assert ready.d["guilds"] == [{"id": str(GUILD), "unavailable": True}]
    # discord.py asks for zlib-stream; the fake compresses like Discord
    assert session.connection is not None and session.connection.zlib is not None
    await server.wait_for(lambda: server.gateway.frames(op=HEARTBEAT, direction="in"))
    assert [c.route for c in server.calls][:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert server.tokens_seen == {server.token}


async def test_client_close_leaves_no_connection(server: FakeDiscordServer) -> None:
    async with running(Bot(), server.token):
        assert len(server.gateway.connected) == 1

    await server.wait_for(lambda: not server.gateway.connected)
    # discord.py's close() races its own reader, which closes with 4000 first: to Discord
    # that is a resumable disconnect, so the session stays (it would time out there)
    assert server.gateway.close_codes in ([4000], [1000])


async def test_gateway_protocol_with_a_raw_websocket(server: FakeDiscordServer) -> None:
    identify = {"op": IDENTIFY, "d": {"token": server.token, "intents": 513,
                                      "properties": {}}}
    async with aiohttp.ClientSession() as http:

        async def first_frames(*payloads: Any) -> tuple[list[Any], int | None]:
            async with http.ws_connect(server.gateway_url + "?v=10&encoding=json") as ws:
                for payload in payloads:
                    await ws.send_json(payload)
                frames = []
                async for message in ws:
                    frames.append(message.json())
                    if len(frames) == 1 + len(payloads) + (payloads[-1]["op"] == IDENTIFY):
                        break
                await ws.close(code=1000)
                return frames, ws.close_code

        ready_frames, code = await first_frames(identify, {"op": HEARTBEAT, "d": 2})
        assert [f["op"] for f in ready_frames[:2]] == [10, 0]
        assert ready_frames[1]["t"] == "READY" and code == 1000
        await server.wait_for(lambda: not server.sessions)  # closed with 1000: ended
        unknown = await first_frames({"op": RESUME, "d": {
            "token": server.token, "session_id": "nope", "seq": 1}})
        assert unknown[0][1] == {"op": 9, "d": False, "s": None, "t": None}
        async with http.ws_connect(server.gateway_url) as ws:
            await ws.receive()  # HELLO
            await ws.send_json({"op": 3, "d": {}})
            assert (await ws.receive()).data == 4003  # not authenticated
        async with http.ws_connect(server.gateway_url) as ws:
            await ws.receive()
            await ws.send_str("{not json")
            assert (await ws.receive()).data == 4002
        async with http.ws_connect(server.gateway_url) as ws:
            await ws.receive()
            await ws.send_json({**identify, "d": {**identify["d"], "token": "wrong"}})
            closed = await ws.receive()
            assert (closed.data, closed.extra) == (4004, "Authentication failed.")
        async with http.ws_connect(server.gateway_url + "?v=6") as ws:
            assert (await ws.receive()).data == 4012


async def test_wrong_token_is_a_login_failure(server: FakeDiscordServer) -> None:
    with pytest.raises(discord.LoginFailure):
        async with running(Bot(), "not-the-token"):
            pass
    assert server.calls[0].status == 401 and server.sessions == []


async def test_disallowed_intents_close_4014() -> None:
    async with FakeDiscordServer(privileged_intents=0) as server:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with running(Bot(content=True), server.token):
                pass
        assert server.gateway.close_codes == [4014]
        assert server.sessions == []

        async with running(Bot(content=False), server.token) as client:
            assert client.is_ready()


async def test_authentication_failed_close_4004(server: FakeDiscordServer) -> None:
    client = Bot()
    task = asyncio.create_task(client.start(server.token))
    await until(client.is_ready)

    await server.close_gateway(4004)

    with pytest.raises(discord.ConnectionClosed) as closed:
        await asyncio.wait_for(task, 5)
    assert closed.value.code == 4004
    assert server.sessions == []
    await client.close()


async def test_adopt_gateway_asks_the_api_where_the_gateway_is() -> None:
    """What a frontend with ``api_base`` does: REST base patched, gateway from /gateway/bot."""

    class Frontend(Bot):
        async def setup_hook(self) -> None:
            self.gateway_url = await adopt_gateway(self)

    async with FakeDiscordServer(patch_discord=False) as server:
        with discord_endpoints(server.api_base):
            async with running(Frontend(), server.token) as client:
                assert client.gateway_url == server.gateway_url  # type: ignore[attr-defined]
                assert server.calls_to("GET /gateway/bot")[0].ok
        assert discord.http.Route.BASE == "https://discord.com/api/v10"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


# ------------------------------------------------------------------ incoming messages


async def test_guild_mention_and_dm_reach_on_message(server: FakeDiscordServer, bot: Bot) -> None:
    server.push_message(CHANNEL, USER, "hello bot", mention_bot=True)
    server.push_dm(USER, "psst")

    await until(lambda: len(bot.seen) == 2)
    mention, dm = bot.seen
    assert mention.content == f"<@{server.bot_id}> hello bot"
    assert bot.user in mention.mentions and mention.guild is not None
    assert isinstance(mention.author, discord.Member) and mention.author.id == USER
    assert isinstance(dm.channel, discord.DMChannel) and dm.guild is None
    assert dm.content == "psst" and dm.channel.id == server.dm_channel(USER).id


async def test_replies_reference_and_ping_the_replied_author(
    server: FakeDiscordServer, bot: Bot
) -> None:
    sent = await (await text_channel(bot)).send("question?")
    server.push_message(CHANNEL, USER, "answer", reply_to=sent.id)

    await until(lambda: bot.from_users())
    reply = bot.seen[-1]
    assert reply.reference is not None and reply.reference.message_id == sent.id
    assert bot.user in reply.mentions and reply.type is discord.MessageType.reply
    assert isinstance(reply.reference.resolved, discord.Message)


async def test_without_message_content_only_addressed_text_arrives(
    server: FakeDiscordServer,
) -> None:
    async with running(Bot(content=False), server.token) as client:
        server.push_message(CHANNEL, USER, "chatter")
        server.push_message(CHANNEL, USER, "for you", mention_bot=True)
        server.push_dm(USER, "private")
        await until(lambda: len(client.seen) == 3)  # type: ignore[attr-defined]

    assert [m.content for m in client.seen] == [  # type: ignore[attr-defined]
        "", f"<@{server.bot_id}> for you", "private"]


async def test_user_edits_and_deletes_arrive(server: FakeDiscordServer, bot: Bot) -> None:
    deleted: list[int] = []
    bot.event(_recorder("on_raw_message_delete", lambda e: deleted.append(e.message_id)))
    message = server.push_message(CHANNEL, USER, "typo")
    await until(lambda: bot.seen)

    server.push_edit(message.id, "fixed")
    server.push_delete(message.id)

    await until(lambda: bot.edits and deleted)
    assert bot.edits[0].content == "fixed" and deleted == [message.id]
    assert server.message(message.id).history == ["typo", "fixed"]


def _recorder(name: str, record: Callable[[Any], Any]) -> Any:
    async def handler(event: Any) -> None:
        record(event)

    handler.__name__ = name
    return handler


# ------------------------------------------------------------------ sending


async def test_send_edit_delete(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    first = await channel.send("working…")
    second = await channel.send("menu")
    edited = await first.edit(content="done")
    await second.delete()

    assert edited.content == "done" and edited.edited_at is not None
    stored = server.message(first.id)
    assert stored.history == ["working…", "done"] and stored.from_bot
    assert server.message(second.id).deleted
    assert server.texts(CHANNEL) == ["done"]
    assert [c.status for c in server.calls_to(SEND)] == [200, 200]
    assert server.calls_to(EDIT, channel_id=CHANNEL, message_id=first.id)[0].body[
        "content"] == "done"
    # the bot's own messages come back over the gateway, as on Discord
    await until(lambda: len(bot.seen) == 2)


async def test_two_thousand_characters_and_no_more(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    sent = await channel.send("x" * 2000)

    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("y" * 2001)
    with pytest.raises(discord.HTTPException) as edit_too_long:
        await sent.edit(content="z" * 2001)
    with pytest.raises(discord.HTTPException) as empty:
        await channel.send("")

    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert "In content: Must be 2000 or fewer in length." in str(too_long.value)
    assert edit_too_long.value.code == 50035
    assert empty.value.code == 50006
    assert server.texts(CHANNEL) == ["x" * 2000]


async def test_nonce_with_enforce_nonce_returns_the_first_message(
    server: FakeDiscordServer, bot: Bot
) -> None:
    channel = await text_channel(bot)
    first = await channel.send("once", nonce="turn-1-part-1")
    again = await channel.send("once", nonce="turn-1-part-1")

    # applied, then the connection drops: the retry with the same nonce is not a duplicate
    server.fail_next(SEND, Fault.drop(after_processing=True))
    with pytest.raises(aiohttp.ClientError):
        await channel.send("lost answer", nonce="turn-1-part-2")
    retried = await channel.send("lost answer", nonce="turn-1-part-2")

    assert again.id == first.id
    assert server.texts(CHANNEL) == ["once", "lost answer"]
    assert retried.id == server.bot_messages(CHANNEL)[1].id
    assert server.calls_to(SEND)[0].body["enforce_nonce"] is True
    assert [c.outcome for c in server.calls_to(SEND)] == [
        "answered", "answered", "dropped", "answered"]
    # without enforce_nonce a repeated nonce is just echoed
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=OTHER)
    for _ in range(2):
        await bot.http.request(route, json={"content": "twice", "nonce": "plain"})
    assert server.texts(OTHER) == ["twice", "twice"]


async def test_allowed_mentions_decide_who_is_pinged(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    text = f"@everyone <@{USER}> look"
    loud = await channel.send(text)
    quiet = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())

    assert server.message(loud.id).pings.everyone and server.message(loud.id).pings.users == {USER}
    assert not server.message(quiet.id).pings
    assert quiet.mention_everyone is False and quiet.mentions == []
    assert server.message(quiet.id).allowed_mentions == {"parse": []}


async def test_buttons_layout_is_validated(server: FakeDiscordServer, bot: Bot) -> None:
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=CHANNEL)
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "a", "custom_id": "a"}]}

    with pytest.raises(discord.HTTPException, match="Must be 5 or fewer"):
        await bot.http.request(route, json={"content": "x", "components": [row] * 6})
    with pytest.raises(discord.HTTPException, match="cannot be duplicated"):
        await bot.http.request(route, json={"content": "x", "components": [row, row]})
    with pytest.raises(discord.HTTPException, match="must be one of"):
        await bot.http.request(route, json={"content": "x", "components": [row["components"][0]]})
    await bot.http.request(route, json={"components": [row]})

    assert server.bot_messages(CHANNEL)[0].custom_ids == ["a"]


async def test_attachments_multipart_and_the_upload_limit(
    server: FakeDiscordServer, bot: Bot
) -> None:
    channel = await text_channel(bot)
    sent = await channel.send("the whole output", file=discord.File(
        io.BytesIO(b"line\n" * 100), filename="output.txt", description="full"))

    (attachment,) = server.message(sent.id).attachments
    assert (attachment.filename, attachment.size, attachment.description) == (
        "output.txt", 500, "full")
    assert await sent.attachments[0].read() == b"line\n" * 100
    assert server.calls_to(SEND)[0].files[0].filename == "output.txt"

    server.max_upload_bytes = 1000
    with pytest.raises(discord.HTTPException) as too_large:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 1001), filename="big.txt"))
    assert (too_large.value.status, too_large.value.code) == (413, 40005)
    await sent.edit(attachments=[])
    assert server.message(sent.id).revisions[-1].attachments == []


async def test_dm_channel_and_refused_dms(server: FakeDiscordServer, bot: Bot) -> None:
    user = await bot.fetch_user(USER)
    await user.send("hello in private")
    server.block_dms(STRANGER)
    stranger = await bot.fetch_user(STRANGER)

    with pytest.raises(discord.Forbidden) as refused:
        await stranger.send("hi")
    assert refused.value.code == 50007
    assert server.texts(server.dm_channel(USER).id) == ["hello in private"]
    assert server.calls_to(OPEN_DM)[0].body == {"recipient_id": USER}


async def test_permissions_are_enforced(server: FakeDiscordServer, bot: Bot) -> None:
    server.set_overwrite(OTHER, server.bot_role(GUILD).id, deny=discord.Permissions(
        send_messages=True).value)
    await until(lambda: not (bot.get_channel(OTHER)  # type: ignore[union-attr]
                             .permissions_for(bot.get_guild(GUILD).me).send_messages))  # type: ignore[union-attr]

    with pytest.raises(discord.Forbidden) as denied:
        await (await text_channel(bot, OTHER)).send("no")
    assert denied.value.code == 50013


async def test_roles_members_and_channels_reach_the_cache(
    server: FakeDiscordServer, bot: Bot
) -> None:
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.get_member(USER) is None  # no members intent
    server.add_role(GUILD, ROLE, "operators")
    server.add_member(GUILD, USER, roles=[ROLE], nick="op")
    server.add_channel(GUILD, NEW_CHANNEL, "sessions")
    server.set_bot_permissions(GUILD, 0)  # what @everyone allows is left

    await until(lambda: guild.get_role(ROLE) and bot.get_channel(NEW_CHANNEL))
    await until(lambda: not guild.me.guild_permissions.manage_messages)
    server.push_message(CHANNEL, USER, "hi", mention_bot=True)
    await until(bot.from_users)
    author = bot.seen[-1].author
    assert isinstance(author, discord.Member) and [r.id for r in author.roles[1:]] == [ROLE]
    assert (await guild.fetch_member(USER)).nick == "op"
    everyone = await (await text_channel(bot)).send("@everyone hi")
    assert not server.message(everyone.id).pings  # no Mention Everyone permission any more

    async with running(Bot(members=True), server.token) as with_members:
        cached = with_members.get_guild(GUILD)
        assert cached is not None and cached.get_member(USER).nick == "op"  # type: ignore[union-attr]


async def test_typing(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    async with channel.typing():
        pass
    await channel.typing().wrapped_typer()

    assert len(server.typing_in(CHANNEL)) == 2
    assert [c.status for c in server.calls_to(TYPING)] == [204, 204]


async def test_history_after_id_for_catching_up(server: FakeDiscordServer, bot: Bot) -> None:
    pushed = [server.push_message(CHANNEL, USER, f"m{i}") for i in range(5)]
    channel = await text_channel(bot)

    after = [m.content async for m in channel.history(after=discord.Object(pushed[1].id))]
    page = [m.content async for m in channel.history(after=discord.Object(pushed[1].id), limit=2)]
    newest = [m.content async for m in channel.history(limit=2)]

    assert after == ["m2", "m3", "m4"]
    assert page == ["m2", "m3"]
    assert newest == ["m4", "m3"]
    assert server.calls_to(HISTORY)[0].query == {"limit": "100", "after": str(pushed[1].id)}


async def test_threads(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    thread = await channel.create_thread(name="refactor auth",
                                         type=discord.ChannelType.public_thread)
    await thread.send("session started")
    await until(lambda: bot.get_channel(thread.id))
    server.push_message(thread.id, USER, "go on")

    await until(lambda: bot.from_users())
    assert isinstance(bot.seen[-1].channel, discord.Thread)
    assert bot.seen[-1].channel.parent_id == CHANNEL
    assert server.channel(thread.id).name == "refactor auth"
    assert server.texts(thread.id) == ["session started"]


# ------------------------------------------------------------------ rate limits and faults


async def test_scripted_429s_are_waited_out_by_discord_py(
    server: FakeDiscordServer, bot: Bot
) -> None:
    sent = await (await text_channel(bot)).send("v1")
    server.rate_limit_next(EDIT, times=3, retry_after=0.02)

    await sent.edit(content="v2")

    calls = server.calls_to(EDIT)
    assert [c.status for c in calls] == [429, 429, 429, 200]
    assert calls[0].response == {"message": "You are being rate limited.", "retry_after": 0.02,
                                 "global": False, "code": 0}
    assert calls[0].headers["Via"] and calls[0].headers["X-RateLimit-Scope"] == "user"
    assert calls[1].at - calls[0].at >= 0.015
    assert server.message(sent.id).history == ["v1", "v2"]


async def test_discord_py_paces_itself_on_the_headers() -> None:
    limits = RateLimits(routes={EDIT: RouteLimit(2, 0.2)})
    async with FakeDiscordServer(limits=limits) as server:
        server.add_guild(GUILD, channels=[CHANNEL])
        async with running(Bot(), server.token) as client:
            message = await client.get_channel(CHANNEL).send("0")  # type: ignore[union-attr]
            started = time.monotonic()
            for i in range(1, 6):
                await message.edit(content=str(i))
            elapsed = time.monotonic() - started

    assert server.message(message.id).history == ["0", "1", "2", "3", "4", "5"]
    assert server.count_status(429) == 0 and server.rate_limited == 0
    assert elapsed >= 0.4  # windows of 2 edits per 0.2 s
    assert server.calls_to(EDIT)[0].headers["X-RateLimit-Limit"] == "2"


async def test_discord_limits_by_default_per_channel_and_global() -> None:
    clock = ManualClock()
    async with FakeDiscordServer(clock=clock, limits=RateLimits(global_per_second=9)) as server:
        server.add_guild(GUILD, channels=[CHANNEL, OTHER])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bot {server.token}"}) as http:

            async def send(channel: int) -> aiohttp.ClientResponse:
                async with http.post(f"{server.api_base}/channels/{channel}/messages",
                                     json={"content": "x"}) as response:
                    await response.read()
                    return response

            statuses = [(await send(CHANNEL)).status for _ in range(5)]
            limited = await send(CHANNEL)
            other = await send(OTHER)
            clock.now += 0.5
            other_again = [await send(OTHER) for _ in range(2)]
            global_limited = await send(OTHER)
            clock.now += 5
            recovered = await send(CHANNEL)

    assert statuses == [200] * 5 and other.status == 200
    assert limited.status == 429 and limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Limit"] == "5"
    assert float(limited.headers["X-RateLimit-Reset-After"]) == 5.0
    assert limited.headers["Via"] and limited.headers["Retry-After"] == "5"
    assert server.calls[5].response == {"message": "You are being rate limited.",
                                        "retry_after": 5.0, "global": False, "code": 0}
    assert [r.status for r in other_again] == [200, 200]
    assert global_limited.status == 429
    assert global_limited.headers["X-RateLimit-Global"] == "true"
    assert server.calls[9].response["global"] is True
    assert recovered.status == 200
    assert server.rate_limited == 2


async def test_server_errors_and_dropped_calls(server: FakeDiscordServer, bot: Bot) -> None:
    channel = await text_channel(bot)
    server.fail_next(SEND, Fault.server_error(503))
    server.fail_next("*", Fault.error(403, 50001, "Missing Access"))
    server.fail_next(SEND, Fault.drop())

    with pytest.raises(discord.DiscordServerError):
        await channel.send("a")
    with pytest.raises(discord.Forbidden, match="Missing Access"):
        await bot.fetch_user(USER)
    with pytest.raises(aiohttp.ClientError):
        await channel.send("b")
    await channel.send("c")

    assert server.texts(CHANNEL) == ["c"]


async def test_hang_until_released(server: FakeDiscordServer, bot: Bot) -> None:
    server.fail_next(SEND, Fault.hang())
    sending = asyncio.create_task((await text_channel(bot)).send("slow"))

    await server.wait_for(lambda: server.in_flight(SEND))
    assert server.texts(CHANNEL) == []
    server.release_hangs()

    assert (await sending).content == "slow"


# ------------------------------------------------------------------ gateway faults


async def test_drop_resume_replays_what_was_missed_once(
    server: FakeDiscordServer, bot: Bot
) -> None:
    server.push_message(CHANNEL, USER, "before", mention_bot=True)
    await until(lambda: bot.from_users())
    (session,) = server.sessions

    server.drop_gateway()
    server.push_message(CHANNEL, USER, "meanwhile", mention_bot=True)
    assert not session.connected

    await server.wait_for_session(resumes=1)
    server.push_message(CHANNEL, USER, "after", mention_bot=True)
    await until(lambda: len(bot.from_users()) == 3)

    mention = f"<@{server.bot_id}> "
    assert bot.from_users() == [mention + "before", mention + "meanwhile", mention + "after"]
    (resume,) = server.gateway.frames(op=RESUME)
    assert resume.d["session_id"] == session.id and resume.d["seq"] == 3
    assert len(server.gateway.frames(op=IDENTIFY)) == 1
    assert session.connection is not None and session.connection.path == "/gateway/resume"
    resumed = server.gateway.frames(t="RESUMED")[0]
    replayed = [f for f in server.gateway.frames(t="MESSAGE_CREATE") if f.s == 4]
    assert len(replayed) == 1 and resumed.s == 5


async def test_reconnect_and_invalid_session(server: FakeDiscordServer, bot: Bot) -> None:
    first = server.sessions[0]
    server.send_reconnect()
    await server.wait_for_session(resumes=1)

    server.invalidate_session(resumable=False)
    second = await server.wait_for(lambda: next(
        (s for s in server.gateway.connected if s is not first), None))
    await until(bot.is_ready)

    assert first.ended and second.id != first.id
    assert len(server.gateway.frames(op=IDENTIFY)) == 2
    server.push_dm(USER, "still here")
    await until(lambda: bot.from_users() == ["still here"])


# ------------------------------------------------------------------ interactions


async def test_slash_command_answered_through_the_callback(server: FakeDiscordServer) -> None:
    bot = Bot()

    @bot.tree.command(name="status", description="What is running",
                      guild=discord.Object(GUILD))
    @app_commands.describe(verbose="More detail")
    async def status(interaction: discord.Interaction, verbose: bool = False) -> None:
        await interaction.response.send_message(f"idle (verbose={verbose})")

    async with running(bot, server.token):
        synced = await bot.tree.sync(guild=discord.Object(GUILD))
        record = server.run_command("status", USER, CHANNEL, {"verbose": True})
        await server.wait_for(lambda: record.acknowledged)

    assert [c.name for c in synced] == ["status"]
    assert server.calls_to(GUILD_COMMANDS, guild_id=GUILD)[0].ok
    assert [c["name"] for c in server.commands(GUILD)] == ["status"]
    assert record.response_type == 4
    message = server.message(record.original_id)  # type: ignore[arg-type]
    assert message.content == "idle (verbose=True)" and message.webhook_id == server.application_id
    assert server.calls_to(CALLBACK)[0].query == {"with_response": "1"}
    assert server.texts(CHANNEL) == ["idle (verbose=True)"]


async def test_deferred_command_then_followup_and_edit(server: FakeDiscordServer) -> None:
    bot = Bot()

    @bot.tree.command(name="new", description="Start a session")
    async def new(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        await interaction.followup.send("working")
        await interaction.edit_original_response(content="session 7 started")

    async with running(bot, server.token):
        await bot.tree.sync()
        record = server.run_command("new", USER, server.dm_channel(USER).id)
        await server.wait_for(lambda: server.calls_to(
            "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}"))
        await server.wait_for(lambda: server.calls[-1].outcome == "answered")

    original = server.message(record.original_id)  # type: ignore[arg-type]
    assert original.history == ["", "session 7 started"]
    assert original.flags & EPHEMERAL and not original.flags & LOADING
    (followup,) = record.followup_ids
    assert server.message(followup).content == "working"
    assert server.calls_to(FOLLOWUP)[0].ok
    assert "dm_permission" in server.commands()[0]


class Controls(discord.ui.View):
    """Stop as a persistent button: registered again by a restarted bot with add_view."""

    def __init__(self, pressed: list[int] | None = None) -> None:
        super().__init__(timeout=None)
        self.pressed = pressed if pressed is not None else []

    @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, custom_id="turn:stop")
    async def stop_turn(self, interaction: discord.Interaction,
                        button: discord.ui.Button[Controls]) -> None:
        self.pressed.append(interaction.user.id)
        await interaction.response.edit_message(content="stopped", view=None)


async def test_button_press_on_a_persistent_view(server: FakeDiscordServer) -> None:
    async with running(Bot(), server.token) as before_restart:
        sent = await (await text_channel(before_restart)).send(  # type: ignore[arg-type]
            "working…", view=Controls())
    assert server.message(sent.id).buttons == [{"type": 2, "style": 4, "label": "Stop",
                                                "disabled": False, "custom_id": "turn:stop"}]
    pressed: list[int] = []

    class Restarted(Bot):
        async def setup_hook(self) -> None:
            self.add_view(Controls(pressed))

    async with running(Restarted(), server.token):
        record = server.press_button(sent.id, "turn:stop", USER)
        await server.wait_for(lambda: record.acknowledged)

    assert pressed == [USER]
    assert record.response_type == 7
    stored = server.message(sent.id)
    assert stored.history == ["working…", "stopped"] and stored.components == []
    with pytest.raises(LookupError):
        server.press_button(sent.id, "turn:stop", USER)


async def test_interaction_rules(server: FakeDiscordServer, bot: Bot) -> None:
    answers: list[BaseException | None] = []

    @bot.tree.command(name="slow", description="Answers late", guild=discord.Object(GUILD))
    async def slow(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as error:
            answers.append(error)
        try:
            await interaction.followup.send("after all")
        except discord.HTTPException as error:
            answers.append(error)

    await bot.tree.sync(guild=discord.Object(GUILD))
    server.interaction_timeout = 0.0
    record = server.run_command("slow", USER, CHANNEL)
    await until(lambda: len(answers) == 2)

    late, unknown_webhook = answers
    assert isinstance(late, discord.NotFound) and late.code == 10062
    assert isinstance(unknown_webhook, discord.NotFound) and unknown_webhook.code == 10015
    assert not record.acknowledged and len(record.callbacks) == 1
    with pytest.raises(LookupError):
        server.run_command("unknown", USER, CHANNEL)
    with pytest.raises(LookupError):
        server.run_command("slow", USER, server.dm_channel(USER).id)


async def test_command_sync_is_validated(server: FakeDiscordServer, bot: Bot) -> None:
    route = discord.http.Route("PUT", "/applications/{application_id}/commands",
                               application_id=server.application_id)
    with pytest.raises(discord.HTTPException, match="Command name is invalid"):
        await bot.http.request(route, json=[{"name": "Stop", "description": "x"}])
    with pytest.raises(discord.HTTPException, match="must be unique"):
        await bot.http.request(route, json=[{"name": "stop", "description": "x"}] * 2)

    first = await bot.http.request(route, json=[{"name": "stop", "description": "Stop"}])
    again = await bot.http.request(route, json=[{"name": "stop", "description": "Stop it"}])

    assert first[0]["id"] == again[0]["id"] and first[0]["version"] != again[0]["version"]


async def test_default_token_is_shaped_like_discord() -> None:
    head = DEFAULT_TOKEN.split(".")[0]

    assert base64.b64decode(head + "==").decode() == str(FakeDiscordServer().bot_id)
