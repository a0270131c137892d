"""The live link to Discord: the discord.py client, ingress, buttons, slash commands, the
catch-up after a restart, and the live-message engine that delivers through it.

Built by the plugin in ``on_start`` only (discord.py is imported here, when the bot starts).

Ingress fails closed for every event: a message is taken only from a person (not a bot) who
is allowed where they wrote (``Access``), in a DM or, in a guild channel or thread the bot
listens in (``allowed_channels``), when it mentions or replies to the bot. Anything else is
ignored, or refused once an hour when it was addressed to the bot. Each message is handled
once (dedupe by id: a gateway RESUME or the catch-up can deliver it again), in order per chat.
The pieces of a long paste become one prompt (the engine's ``Pastes``; in a guild, a piece
after the first counts as addressed to the bot like the first). A message's files (up to 10)
come with it as ``ChatMessage.attachments``, its text their caption; never part of a paste,
and downloaded only by the plugin that takes them, after the allowlist let the message in.

Discord keeps no queue for a bot that is down: the id of the last message handled in each
channel is kept in the store (``discord_seen``), and at start the channels active in the last
``catch_up_hours`` are read from there on, so what was sent meanwhile is handled in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
import yarl
from cadenza import api
from cadenza.api import Bot, ChatMessage, ChatRef
from cadenza.frontends.discord.access import Access, Refusals, refusal_text
from cadenza.frontends.discord.egress import NO_MENTIONS, ActionButton, Transport, limits
from cadenza.frontends.discord.markup import MAX_MESSAGE
from cadenza.frontends.discord.settings import DISCORD_API, FRONTEND, DiscordSettings
from cadenza.frontends.discord.threads import SessionThreads
from cadenza.frontends.live.engine import Engine
from cadenza.frontends.live.lanes import Lanes
from cadenza.frontends.live.paste import Pastes
from cadenza.frontends.live.retry import RetryPolicy
from cadenza.frontends.live.split import CODEPOINTS
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from sqlalchemy import Column, Float, Integer, MetaData, Table, select

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock, Store

Job = Callable[[], Awaitable[Any]]
SEEN_KEPT = 10_000  # message ids remembered for dedupe
COMMAND_NAME = re.compile(r"[a-z0-9_\-]{1,32}")
CATCH_UP_LIMIT = 200  # messages read per channel at start, at most
PRIVILEGED_HELP = (
    "discord: Discord refused the Message Content intent (gateway close 4014), so the bot "
    "cannot read what people write. Enable it: Discord Developer Portal → your application → "
    "Bot → Privileged Gateway Intents → Message Content Intent, save, and start Cadenza again.")

metadata = MetaData()
seen_table = Table(
    "discord_seen", metadata,
    Column("channel_id", Integer, primary_key=True),
    Column("message_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
)
MIGRATIONS = ["CREATE TABLE discord_seen (channel_id INTEGER PRIMARY KEY, "
              "message_id INTEGER NOT NULL, at REAL NOT NULL)"]


def chat_of(channel: Any) -> ChatRef:
    """A channel's chat: a thread is a chat of its own, under its parent channel."""
    if isinstance(channel, discord.Thread):
        return ChatRef(FRONTEND, str(channel.parent_id), str(channel.id))
    return ChatRef(FRONTEND, str(channel.id))


def _name(user: discord.abc.User) -> str:
    return f"@{user.name}"


def attachment_of(file: discord.Attachment) -> api.Attachment:
    """A file sent with a message, downloaded (from its URL, by discord.py) only when the
    ``on_attachments`` plugin fetches it."""

    async def fetch(path: Path) -> None:
        await file.save(path)

    return api.Attachment(file.filename, file.size, file.content_type or "", fetch)


class Client(discord.Client):
    def __init__(self, connection: Connection) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: enabled in the Developer Portal
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS,
                         guild_ready_timeout=0.5)
        self.connection = connection
        self.tree = app_commands.CommandTree(self)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """One shard: no need to wait 5 s before identifying again."""

    async def setup_hook(self) -> None:
        await self.connection.setup()

    async def on_ready(self) -> None:
        await self.connection.on_ready()

    async def on_message(self, message: discord.Message) -> None:
        await self.connection.message(message)

    async def cadenza_press(self, interaction: discord.Interaction[Any], action: str,
                            turn_id: str) -> None:
        await self.connection.press(interaction, action, turn_id)


