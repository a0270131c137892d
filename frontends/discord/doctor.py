"""``cadenza doctor`` for Discord: the token logs in, the Message Content intent is on, and
the bot holds what it needs in the channels and servers it is configured for.

REST only (no gateway session): a client logs in with the token, then reads each configured
channel, its server's roles and the bot's own member, and lets discord.py compute the bot's
permissions there as Discord does (the server's @everyone role and the bot's roles, the
administrator shortcut, then the channel's overwrites for @everyone, the roles and the bot).
A channel the bot cannot read at all is a missing View Channel: Discord answers 403 then.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from cadenza.frontends.discord.settings import DiscordSettings
from discord.http import Route

Check = tuple[bool, str]
MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT(_LIMITED)
DOCTOR_TIMEOUT = 5.0  # seconds for logging in, and again for the permission checks
# What the bot needs where it talks, as discord.Permissions names them, with Discord's labels
NEEDED = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("send_messages_in_threads", "Send Messages in Threads"),
    ("read_message_history", "Read Message History"),
    ("attach_files", "Attach Files"),
    ("create_public_threads", "Create Public Threads"),
)
# in a thread: what it needs there (the thread's permissions are its parent channel's)
NEEDED_IN_THREAD = ("view_channel", "send_messages_in_threads", "read_message_history",
                    "attach_files")
IN_CHANNEL = ("allow it for the bot's role in the channel (Edit Channel → Permissions) or in "
              "the server (Server Settings → Roles)")
IN_SERVER = "allow it for the bot's role: Server Settings → Roles"
INVITE = ("invite the bot (Developer Portal → OAuth2 → URL Generator, scopes bot and "
          "applications.commands) or fix [discord]")


async def doctor(settings: DiscordSettings) -> list[Check]:
    base = settings.api_base
    saved = Route.BASE
    Route.BASE = base
    client = discord.Client(intents=discord.Intents.none())  # REST only: no gateway
    checks: list[Check] = []
    try:
        async with asyncio.timeout(DOCTOR_TIMEOUT):
            await client.login(settings.token)  # also reads the application's flags
        assert client.user is not None
        checks.append((True, f"discord: {base} answers: this is {client.user.name}"))
        if client.application_flags.value & MESSAGE_CONTENT_FLAGS:
            checks.append((True, "discord: the Message Content intent is enabled"))
        else:
            checks.append((False, "discord: the Message Content intent is off: Developer "
                           "Portal → your application → Bot → Privileged Gateway Intents"))
        async with asyncio.timeout(DOCTOR_TIMEOUT):
            checks.extend(await Permissions(client, settings).checks())
    except discord.LoginFailure:
        checks.append((False, f"discord: {base} rejects the token in {settings.token_source}"))
    except Exception as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
        checks.append((False, f"discord: cannot reach {base}: {reason}"))
    finally:
        await client.close()
        Route.BASE = saved
    return checks


class Permissions:
    """The bot's permissions in ``allowed_channels`` and ``lifecycle_channels``, and, when it
    listens in every channel (``allowed_channels`` empty), in the servers of ``guild_ids`` and
    ``allowed_guilds`` (what their channels give it unless an overwrite says otherwise)."""

    def __init__(self, client: discord.Client, settings: DiscordSettings) -> None:
        self.client = client
        self.settings = settings
        self._guilds: dict[int, tuple[discord.Guild, discord.Member]] = {}

    async def checks(self) -> list[Check]:
        allow = self.settings.allowlist
        channels = allow.channels | {chat.chat_id for chat in self.settings.lifecycle_chats}
        checks: list[Check] = []
        for channel_id in sorted(channels, key=int):
            checks.extend(await self.channel(int(channel_id)))
        guilds = {str(guild) for guild in self.settings.guild_ids} | allow.guilds
        for guild_id in sorted(guilds, key=int):
            checks.extend(await self.guild(int(guild_id)))
        return checks

    async def channel(self, channel_id: int) -> list[Check]:
        where = f"channel {channel_id}"
        try:
            found = await self.client.fetch_channel(channel_id)
            if isinstance(found, discord.abc.PrivateChannel):
                return []  # a DM: the bot may always write there
            guild, me = await self._member_in(found.guild.id)
            channel: Any = await guild.fetch_channel(channel_id)
            needed = NEEDED
            if isinstance(channel, discord.Thread):
                needed = tuple(need for need in NEEDED if need[0] in NEEDED_IN_THREAD)
                channel = await guild.fetch_channel(channel.parent_id)
        except discord.NotFound:
            return [(False, f"discord: {where} does not exist or the bot is not in its "
                     f"server: {INVITE}")]
        except discord.Forbidden:
            return [(False, f"discord: the bot cannot see {where}: it lacks View Channel "
                     f"there, or is not in its server: {IN_CHANNEL}")]
        where = f"#{found.name} ({channel_id})"
        return _missing(channel.permissions_for(me), needed, where, IN_CHANNEL)

    async def guild(self, guild_id: int) -> list[Check]:
        try:
            guild, me = await self._member_in(guild_id)
        except (discord.NotFound, discord.Forbidden):
            return [(False, f"discord: the bot is not in server {guild_id}: {INVITE}")]
        if self.settings.allowlist.channels:
            return [(True, f"discord: the bot is in server {guild.name} ({guild_id})")]
        return _missing(me.guild_permissions, NEEDED, f"server {guild.name} ({guild_id})",
                        IN_SERVER)

    async def _member_in(self, guild_id: int) -> tuple[discord.Guild, discord.Member]:
        """The server with its roles, and the bot as its member (read once per server)."""
        if guild_id not in self._guilds:
            assert self.client.user is not None
            guild = await self.client.fetch_guild(guild_id)
            self._guilds[guild_id] = guild, await guild.fetch_member(self.client.user.id)
        return self._guilds[guild_id]


def _missing(held: discord.Permissions, needed: tuple[tuple[str, str], ...], where: str,
             fix: str) -> list[Check]:
    """One failed check per permission the bot lacks, or one passed check."""
    lacking = [label for name, label in needed if not getattr(held, name)]
    if not lacking:
        return [(True, f"discord: the bot may do what it needs in {where}")]
    return [(False, f"discord: the bot lacks {label} in {where}: {fix}") for label in lacking]
