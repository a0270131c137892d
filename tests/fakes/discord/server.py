"""FakeDiscordServer: the REST API and gateway on 127.0.0.1, the world they show, and the
helpers tests drive them with."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from mimetypes import guess_type
from typing import Any, Literal

from aiohttp import BodyPartReader, hdrs, web

from tests.fakes.local_server import Dropped, LocalServer

from .gateway import Gateway, GatewaySession
from .limits import Fault, RateLimiter, RateLimits, rate_limited_body
from .model import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    APPLICATION_COMMAND_INTERACTION,
    ATTACH_FILES,
    BOT_PERMISSIONS,
    BUTTON,
    COMPONENT_INTERACTION,
    DIRECT_MESSAGES,
    DM_CHANNEL,
    EMBED_LINKS,
    EVERYONE_PERMISSIONS,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    GUILDS,
    JSON,
    LINK_STYLE,
    MAX_UPLOAD_BYTES,
    MENTION_EVERYONE,
    PRIVATE_THREAD,
    PRIVILEGED_INTENTS,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    REPLY_MESSAGE,
    SEND_MESSAGES,
    TEXT_CHANNEL,
    VIEW_CHANNEL,
    ApiError,
    Attachment,
    Channel,
    Guild,
    InteractionRecord,
    Member,
    Overwrite,
    Pings,
    Role,
    Snowflakes,
    StoredMessage,
    Upload,
    User,
    form_error,
    interaction_token,
    parse_mentions,
    utcnow,
)
from .rest import NO_CONTENT, ROUTES, RestHandlers, RouteSpec, json_response
from .shapes import JsonShapes

Sent = tuple[str, bytes] | tuple[str, bytes, str | None]  # a user's file: name, data, type
DEFAULT_BOT_ID = 1_186_650_000_000_000_001
DEFAULT_OWNER_ID = 1_186_650_000_000_000_002
DM_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY


def token_for(bot_id: int) -> str:
    """A token shaped like Discord's: base64 of the bot's id, a timestamp part, a secret."""
    head = base64.b64encode(str(bot_id).encode()).decode().rstrip("=")
    return f"{head}.GfAkEd.cadenza-fake-discord-token-0123456789abcdef"


DEFAULT_TOKEN = token_for(DEFAULT_BOT_ID)

CallOutcome = Literal["pending", "hanging", "answered", "dropped", "cancelled"]


@dataclass
class ApiCall:
    """One REST request, as logged: ``route`` is the template key, e.g.
    ``"PATCH /channels/{channel_id}/messages/{message_id}"``."""

    route: str
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    token: str | None
    at: float
    body: Any = None
    files: list[Upload] = field(default_factory=list)
    status: int | None = None
    response: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    outcome: CallOutcome = "pending"
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def code(self) -> int | None:
        """Discord's JSON error code of the answer, if any."""
        return self.response.get("code") if isinstance(self.response, dict) else None

    @property
    def channel_id(self) -> int | None:
        value = self.params.get("channel_id")
        return int(value) if value and value.isdigit() else None


@dataclass
class Request:
    """A call as a handler sees it."""

    call: ApiCall
    server: FakeDiscordServer

    @property
    def json(self) -> JSON:
        body = self.call.body
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        return body

    @property
    def files(self) -> list[Upload]:
        return self.call.files

    def snowflake(self, name: str) -> int:
        value = self.call.params.get(name, "")
        if not value.isdigit():
            raise form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        return int(value)

    def flag(self, name: str) -> bool:
        return self.call.query.get(name, "").lower() in ("1", "true")