class Connection:
    def __init__(self, settings: DiscordSettings, clock: Clock, log: logging.Logger,
                 store: Store, access: Access, refusals: Refusals) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log
        self.store = store
        self.access = access
        self.refusals = refusals
        store.migrate("discord_catchup", MIGRATIONS)
        self.client = Client(self)
        self.transport = Transport(self.client, limits(settings.edit_interval))
        self.engine = Engine(self.transport, clock, log, store,
                             RetryPolicy(settings.backoff_min, settings.backoff_max))
        self.lanes = Lanes(log)
        self.threads = SessionThreads(self.client, store, log)
        self.pastes = Pastes(clock, MAX_MESSAGE, self._prompt, units=CODEPOINTS,
                             enabled=settings.merge_pastes)
        self.seen: OrderedDict[int, None] = OrderedDict()
        self.core: Bot | None = None
        self.refused_intents = False
        self._saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        self._task: asyncio.Task[None] | None = None
        self._chores: list[asyncio.Task[Any]] = []
        self._caught_up = False

    # --- connecting -----------------------------------------------------------------

    def start(self, core: Bot) -> None:
        self.core = core
        self._task = asyncio.ensure_future(self._run(core))

    async def _run(self, core: Bot) -> None:
        await self.engine.load()
        Route.BASE = self.settings.api_base  # process-wide in discord.py: one Discord a process
        try:
            await self.client.start(self.settings.token, reconnect=True)
        except discord.PrivilegedIntentsRequired:
            self.refused_intents = True
            self.log.error(PRIVILEGED_HELP)
            core.request_stop(exit_code=2)
        except discord.LoginFailure:
            self.log.error("discord: %s rejects the bot token in %s; put the token from the "
                           "Developer Portal (Bot → Reset Token) there", self.settings.api_base,
                           self.settings.token_source)
            core.request_stop(exit_code=2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error("discord: the connection ended: %s", api.redact(str(exc)))

    async def setup(self) -> None:
        """After login, before the gateway: find the gateway (a proxy's or the fake's when
        ``api_base`` is not Discord's), register buttons and slash commands."""
        if self.settings.api_base != DISCORD_API:
            _, url, _ = await self.client.http.get_bot_gateway()
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        self.client.add_dynamic_items(ActionButton)
        self._add_commands()
        self._chores.append(asyncio.ensure_future(self._sync_commands()))

    async def on_ready(self) -> None:
        me = self.client.user
        self.log.info("discord: connected to %s as %s", self.settings.api_base,
                      me.name if me else "?")
        self.engine.ready.set()
        if not self._caught_up:
            self._caught_up = True
            self._chores.append(asyncio.ensure_future(self.engine.finish_left_over()))
            self._chores.append(asyncio.ensure_future(self._catch_up()))

    # --- slash commands -------------------------------------------------------------

    def _add_commands(self) -> None:
        assert self.core is not None
        tree = self.client.tree
        for name, text, _ in self.core.command_list():
            if not COMMAND_NAME.fullmatch(name):
                continue
            tree.add_command(app_commands.Command(
                name=name, description=(text or name).strip()[:100] or name,
                callback=self._slash_callback(name)))

    def _slash_callback(self, name: str) -> Callable[..., Awaitable[None]]:
        connection = self

        async def callback(interaction: discord.Interaction[Any], args: str = "") -> None:
            await connection.slash(interaction, name, args)

        return callback

    async def _sync_commands(self) -> None:
        tree = self.client.tree
        try:
            if self.settings.guild_ids:
                for guild_id in self.settings.guild_ids:
                    guild = discord.Object(id=guild_id)
                    tree.copy_global_to(guild=guild)
                    await tree.sync(guild=guild)
            else:
                await tree.sync()
        except Exception as exc:
            self.log.warning("discord: could not register the slash commands: %s",
                             api.redact(str(exc)))

    async def slash(self, interaction: discord.Interaction[Any], name: str, args: str) -> None:
        channel = interaction.channel
        user = interaction.user
        if channel is None or not await self._allowed(user, interaction.guild, channel):
            await self._reply(interaction, "Only the people this bot's operator allowed can "
                              "use it here.")
            return
        text = f"/{name} {args}".strip()
        await self._reply(interaction, f"`{text}`")
        self._handle(ChatMessage(chat_of(channel), str(user.id), text, user_name=_name(user),
                                 message_id=str(interaction.id)))

    # --- buttons --------------------------------------------------------------------

    async def press(self, interaction: discord.Interaction[Any], action: str,
                    turn_id: str) -> None:
        """A button: ``turn_id`` is the command for a question's answer (``cmd``)."""
        core = self.core
        channel = interaction.channel
        if (core is None or channel is None
                or not await self._allowed(interaction.user, interaction.guild, channel)):
            await self._reply(interaction, "Only the people this bot's operator allowed can "
                              "use it.")
            return
        chat = chat_of(channel)
        if action == "cmd":  # a question's answer, as if typed here
            await self._reply(interaction, turn_id)
            self._handle(ChatMessage(chat, str(interaction.user.id), turn_id,
                                     user_name=_name(interaction.user)))
            return
        runner = core.running(turn_id)
        if runner is not None and self.threads.home(runner.turn).chat == chat:
            chat = runner.turn.chat  # shown here: a session's turn in its thread, say
        else:
            runner = None  # a turn of another chat is not this button's
        if action == "stop":
            stopped = runner is not None and core.stop_turn(turn_id, api.CANCELLED,
                                                            "stopped with the Stop button")
            await self._reply(interaction, "Stopping…" if stopped else "That turn already ended.")
        else:
            await self._reply(interaction, "Asking for more time…")
            self._handle(ChatMessage(chat, str(interaction.user.id), f"/extend {turn_id}",
                                     user_name=_name(interaction.user)))

    async def _reply(self, interaction: discord.Interaction[Any], text: str) -> None:
        try:
            await interaction.response.send_message(text, ephemeral=True,
                                                     allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # the event is handled; only the answer is lost
            self.log.info("discord: could not answer an interaction: %s", exc)

    # --- messages -------------------------------------------------------------------

    async def _allowed(self, user: Any, guild: discord.Guild | None, channel: Any) -> bool:
        """Fails closed: any doubt is a refusal."""
        try:
            allow = self.access.allowlist
            user_id = str(user.id)
            if guild is None:
                return allow.allows_user(user_id)
            where = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
            if not allow.listens_in(str(where)):
                return False
            roles: set[str] = set()
            if not allow.allows_user(user_id) and str(guild.id) in allow.guilds:
                member = user if isinstance(user, discord.Member) else None
                if member is None:
                    member = guild.get_member(user.id) or await guild.fetch_member(user.id)
                roles = {str(role.id) for role in member.roles}
            return self.access.admit(user_id, str(guild.id), roles)
        except Exception as exc:
            self.log.warning("discord: checking user %s failed; refused: %s",
                             getattr(user, "id", "?"), exc)
            return False

    def _addressed(self, message: discord.Message) -> str | None:
        """The text for the bot, or None when the message is not for it."""
        me = self.client.user
        if me is None:
            return None
        text = message.content
        if message.guild is None:
            return text
        mentioned = me.id in message.raw_mentions
        ref = message.reference
        replied = (ref is not None and isinstance(ref.resolved, discord.Message)
                   and ref.resolved.author.id == me.id)
        if not mentioned and not replied:
            return None
        return re.sub(rf"<@!?{me.id}>", "", text).strip()

    async def message(self, message: discord.Message) -> None:
        if message.author.bot or message.type not in (discord.MessageType.default,
                                                      discord.MessageType.reply):
            return
        if message.id in self.seen:
            return
        self.seen[message.id] = None
        while len(self.seen) > SEEN_KEPT:
            self.seen.popitem(last=False)
        chat = chat_of(message.channel)
        user = message.author
        text = self._addressed(message)
        if text is None:
            if message.attachments or not self.pastes.continues(chat.key, str(user.id),
                                                                message.content):
                return
            text = message.content  # the next piece of a paste that addressed the bot
        if not await self._allowed(user, message.guild, message.channel):
            self._refuse(message, chat)
            return
        await self._mark(message)
        files = tuple(attachment_of(file) for file in message.attachments)
        if not text and not files:
            self._say(chat, "I can only read text messages.")
            return
        inbound = ChatMessage(chat, str(user.id), text, user_name=_name(user),
                              message_id=str(message.id), attachments=files)
        if files or not self.pastes.offer(inbound, message.content):
            self._handle(inbound)  # files and their caption: one message, never a paste

    def _refuse(self, message: discord.Message, chat: ChatRef) -> None:
        if message.guild is not None:
            where = (message.channel.parent_id if isinstance(message.channel, discord.Thread)
                     else message.channel.id)
            if not self.access.allowlist.listens_in(str(where)):
                return  # a channel the bot does not listen in: not for us
        user_id = str(message.author.id)
        if not self.refusals.due(user_id):
            return
        self.log.warning("discord: refused user %s (%s) in channel %s: not allowed by "
                         "[discord]", user_id, _name(message.author), message.channel.id)
        self._say(chat, refusal_text(user_id), kind="refusal")

    def _say(self, chat: ChatRef, text: str, kind: str = "info") -> None:
        core = self.core
        if core is not None:
            self._put(chat.key, lambda: core.notify(chat, text, kind=kind))

    def _handle(self, message: ChatMessage) -> None:
        self.pastes.flush(message.chat.key)
        self._prompt(message)

    def _put(self, key: str, job: Job) -> None:
        """Run ``job`` in the chat's lane, after any paste held for the chat."""
        self.pastes.flush(key)
        self.lanes.put(key, job)

    def _prompt(self, message: ChatMessage) -> None:
        """A prompt, merged from a paste's pieces or not (``Pastes`` hands them here); in a
        named session's thread, it continues the session."""
        core = self.core
        if core is not None:
            routed = self.threads.route(message)
            self.lanes.put(routed.chat.key, lambda: core.handle(routed))

    async def _mark(self, message: discord.Message) -> None:
        """Remember the last message handled in its channel, for the catch-up."""
        statement = self.store.upsert(seen_table, {}, key=["channel_id"],
                                      update=["message_id", "at"])
        try:
            await self.store.execute(statement, {"channel_id": message.channel.id,
                                                 "message_id": message.id,
                                                 "at": self.clock.time()})
        except Exception as exc:
            self.log.warning("discord: could not record message %s: %s", message.id, exc)

    async def _catch_up(self) -> None:
        """Handle what was sent while Cadenza was down, oldest first."""
        since = self.clock.time() - self.settings.catch_up_hours * 3600
        rows = await self.store.fetch(select(seen_table).where(seen_table.c.at >= since))
        caught = 0
        for row in rows:
            channel_id, after = int(row["channel_id"]), int(row["message_id"])
            channel: Any = self.client.get_channel(channel_id)
            if channel is None:
                channel = self.client.get_partial_messageable(channel_id)
            try:
                async for message in channel.history(after=discord.Object(id=after),
                                                     oldest_first=True, limit=CATCH_UP_LIMIT):
                    if message.id not in self.seen:
                        caught += 1
                    await self.message(message)
            except Exception as exc:
                self.log.warning("discord: could not read channel %s for messages sent while "
                                 "Cadenza was down: %s", channel_id, exc)
        if caught:
            self.log.info("discord: read %d message(s) sent while Cadenza was down", caught)

    # --- stopping -------------------------------------------------------------------

    async def close(self, budget: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget - 0.5, 0.1)
        for task in self._chores:
            task.cancel()
        self.pastes.flush_all()  # held pieces of a paste: handed on like the rest
        await self.engine.flush(min(self.settings.flush_timeout, deadline - loop.time()))
        await self.lanes.close()
        await self.engine.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                await self.client.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved
