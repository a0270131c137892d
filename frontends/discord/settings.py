"""The ``[discord]`` table of plugins.toml, read once and checked where it is written.

Every mistake is a located ``ConfigError`` (exit code 2). Reading the settings touches no
network and imports no discord.py. The token is registered as a secret the moment it is read,
its variable withheld from agents, and it never appears in ``repr`` or a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cadenza.api import ChatRef, Settings
from cadenza.frontends.live import settings as platform
from cadenza.frontends.live.settings import TokenKind, located, read_token

FRONTEND = "discord"
DISCORD_API = "https://discord.com/api/v10"
_SNOWFLAKE = re.compile(r"\d{1,20}")
_TOKEN = re.compile(r"[\w\-]+\.[\w\-]+\.[\w\-]+")  # three base64url parts
TOKEN = TokenKind("DISCORD_BOT_TOKEN", _TOKEN, "three dot-separated parts",
                  "the Discord Developer Portal (your application → Bot → Reset Token)")

KEYS = (
    "token_env", "token_file", "api_base", "allowed_users", "allowed_guilds", "allowed_roles",
    "allowed_channels", "allow_all_users", "lifecycle_channels", "guild_ids", "edit_interval",
    "flush_timeout", "notify_after", "backoff_min", "backoff_max", "catch_up_hours",
    "merge_pastes",
)


@dataclass(frozen=True)
class Allowlist:
    """Who may use the bot, and where.

    A user is allowed when their id is in ``users``, or, in a guild of ``guilds``, when they
    hold one of ``roles``; in DMs only ``users`` counts. ``channels`` (when not empty) limits
    where in a guild the bot listens; a thread counts as its parent channel."""

    users: frozenset[str]
    guilds: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    anyone: bool = False

    def allows_user(self, user_id: str) -> bool:
        return self.anyone or user_id in self.users

    def allows_member(self, user_id: str, guild_id: str | None, role_ids: set[str]) -> bool:
        if self.allows_user(user_id):
            return True
        return (guild_id is not None and guild_id in self.guilds
                and bool(self.roles & role_ids))

    def listens_in(self, channel_id: str) -> bool:
        return not self.channels or channel_id in self.channels

    @classmethod
    def read(cls, settings: Settings) -> Allowlist:
        sets = {key: _snowflakes(settings, key) for key in
                ("allowed_users", "allowed_guilds", "allowed_roles", "allowed_channels")}
        anyone = settings.get("allow_all_users", False, bool)
        if sets["allowed_roles"] and not sets["allowed_guilds"]:
            raise located(settings, "allowed_roles", "roles only count in the guilds listed in "
                         "allowed_guilds, which is empty")
        if not sets["allowed_users"] and not sets["allowed_roles"] and not anyone:
            raise located(settings, "allowed_users", "is empty (and so is allowed_roles), so "
                         "nobody could use the bot: list the Discord user ids allowed to use "
                         "it (Developer Mode on, then right-click a user: Copy User ID), or "
                         "set allow_all_users = true to let anyone in")
        return cls(frozenset(sets["allowed_users"]), frozenset(sets["allowed_guilds"]),
                   frozenset(sets["allowed_roles"]), frozenset(sets["allowed_channels"]),
                   anyone)


@dataclass(frozen=True)
class DiscordSettings:
    token_env: str
    allowlist: Allowlist
    api_base: str
    lifecycle_chats: tuple[ChatRef, ...]
    guild_ids: tuple[int, ...]  # slash commands synced per guild (they show at once)
    edit_interval: float  # seconds between two sends/edits in one channel (Discord: 5 per 5 s)
    flush_timeout: float  # at shutdown, how long final texts may still take to go out
    notify_after: float  # a turn that ran longer gets a new message at its end; 0: off
    backoff_min: float
    backoff_max: float
    catch_up_hours: float  # at start, channels active this recently are read for missed messages
    token: str = field(default="", repr=False)
    token_file: str = ""
    merge_pastes: bool = True  # a long paste split by the client is one prompt

    @classmethod
    def read(cls, settings: Settings, environ: dict[str, str] | None = None) -> DiscordSettings:
        settings.reject_unknown(KEYS)
        token_env, token_file, token = read_token(settings, TOKEN, environ)
        allowlist = Allowlist.read(settings)
        api_base = platform.api_base(settings, DISCORD_API)
        backoff_min, backoff_max = platform.backoff_range(settings)
        return cls(
            token_env=token_env,
            allowlist=allowlist,
            api_base=api_base,
            lifecycle_chats=tuple(ChatRef(FRONTEND, channel) for channel in
                                  sorted(_snowflakes(settings, "lifecycle_channels"))),
            guild_ids=tuple(int(guild) for guild in sorted(_snowflakes(settings, "guild_ids"))),
            edit_interval=settings.number("edit_interval", 1.0, minimum=0.01),
            flush_timeout=settings.number("flush_timeout", 8.0, minimum=0),
            notify_after=settings.number("notify_after", 30.0, minimum=0),
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            catch_up_hours=settings.number("catch_up_hours", 24.0, minimum=0),
            token=token,
            token_file=token_file,
            merge_pastes=settings.get("merge_pastes", True, bool),
        )

    @property
    def token_source(self) -> str:
        return self.token_file or f"${self.token_env}"

    def doctor_lines(self) -> list[tuple[bool, str]]:
        allow = self.allowlist
        who = ("anyone (allow_all_users = true): everyone who can reach the bot can run the agent"
               if allow.anyone else
               f"{len(allow.users)} allowed user(s), {len(allow.roles)} role(s) in "
               f"{len(allow.guilds)} guild(s)")
        return [(True, f"discord: bot token found in {self.token_source}"),
                (True, f"discord: {who}")]


def _snowflakes(settings: Settings, key: str) -> set[str]:
    values = settings.ids(key)
    for value in sorted(values):
        if not _SNOWFLAKE.fullmatch(value):
            raise settings.error(key, f"{value!r} is not a Discord id (a snowflake: digits "
                                 "only; Developer Mode on, then right-click: Copy ID)")
    return values