class FakeDiscordServer(RestHandlers, JsonShapes, LocalServer[Fault]):
    """Discord's REST API (``/api/v10``) and gateway (``/gateway``) in memory."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_id: int = DEFAULT_BOT_ID,
        application_id: int | None = None,
        bot_name: str = "Cadenza",
        owner_id: int = DEFAULT_OWNER_ID,
        strict_token: bool = True,
        heartbeat_interval: float = 0.5,
        enforce_limits: bool = True,
        limits: RateLimits | None = None,
        clock: Callable[[], float] | None = None,
        privileged_intents: int = PRIVILEGED_INTENTS,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        interaction_timeout: float = 3.0,
        nonce_window: float = 300.0,
        patch_discord: bool = True,
    ) -> None:
        """``privileged_intents`` are the ones switched on in the developer portal; asking
        for others at IDENTIFY closes the gateway with 4014. ``clock`` drives rate limits,
        nonce and interaction windows (default: the event loop's time). ``patch_discord``
        points discord.py at this server while it runs as a context manager."""
        super().__init__()
        self.token = token
        self.bot_id = bot_id
        self.application_id = application_id or bot_id
        self.owner_id = owner_id
        self.strict_token = strict_token
        self.enforce_limits = enforce_limits
        self.privileged_intents = privileged_intents
        self.max_upload_bytes = max_upload_bytes
        self.interaction_timeout = interaction_timeout
        self.nonce_window = nonce_window
        self.patch_discord = patch_discord
        self.clock = clock or self._loop_time
        self.tokens_seen: set[str] = set()
        self.calls: list[ApiCall] = []
        self.rate_limited = 0  # 429s the limits (not scripted faults) answered
        self.errors: list[BaseException] = []  # the fake's own failures, REST and gateway
        self.typing: list[tuple[int, float]] = []
        self.downloads: list[Attachment] = []  # each fetch of an attachment from its url
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.gateway = Gateway(self, heartbeat_interval)
        self._messages: dict[int, StoredMessage] = {}
        self._dms: dict[int, int] = {}
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self._global_commands: dict[str, JSON] = {}
        self._guild_commands: dict[int, dict[str, JSON]] = {}
        self._ids = Snowflakes()
        self._limiter = RateLimiter(limits or RateLimits(), lambda: self.clock())
        self._patch: contextlib.ExitStack | None = None
        self.add_user(bot_id, bot_name, bot=True)
        self.add_user(owner_id, "owner")

    # ----------------------------------------------------------------- lifecycle

    async def start(self, *, listening: bool = True) -> str:
        """Pick a port and return the REST base; ``listening=False`` simulates Discord being
        unreachable until ``bring_up()``. ``restart()`` keeps state and gateway sessions, so
        discord.py resumes."""
        await super().start(listening=listening)
        return self.api_base

    def _application(self) -> web.Application:
        # room for a body over the upload limit, so that the limit answers it (413, 40005)
        app = web.Application(client_max_size=2 * self.max_upload_bytes + 1024 * 1024)
        for spec in ROUTES:
            method, path = spec.key.split(" ", 1)
            handler = functools.partial(self._handle, spec)
            app.router.add_route(method, "/api/v{version:\\d+}" + path, handler)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/resume", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}",
                           self._serve_attachment)
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        return app

    def _closing(self) -> None:
        self.gateway.shutdown()  # gateway connections are cut with the REST ones

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` (or a frontend's ``api_base``) should be."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway/resume"

    def endpoints(self) -> contextlib.AbstractContextManager[None]:
        """discord.py pointed at this server (REST base and gateway) for the duration."""
        from .pointing import discord_endpoints

        return discord_endpoints(self.api_base, self.gateway_url)

    async def __aenter__(self) -> FakeDiscordServer:
        await self.start()
        if self.patch_discord:
            self._patch = contextlib.ExitStack()
            self._patch.enter_context(self.endpoints())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._patch is not None:
            self._patch.close()
            self._patch = None
        await self.stop()

    # ----------------------------------------------------------------- the world

    def add_user(self, user_id: int, username: str | None = None, *, bot: bool = False,
                 global_name: str | None = None) -> User:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = User(user_id, username or f"user{user_id}",
                                              global_name, bot)
        return user

    def add_guild(self, guild_id: int, name: str | None = None, *, owner_id: int | None = None,
                  channels: Mapping[int, str] | Iterable[int] = (),
                  members: Iterable[int] = ()) -> Guild:
        """A guild the bot is in: @everyone (id = the guild's), the bot's managed role with
        ``BOT_PERMISSIONS``, the owner and the bot as members. Announced with GUILD_CREATE
        to connected sessions."""
        owner = owner_id or self.owner_id
        self.add_user(owner)
        guild = Guild(guild_id, name or f"Guild {guild_id}", owner)
        guild.roles[guild_id] = Role(guild_id, "@everyone", EVERYONE_PERMISSIONS)
        bot_role = Role(self._ids.next(), self.users[self.bot_id].username, BOT_PERMISSIONS,
                        position=1, managed=True)
        guild.roles[bot_role.id] = bot_role
        guild.members[owner] = Member(owner)
        guild.members[self.bot_id] = Member(self.bot_id, [bot_role.id])
        self.guilds[guild_id] = guild
        names = channels.items() if isinstance(channels, Mapping) else ((c, None) for c in channels)
        for channel_id, channel_name in names:
            self._new_channel(guild, channel_id, channel_name)
        for user_id in members:
            self.add_user(user_id)
            guild.members.setdefault(user_id, Member(user_id))
        self.gateway.dispatch("GUILD_CREATE", lambda s: self._guild_create(guild, s))
        return guild

    def bot_role(self, guild_id: int) -> Role:
        return next(r for r in self.guilds[guild_id].roles.values() if r.managed)

    def set_bot_permissions(self, guild_id: int, permissions: int) -> None:
        """Set the permissions of the bot's own role (GUILD_ROLE_UPDATE)."""
        self.set_role_permissions(guild_id, self.bot_role(guild_id).id, permissions)

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """Set a role's permissions (@everyone's id is the guild's) (GUILD_ROLE_UPDATE)."""
        role = self.guilds[guild_id].roles[role_id]
        role.permissions = permissions
        data = {"guild_id": str(guild_id), "role": self._role_json(role)}
        self._dispatch_guild("GUILD_ROLE_UPDATE", data)

    def add_role(self, guild_id: int, role_id: int, name: str | None = None, *,
                 permissions: int = 0, mentionable: bool = False) -> Role:
        guild = self.guilds[guild_id]
        role = Role(role_id, name or f"role{role_id}", permissions,
                    position=len(guild.roles), mentionable=mentionable)
        guild.roles[role_id] = role
        self._dispatch_guild("GUILD_ROLE_CREATE",
                             {"guild_id": str(guild_id), "role": self._role_json(role)})
        return role

    def add_member(self, guild_id: int, user_id: int, *, roles: Iterable[int] = (),
                   nick: str | None = None) -> Member:
        """Add (or update) a member; GUILD_MEMBER_ADD/UPDATE to sessions with that intent."""
        guild = self.guilds[guild_id]
        self.add_user(user_id)
        for role_id in roles:
            if role_id not in guild.roles:
                raise LookupError(f"no role {role_id} in guild {guild_id}")
        event = "GUILD_MEMBER_UPDATE" if user_id in guild.members else "GUILD_MEMBER_ADD"
        member = guild.members[user_id] = Member(user_id, list(roles), nick)
        data = {**self._member_json(guild, member), "guild_id": str(guild_id)}
        self.gateway.dispatch(event, lambda s: data if s.intents & GUILD_MEMBERS else None)
        return member

    def add_channel(self, guild_id: int, channel_id: int | None = None,
                    name: str | None = None) -> Channel:
        channel = self._new_channel(self.guilds[guild_id], channel_id, name)
        self._dispatch_guild("CHANNEL_CREATE", self._channel_json(channel))
        return channel

    def add_thread(self, parent_id: int, thread_id: int | None = None, name: str | None = None,
                   *, owner_id: int | None = None, private: bool = False) -> Channel:
        """A thread someone opened under a guild text channel (THREAD_CREATE)."""
        parent = self.channels[parent_id]
        if parent.guild_id is None or parent.is_thread:
            raise ValueError("threads live under guild text channels")
        thread = self._new_thread(parent, thread_id or self._ids.next(), name or "thread",
                                  owner_id or self.owner_id, PRIVATE_THREAD if private
                                  else PUBLIC_THREAD)
        return thread

    def set_overwrite(self, channel_id: int, target_id: int, *, allow: int = 0,
                      deny: int = 0) -> None:
        """A permission overwrite on a channel for a role or member (CHANNEL_UPDATE)."""
        channel = self.channels[channel_id]
        guild = self.guilds[channel.guild_id or 0]
        kind = 0 if target_id in guild.roles else 1
        channel.overwrites = [o for o in channel.overwrites if o.id != target_id]
        channel.overwrites.append(Overwrite(target_id, kind, allow, deny))
        self._dispatch_guild("CHANNEL_UPDATE", self._channel_json(channel))

    def dm_channel(self, user_id: int) -> Channel:
        """The DM channel between the bot and ``user_id`` (created on first use)."""
        self.add_user(user_id)
        channel_id = self._dms.get(user_id)
        if channel_id is None:
            channel_id = self._dms[user_id] = self._ids.next()
            self.channels[channel_id] = Channel(channel_id, DM_CHANNEL, recipient_id=user_id)
        return self.channels[channel_id]

    def block_dms(self, user_id: int, blocked: bool = True) -> None:
        """The user refuses DMs from the bot: sends answer 403 / 50007."""
        self.add_user(user_id).accepts_dms = not blocked

    def permissions(self, user_id: int, channel_id: int) -> int:
        """A member's permissions in a channel, as Discord computes them."""
        channel = self.channels[channel_id]
        if channel.guild_id is None:
            return DM_PERMISSIONS
        if channel.is_thread and channel.parent_id is not None:
            channel = self.channels[channel.parent_id]
        guild = self.guilds[channel.guild_id or 0]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        perms = guild.roles[guild.id].permissions
        for role_id in member.roles:
            if role_id in guild.roles:
                perms |= guild.roles[role_id].permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        by_id = {o.id: o for o in channel.overwrites}
        if (everyone := by_id.get(guild.id)) is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.roles:
            if (overwrite := by_id.get(role_id)) is not None:
                allow, deny = allow | overwrite.allow, deny | overwrite.deny
        perms = (perms & ~deny) | allow
        if (own := by_id.get(user_id)) is not None and own.kind == 1:
            perms = (perms & ~own.deny) | own.allow
        if not perms & VIEW_CHANNEL:
            return 0
        if not perms & SEND_MESSAGES:
            perms &= ~(MENTION_EVERYONE | ATTACH_FILES | EMBED_LINKS)
        return perms

    # ----------------------------------------------------------------- pushing (users' side)

    def push_message(
        self,
        channel_id: int,
        user_id: int,
        content: str = "",
        *,
        mention_bot: bool = False,
        reply_to: int | StoredMessage | None = None,
        ping_reply: bool = True,
        attachments: Iterable[Sent] = (),
        **fields: Any,
    ) -> StoredMessage:
        """A user's message (MESSAGE_CREATE): ``mention_bot`` puts ``<@bot>`` first, a reply
        pings its author unless ``ping_reply=False``, ``attachments`` are (filename, bytes)
        or (filename, bytes, content type: else guessed from the name, as Discord does),
        served at their ``url`` (``downloads`` counts the fetches); other Message fields go
        as they are. The user joins the guild if needed."""
        channel = self._known_channel(channel_id)
        self.add_user(user_id)
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].members.setdefault(user_id, Member(user_id))
        if mention_bot:
            content = f"<@{self.bot_id}> {content}".rstrip()
        reference = self._reference(channel, reply_to)
        users, roles, everyone = parse_mentions(content)
        guild_roles = self.guilds[channel.guild_id].roles if channel.guild_id else {}
        pings = Pings({u for u in users if u in self.users},
                      {r for r in roles if r in guild_roles}, everyone and bool(guild_roles))
        if reference is not None and ping_reply:
            pings.users.add(reference.author_id)
        message = self._store(
            channel, user_id, content=content, pings=pings, fields=fields,
            reference_id=reference.id if reference else None,
            type=REPLY_MESSAGE if reference else 0,
            attachments=[self._users_file(channel.id, *sent) for sent in attachments],
        )
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    def push_dm(self, user_id: int, content: str = "", **kwargs: Any) -> StoredMessage:
        """A user's direct message to the bot."""
        return self.push_message(self.dm_channel(user_id).id, user_id, content, **kwargs)

    def push_edit(self, message_id: int, content: str) -> StoredMessage:
        """A user edits their message (MESSAGE_UPDATE)."""
        message = self.message(message_id)
        if message.from_bot:
            raise ValueError("push_edit is for users' messages")
        message.content, message.edited_at = content, utcnow()
        message.snapshot()
        self._dispatch_message("MESSAGE_UPDATE", message)
        return message

    def push_delete(self, message_id: int) -> None:
        """Someone deletes a message (MESSAGE_DELETE)."""
        self._delete_message(self.message(message_id))

    def run_command(self, name: str, user_id: int, channel_id: int,
                    options: Mapping[str, Any] | None = None) -> InteractionRecord:
        """A user runs a synced slash command (INTERACTION_CREATE); options by name."""
        channel = self._known_channel(channel_id)
        command = None
        if channel.guild_id is not None:
            command = self._guild_commands.get(channel.guild_id, {}).get(name)
        command = command or self._global_commands.get(name)
        if command is None:
            raise LookupError(f"no slash command /{name} synced where channel {channel_id} is")
        contexts = command.get("contexts") or [0, 1, 2]
        if channel.is_dm and ("guild_id" in command or 1 not in contexts):
            raise LookupError(f"/{name} is not available in DMs")
        data: JSON = {"id": command["id"], "name": name, "type": command.get("type", 1)}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        values = self._command_options(command, dict(options or {}))
        if values:
            data["options"] = values
        return self._interact(APPLICATION_COMMAND_INTERACTION, user_id, channel, data)

    def press_button(self, message: int | StoredMessage, custom_id: str,
                     user_id: int) -> InteractionRecord:
        """A user presses a button on a message (INTERACTION_CREATE, component)."""
        stored = self.message(message if isinstance(message, int) else message.id)
        if stored.deleted:
            raise LookupError(f"message {stored.id} is deleted")
        button = next((b for b in stored.buttons if b.get("custom_id") == custom_id), None)
        if button is None or button.get("style") == LINK_STYLE:
            raise LookupError(f"no button {custom_id!r} on message {stored.id}")
        if button.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled")
        channel = self.channels[stored.channel_id]
        data = {"custom_id": custom_id, "component_type": BUTTON}
        return self._interact(COMPONENT_INTERACTION, user_id, channel, data, stored)

    def dispatch(self, event: str, data: JSON) -> int:
        """Any gateway event, as it is, to every session; returns how many got it."""
        return self.gateway.dispatch(event, lambda session: data)

    # ----------------------------------------------------------------- inspection

    def channel(self, channel_id: int) -> Channel:
        return self.channels[channel_id]

    def message(self, message_id: int) -> StoredMessage:
        try:
            return self._messages[message_id]
        except KeyError:
            raise LookupError(f"no message {message_id}") from None

    def messages(self, channel_id: int) -> list[StoredMessage]:
        """Every message in the channel (users' and the bot's, deleted ones too), in order."""
        channel = self.channels.get(channel_id)
        return [self._messages[i] for i in channel.message_ids] if channel else []

    def visible_messages(self, channel_id: int) -> list[StoredMessage]:
        return [m for m in self.messages(channel_id) if not m.deleted]

    def bot_messages(self, channel_id: int, *,
                     include_deleted: bool = False) -> list[StoredMessage]:
        return [m for m in self.messages(channel_id)
                if m.from_bot and (include_deleted or not m.deleted)]

    def texts(self, channel_id: int) -> list[str]:
        """Current contents of the bot's visible messages in the channel."""
        return [m.content for m in self.bot_messages(channel_id)]

    def calls_to(self, route: str, **params: int | str) -> list[ApiCall]:
        """Calls of one route key, optionally only those with these path parameters."""
        wanted = {key: str(value) for key, value in params.items()}
        return [c for c in self.calls if c.route == route
                and all(c.params.get(k) == v for k, v in wanted.items())]

    def count_status(self, status: int, route: str | None = None) -> int:
        return sum(c.status == status for c in self.calls if route is None or c.route == route)

    def in_flight(self, route: str | None = None) -> list[ApiCall]:
        calls = self.calls if route is None else self.calls_to(route)
        return [c for c in calls if c.outcome in ("pending", "hanging")]

    def typing_in(self, channel_id: int) -> list[float]:
        """When the bot triggered typing in the channel."""
        return [at for channel, at in self.typing if channel == channel_id]

    def commands(self, guild_id: int | None = None) -> list[JSON]:
        """The synced slash commands: global, or one guild's."""
        store = (self._global_commands if guild_id is None
                 else self._guild_commands.get(guild_id, {}))
        return list(store.values())

    def interaction(self, interaction_id: int) -> InteractionRecord:
        return self.interactions[interaction_id]

    @property
    def sessions(self) -> list[GatewaySession]:
        return self.gateway.sessions

    async def wait_for_session(self, *, resumes: int = 0, timeout: float = 5.0) -> GatewaySession:
        """A connected session, optionally one that has resumed ``resumes`` times or more."""
        return await self.wait_for(lambda: next(
            (s for s in self.gateway.connected if s.resumes >= resumes), None), timeout)

    # ----------------------------------------------------------------- faults

    def fail_next(self, route: str, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``route`` (a key like ``EDIT``, "*" for any)
        with ``fault``."""
        if route != "*" and route not in {spec.key for spec in ROUTES}:
            raise ValueError(f"unknown route {route!r}")
        self._queue_fault(route, fault, times)

    def rate_limit_next(self, route: str, times: int = 1, retry_after: float = 0.05, *,
                        is_global: bool = False) -> None:
        """Answer the next ``times`` calls of ``route`` with a 429 (discord.py waits and
        retries each, up to 5 tries per request)."""
        self.fail_next(route, Fault.rate_limited(retry_after, is_global=is_global), times)

    async def close_gateway(self, code: int, reason: str | None = None) -> None:
        """Close the gateway with ``code`` (4004: bad token, 4014: disallowed intents, ...)."""
        await self.gateway.close(code, reason)

    def drop_gateway(self) -> None:
        """Cut the gateway connection mid-session; discord.py RESUMEs and what was dispatched
        meanwhile is replayed."""
        self.gateway.drop()

    def send_reconnect(self) -> None:
        self.gateway.send_reconnect()

    def invalidate_session(self, resumable: bool = False) -> None:
        self.gateway.invalidate(resumable)

    # ----------------------------------------------------------------- HTTP plumbing

    async def _handle(self, spec: RouteSpec, request: web.Request) -> web.StreamResponse:
        params = {k: v for k, v in request.match_info.items() if k != "version"}
        call = ApiCall(spec.key, request.method, request.path, params, dict(request.query),
                       self._auth_token(request), self._loop_time())
        self.calls.append(call)
        self._notify()
        try:
            try:
                call.body, call.files = await self._read_body(request)
            except ApiError as error:
                status, body, headers = error.status, error.body(), {}
            else:
                status, body, headers = await self._answer(spec, call)
        except Dropped:
            self._finish(call, "dropped")
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        except asyncio.CancelledError:
            self._finish(call, "cancelled")
            raise
        self._finish(call, "answered", status, body, headers)
        if body is NO_CONTENT:
            return web.Response(status=status, headers=headers)
        return json_response(body, status, headers)

    async def _answer(self, spec: RouteSpec, call: ApiCall) -> tuple[int, Any, dict[str, str]]:
        fault = self._take_fault(spec.key)
        if fault is not None and fault.kind == "error":
            return fault.status, fault.as_error().body(), {}
        if fault is not None and fault.kind == "rate_limited":
            headers = {"Retry-After": str(max(1, round(fault.retry_after))), "Via": "1.1 google",
                       "X-RateLimit-Scope": "global" if fault.is_global else "user"}
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            return 429, rate_limited_body(fault.retry_after, is_global=fault.is_global), headers
        if fault is not None and fault.kind == "hang":
            await self._hang(call)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            raise Dropped
        if spec.auth and not self._token_ok(call.token):
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        headers: dict[str, str] = {}
        if self.enforce_limits and spec.limited:
            verdict = self._limiter.check(spec.key, spec.major(call.params),
                                          global_limit=spec.global_limit)
            headers = verdict.headers
            if verdict.retry_after is not None:
                self.rate_limited += 1
                return 429, rate_limited_body(verdict.retry_after,
                                              is_global=verdict.is_global), headers
        try:
            result = getattr(self, spec.handler)(Request(call, self))
        except ApiError as error:
            return error.status, error.body(), headers
        except Exception as error:  # a bug in the fake: fail fast (discord.py retries 500s)
            self.errors.append(error)
            return 503, {"message": f"503: fake server error: {error!r}", "code": 0}, headers
        if fault is not None and fault.kind == "drop":
            raise Dropped
        return (204 if result is NO_CONTENT else 200), result, headers

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        if not request.body_exists:
            return None, []
        if request.content_type == "multipart/form-data":
            payload: Any = None
            files: list[Upload] = []
            extra: JSON = {}
            async for part in await request.multipart():
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                name = part.name or ""
                if name == "payload_json":
                    payload = self._parse_json(data)
                elif (match := re.fullmatch(r"files\[(\d+)\]", name)) or part.filename:
                    index = int(match.group(1)) if match else len(files)
                    files.append(Upload(index, part.filename or f"file{index}", data,
                                        part.headers.get(hdrs.CONTENT_TYPE)))
                else:
                    extra[name] = data.decode()
            if payload is None:
                payload = extra
            return payload, files
        return self._parse_json(await request.read()), []

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _auth_token(self, request: web.Request) -> str | None:
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            return None
        token = header.removeprefix("Bot ")
        self.tokens_seen.add(token)
        return token

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str) or not token:
            return False
        self.tokens_seen.add(token)
        return token == self.token or not self.strict_token

    def _finish(self, call: ApiCall, outcome: CallOutcome, status: int | None = None,
                body: Any = None, headers: dict[str, str] | None = None) -> None:
        call.outcome, call.status = outcome, status
        call.response = None if body is NO_CONTENT else body
        call.headers = headers or {}
        call.finished_at = self._loop_time()
        self._notify()

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["attachment_id"]
        for message in self._messages.values():
            for attachment in message.attachments:
                if str(attachment.id) == wanted:
                    self.downloads.append(attachment)
                    return web.Response(body=attachment.data,
                                        content_type=attachment.content_type
                                        or "application/octet-stream")
        return web.Response(status=404, text="Not Found")

    @staticmethod
    async def _unknown_route(request: web.Request) -> web.StreamResponse:
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    # ----------------------------------------------------------------- state helpers

    def _known_channel(self, channel_id: int) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise LookupError(f"no channel {channel_id}: add_guild/add_channel/dm_channel first")
        return channel

    def _new_channel(self, guild: Guild, channel_id: int | None, name: str | None) -> Channel:
        channel_id = channel_id or self._ids.next()
        channel = Channel(channel_id, TEXT_CHANNEL, name or f"channel-{channel_id}",
                          guild.id, position=len(guild.channel_ids))
        self.channels[channel_id] = channel
        guild.channel_ids.append(channel_id)
        return channel

    def _new_thread(self, parent: Channel, thread_id: int, name: str, owner_id: int,
                    kind: int, auto_archive_duration: int = 1440) -> Channel:
        guild = self.guilds[parent.guild_id or 0]
        thread = Channel(thread_id, kind, name, guild.id, parent_id=parent.id, owner_id=owner_id,
                         auto_archive_duration=auto_archive_duration)
        self.channels[thread_id] = thread
        guild.channel_ids.append(thread_id)
        data = {**self._channel_json(thread), "newly_created": True}
        self._dispatch_guild("THREAD_CREATE", data)
        return thread

    def _reference(self, channel: Channel,
                   target: int | StoredMessage | None) -> StoredMessage | None:
        if target is None:
            return None
        message = self._messages.get(target if isinstance(target, int) else target.id)
        if message is None or message.channel_id != channel.id:
            raise LookupError(f"no message {target} in channel {channel.id}")
        return message

    def _attachment(self, channel_id: int, filename: str, data: bytes,
                    content_type: str | None = None, description: str | None = None) -> Attachment:
        attachment_id = self._ids.next()
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        return Attachment(attachment_id, filename, data, content_type, description, url)

    def _users_file(self, channel_id: int, filename: str, data: bytes,
                    content_type: str | None = None) -> Attachment:
        """A file a user sent: without a type from the client, Discord guesses one."""
        return self._attachment(channel_id, filename, data,
                                content_type or guess_type(filename)[0])

    def _store(self, channel: Channel, author_id: int, **fields: Any) -> StoredMessage:
        message = StoredMessage(self._ids.next(), channel.id, channel.guild_id, author_id,
                                author_id == self.bot_id, **fields)
        self._messages[message.id] = message
        channel.message_ids.append(message.id)
        self._notify()
        return message

    def _delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        self._notify()
        if message.ephemeral:
            return
        data = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        channel = self.channels[message.channel_id]
        intent = DIRECT_MESSAGES if channel.is_dm else GUILD_MESSAGES
        if channel.guild_id is None or self._bot_sees(channel):
            self.gateway.dispatch("MESSAGE_DELETE", lambda s: data if s.intents & intent else None)

    def _dispatch_message(self, event: str, message: StoredMessage) -> None:
        """MESSAGE_CREATE/UPDATE to sessions with the intent, content hidden from sessions
        without MESSAGE_CONTENT as Discord does."""
        channel = self.channels[message.channel_id]
        if message.ephemeral:
            return
        if channel.guild_id is not None and not self._bot_sees(channel):
            return
        intent = DIRECT_MESSAGES if channel.is_dm else GUILD_MESSAGES
        self.gateway.dispatch(event, lambda s: self._message_json(
            message, gateway=True, intents=s.intents) if s.intents & intent else None)

    def _bot_sees(self, channel: Channel) -> bool:
        return bool(self.permissions(self.bot_id, channel.id) & VIEW_CHANNEL)

    def _dispatch_guild(self, event: str, data: JSON) -> None:
        self.gateway.dispatch(event, lambda s: data if s.intents & GUILDS else None)

    def _interact(self, kind: int, user_id: int, channel: Channel, data: JSON,
                  message: StoredMessage | None = None) -> InteractionRecord:
        self.add_user(user_id)
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].members.setdefault(user_id, Member(user_id))
        record = InteractionRecord(self._ids.next(), interaction_token(), kind, user_id,
                                   channel.id, channel.guild_id, data, self.clock(),
                                   message.id if message else None)
        self.interactions[record.id] = record
        payload = self._interaction_json(record)
        self.gateway.dispatch("INTERACTION_CREATE", lambda s: payload)
        self._notify()
        return record

    def _command_options(self, command: JSON, given: dict[str, Any]) -> list[JSON]:
        defined = {o["name"]: o for o in command.get("options") or []}
        values = []
        for name, value in given.items():
            option = defined.get(name)
            if option is None:
                raise ValueError(f"/{command['name']} has no option {name!r}")
            kind = option.get("type", 3)
            if kind in (6, 7, 8, 9):  # user, channel, role, mentionable: snowflakes
                value = str(value)
            values.append({"name": name, "type": kind, "value": value})
        missing = [n for n, o in defined.items() if o.get("required") and n not in given]
        if missing:
            raise ValueError(f"/{command['name']} needs {', '.join(missing)}")
        return values

    def _member_chunks(self, data: JSON) -> list[JSON]:
        guild = self.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return []
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "").lower()
        members = [m for m in guild.members.values()
                   if (not wanted or m.user_id in wanted)
                   and self.users[m.user_id].username.lower().startswith(query)]
        chunk: JSON = {"guild_id": str(guild.id), "chunk_index": 0, "chunk_count": 1,
                       "members": [self._member_json(guild, m) for m in members], "not_found": []}
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        return [chunk]

    def _denied_intents(self) -> int:
        return PRIVILEGED_INTENTS & ~self.privileged_intents
