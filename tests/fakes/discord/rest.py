"""The REST routes the fake serves and their handlers (a mixin of FakeDiscordServer)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from . import limits as r
from .model import (
    ALREADY_ACKNOWLEDGED,
    ATTACH_FILES,
    CANNOT_ACT_ON_DM,
    CANNOT_DM_USER,
    CANNOT_EDIT_OTHERS,
    CHANNEL_MESSAGE,
    CHAT_INPUT_COMMAND_MESSAGE,
    COMPONENT_INTERACTION,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    DEFAULT_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    EMPTY_MESSAGE,
    ENTITY_TOO_LARGE,
    EPHEMERAL,
    IS_COMPONENTS_V2,
    JSON,
    LOADING,
    MANAGE_MESSAGES,
    MENTION_EVERYONE,
    MISSING_ACCESS,
    MODAL,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    REPLY_MESSAGE,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    SUPPRESS_NOTIFICATIONS,
    THREAD_ALREADY_CREATED,
    UNKNOWN_CHANNEL,
    UNKNOWN_GUILD,
    UNKNOWN_INTERACTION,
    UNKNOWN_MEMBER,
    UNKNOWN_MESSAGE,
    UNKNOWN_USER,
    UNKNOWN_WEBHOOK,
    UPDATE_MESSAGE,
    VIEW_CHANNEL,
    ApiError,
    Channel,
    Guild,
    InteractionRecord,
    StoredMessage,
    Upload,
    check_allowed_mentions,
    check_components,
    check_content,
    check_nonce,
    forbidden,
    form_error,
    not_found,
    parse_snowflake,
    resolve_pings,
    too_long,
    utcnow,
)

if TYPE_CHECKING:
    from .server import FakeDiscordServer, Request

SUPPRESS_EMBEDS = 1 << 2
SEND_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
RESPONSE_FLAGS = SEND_FLAGS | EPHEMERAL
ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)
FOLLOWUP_WINDOW = 15 * 60.0
_COMMAND_NAME = re.compile(r"[-_'\w]{1,32}")


def json_response(body: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with Discord's exact Content-Type: discord.py parses a body only when the header
    is ``application/json`` with no charset."""
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={**(headers or {}), hdrs.CONTENT_TYPE: "application/json"})


class _NoContent:
    def __repr__(self) -> str:
        return "NO_CONTENT"


NO_CONTENT: Any = _NoContent()


@dataclass(frozen=True)
class RouteSpec:
    key: str
    handler: str
    auth: bool = True  # needs "Authorization: Bot TOKEN"
    global_limit: bool = True  # counts against the 50 requests/s
    limited: bool = True  # has a per-route bucket

    def major(self, params: dict[str, str]) -> str:
        """Discord's major parameter: the channel, guild or webhook a bucket is per."""
        for key in ("channel_id", "guild_id"):
            if key in params:
                return params[key]
        if "interaction_token" in params:
            return f"{params.get('application_id', '')}+{params['interaction_token']}"
        return ""


ROUTES = [
    RouteSpec(r.GET_ME, "_get_me"),
    RouteSpec(r.OPEN_DM, "_open_dm"),
    RouteSpec(r.GET_USER, "_get_user"),
    RouteSpec(r.GATEWAY, "_get_gateway", auth=False),
    RouteSpec(r.GATEWAY_BOT, "_get_gateway_bot"),
    RouteSpec(r.APPLICATION, "_get_application"),
    RouteSpec(r.OAUTH_APPLICATION, "_get_application"),
    RouteSpec(r.GET_CHANNEL, "_get_channel"),
    RouteSpec(r.SEND, "_send"),
    RouteSpec(r.HISTORY, "_history"),
    RouteSpec(r.GET_MESSAGE, "_get_message"),
    RouteSpec(r.EDIT, "_edit"),
    RouteSpec(r.DELETE, "_delete"),
    RouteSpec(r.TYPING, "_typing"),
    RouteSpec(r.START_THREAD, "_start_thread"),
    RouteSpec(r.START_THREAD_FROM_MESSAGE, "_start_thread_from_message"),
    RouteSpec(r.GET_GUILD, "_get_guild"),
    RouteSpec(r.GET_MEMBER, "_get_member"),
    RouteSpec(r.GET_ROLES, "_get_roles"),
    RouteSpec(r.GLOBAL_COMMANDS, "_put_global_commands"),
    RouteSpec(r.GET_GLOBAL_COMMANDS, "_get_global_commands"),
    RouteSpec(r.GUILD_COMMANDS, "_put_guild_commands"),
    RouteSpec(r.GET_GUILD_COMMANDS, "_get_guild_commands"),
    RouteSpec(r.CALLBACK, "_callback", auth=False, global_limit=False, limited=False),
    RouteSpec(r.FOLLOWUP, "_followup", auth=False, global_limit=False),
    RouteSpec(r.GET_RESPONSE, "_get_response", auth=False, global_limit=False),
    RouteSpec(r.EDIT_RESPONSE, "_edit_response", auth=False, global_limit=False),
    RouteSpec(r.DELETE_RESPONSE, "_delete_response", auth=False, global_limit=False),
]


class RestHandlers:
    """Each handler takes a Request and returns JSON, NO_CONTENT (204) or raises ApiError."""

    # ----------------------------------------------------------------- users, gateway, app

    def _get_me(self: FakeDiscordServer, req: Request) -> JSON:
        return self._me_json()

    def _get_user(self: FakeDiscordServer, req: Request) -> JSON:
        user_id = req.snowflake("user_id")
        if user_id not in self.users:
            raise not_found(UNKNOWN_USER, "User")
        return self._user_json(user_id)

    def _open_dm(self: FakeDiscordServer, req: Request) -> JSON:
        user_id = parse_snowflake(req.json.get("recipient_id"))
        if user_id is None:
            raise form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        if user_id not in self.users or user_id == self.bot_id:
            raise not_found(UNKNOWN_USER, "User")
        return self._channel_json(self.dm_channel(user_id))

    def _get_gateway(self: FakeDiscordServer, req: Request) -> JSON:
        return {"url": self.gateway_url}

    def _get_gateway_bot(self: FakeDiscordServer, req: Request) -> JSON:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999,
                                    "reset_after": 14_400_000, "max_concurrency": 1},
        }

    def _get_application(self: FakeDiscordServer, req: Request) -> JSON:
        return {
            "id": str(self.application_id), "name": self.users[self.bot_id].username,
            "icon": None, "description": "", "summary": "", "type": None,
            "bot_public": True, "bot_require_code_grant": False,
            "bot": self._user_json(self.bot_id), "owner": self._user_json(self.owner_id),
            "team": None, "verify_key": "0" * 64, "flags": self._application_flags(),
            "interactions_endpoint_url": None, "redirect_uris": [], "tags": [],
            "approximate_guild_count": len(self.guilds), "integration_types_config": {},
        }

    # ----------------------------------------------------------------- channels

    def _channel_for(self: FakeDiscordServer, req: Request) -> Channel:
        channel = self.channels.get(req.snowflake("channel_id"))
        if channel is None:
            raise not_found(UNKNOWN_CHANNEL, "Channel")
        return channel

    def _require(self: FakeDiscordServer, channel: Channel, needed: int) -> None:
        """The bot's permissions in a guild channel: 50001 unseen, 50013 missing."""
        if channel.guild_id is None:
            return
        perms = self.permissions(self.bot_id, channel.id)
        if not perms & VIEW_CHANNEL:
            raise forbidden(MISSING_ACCESS, "Missing Access")
        if perms & needed != needed:
            raise forbidden()

    def _require_send(self: FakeDiscordServer, channel: Channel, *, files: bool = False) -> None:
        if channel.is_dm:
            recipient = self.users[channel.recipient_id or 0]
            if not recipient.accepts_dms:
                raise forbidden(CANNOT_DM_USER, "Cannot send messages to this user")
            return
        needed = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        self._require(channel, needed | (ATTACH_FILES if files else 0))

    def _get_channel(self: FakeDiscordServer, req: Request) -> JSON:
        channel = self._channel_for(req)
        self._require(channel, VIEW_CHANNEL)
        return self._channel_json(channel)

    def _typing(self: FakeDiscordServer, req: Request) -> Any:
        channel = self._channel_for(req)
        self._require_send(channel)
        self.typing.append((channel.id, self.clock()))
        self._notify()
        return NO_CONTENT

    # ----------------------------------------------------------------- messages

    def _channel_message(self: FakeDiscordServer, channel: Channel,
                         message_id: int) -> StoredMessage:
        message = self._messages.get(message_id)
        if (message is None or message.channel_id != channel.id
                or not self._visible_in_history(message)):
            raise not_found(UNKNOWN_MESSAGE, "Message")
        return message

    def _send(self: FakeDiscordServer, req: Request) -> JSON:
        channel = self._channel_for(req)
        self._require_send(channel, files=bool(req.files))
        body = req.json
        nonce = check_nonce(body.get("nonce"))
        if body.get("enforce_nonce") and nonce is not None:
            prior = self._nonces.get((channel.id, self.bot_id, str(nonce)))
            if prior is not None and self.clock() - prior[1] <= self.nonce_window:
                earlier = self._messages[prior[0]]
                if not earlier.deleted:
                    return self._message_json(earlier)
        fields = self._compose(body, req.files, channel, SEND_FLAGS)
        self._check_not_empty(fields, body)
        reference = self._reply_reference(channel, body.get("message_reference"))
        message = self._create(channel, fields, reference=reference, nonce=nonce,
                               tts=bool(body.get("tts")))
        if nonce is not None:
            self._nonces[(channel.id, self.bot_id, str(nonce))] = (message.id, self.clock())
        return self._message_json(message)

    def _edit(self: FakeDiscordServer, req: Request) -> JSON:
        channel = self._channel_for(req)
        self._require(channel, VIEW_CHANNEL)
        message = self._channel_message(channel, req.snowflake("message_id"))
        if message.author_id != self.bot_id:
            raise forbidden(CANNOT_EDIT_OTHERS, "Cannot edit a message authored by another user")
        self._apply_edit(message, req.json, req.files, channel)
        return self._message_json(message)

    def _delete(self: FakeDiscordServer, req: Request) -> Any:
        channel = self._channel_for(req)
        self._require(channel, VIEW_CHANNEL)
        message = self._channel_message(channel, req.snowflake("message_id"))
        if message.author_id != self.bot_id:
            if channel.is_dm:
                raise forbidden(CANNOT_ACT_ON_DM, "Cannot execute action on a DM channel")
            self._require(channel, MANAGE_MESSAGES)
        self._delete_message(message)
        return NO_CONTENT

    def _get_message(self: FakeDiscordServer, req: Request) -> JSON:
        channel = self._channel_for(req)
        self._require(channel, READ_MESSAGE_HISTORY)
        return self._message_json(self._channel_message(channel, req.snowflake("message_id")))

    def _history(self: FakeDiscordServer, req: Request) -> list[JSON]:
        """Newest first, as Discord answers; ``after`` gives the oldest ``limit`` after it."""
        channel = self._channel_for(req)
        self._require(channel, READ_MESSAGE_HISTORY)
        query = req.call.query
        limit = self._query_int(query, "limit", 50)
        if not 1 <= limit <= 100:
            raise form_error("limit", "NUMBER_TYPE_MAX",
                             "int value should be less than or equal to 100.")
        anchors = {key: self._query_snowflake(query, key) for key in ("around", "before", "after")}
        shown = [m for m in self.messages(channel.id) if self._visible_in_history(m)]
        if anchors["around"] is not None:
            at = next((i for i, m in enumerate(shown) if m.id >= anchors["around"]), len(shown))
            start = max(at - limit // 2, 0)
            window = shown[start:start + limit]
        elif anchors["after"] is not None:
            window = [m for m in shown if m.id > anchors["after"]][:limit]
        else:
            before = anchors["before"]
            window = [m for m in shown if before is None or m.id < before][-limit:]
        return [self._message_json(m) for m in reversed(window)]

    @staticmethod
    def _query_int(query: dict[str, str], key: str, default: int) -> int:
        value = query.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise form_error(key, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.') from None

    @staticmethod
    def _query_snowflake(query: dict[str, str], key: str) -> int | None:
        value = query.get(key)
        if value is None:
            return None
        if not value.isdigit():
            raise form_error(key, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        return int(value)

    # ----------------------------------------------------------------- composing messages

    def _compose(self: FakeDiscordServer, body: JSON, files: list[Upload], channel: Channel,
                 flag_mask: int, editing: StoredMessage | None = None) -> JSON:
        """Validated message fields from a create/edit body; only those present."""
        fields: JSON = {}
        flags = editing.flags if editing else 0
        if body.get("flags") is not None:
            given = body["flags"]
            if isinstance(given, bool) or not isinstance(given, int):
                raise form_error("flags", "NUMBER_TYPE_COERCE", f'Value "{given}" is not int.')
            flags = (flags & ~SUPPRESS_EMBEDS) | (given & SUPPRESS_EMBEDS) if editing \
                else given & flag_mask
            fields["flags"] = flags
        if "content" in body:
            fields["content"] = check_content(body["content"]) or ""
        if "components" in body:
            fields["components"] = check_components(body["components"], flags)
        if "embeds" in body:
            embeds = body["embeds"] or []
            if not isinstance(embeds, list):
                raise form_error("embeds", "BASE_TYPE_ARRAY", "Could not interpret value as array.")
            if len(embeds) > 10:
                raise too_long("embeds", 10)
            fields["embeds"] = embeds
        if "allowed_mentions" in body:
            fields["allowed_mentions"] = check_allowed_mentions(body["allowed_mentions"])
        if sum(len(f.data) for f in files) > self.max_upload_bytes:
            raise ApiError(413, ENTITY_TOO_LARGE, "Request entity too large")
        declared = body.get("attachments")
        meta = {str(d.get("id")): d for d in declared if isinstance(d, dict)} \
            if isinstance(declared, list) else {}
        new = [
            self._attachment(channel.id, str(meta.get(str(f.index), {}).get("filename")
                                             or f.filename), f.data, f.content_type,
                             meta.get(str(f.index), {}).get("description"))
            for f in files
        ]
        if editing is None:
            if new or declared is not None:
                fields["attachments"] = new
        elif isinstance(declared, list):
            fields["attachments"] = [a for a in editing.attachments if str(a.id) in meta] + new
        elif new:
            fields["attachments"] = editing.attachments + new
        if len(fields.get("attachments", [])) > 10:
            raise too_long("attachments", 10)
        return fields

    @staticmethod
    def _check_not_empty(fields: JSON, body: JSON, current: StoredMessage | None = None) -> None:
        def value(key: str) -> Any:
            return fields[key] if key in fields else getattr(current, key, None)

        if not any(value(k) for k in ("content", "embeds", "attachments", "components")) \
                and not body.get("sticker_ids") and not body.get("poll"):
            raise ApiError(400, EMPTY_MESSAGE, "Cannot send an empty message")

    def _reply_reference(self: FakeDiscordServer, channel: Channel,
                         reference: Any) -> StoredMessage | None:
        if not isinstance(reference, dict):
            return None
        target = self._messages.get(parse_snowflake(reference.get("message_id")) or 0)
        if target is None or target.deleted or target.channel_id != channel.id:
            if reference.get("fail_if_not_exists", True):
                raise form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                 "Unknown message")
            return None
        return target

    def _create(self: FakeDiscordServer, channel: Channel, fields: JSON, *,
                type: int = DEFAULT_MESSAGE, reference: StoredMessage | None = None,
                nonce: str | int | None = None, tts: bool = False, webhook: bool = False,
                interaction_metadata: JSON | None = None) -> StoredMessage:
        """A message by the bot; pings resolved as Discord would notify."""
        guild = self.guilds.get(channel.guild_id or 0)
        everyone = guild is not None and bool(
            self.permissions(self.bot_id, channel.id) & MENTION_EVERYONE)
        roles = {i for i, role in guild.roles.items() if i != guild.id
                 and (role.mentionable or everyone)} if guild else set()
        content = fields.get("content", "")
        allowed = fields.get("allowed_mentions")
        pings = resolve_pings(content, allowed, known_users=set(self.users), known_roles=roles,
                              can_ping_everyone=everyone,
                              replied_author=reference.author_id if reference else None)
        message = self._store(
            channel, self.bot_id, content=content, components=fields.get("components", []),
            embeds=fields.get("embeds", []), attachments=fields.get("attachments", []),
            flags=fields.get("flags", 0), pings=pings, nonce=nonce, allowed_mentions=allowed,
            reference_id=reference.id if reference else None, tts=tts,
            type=REPLY_MESSAGE if reference and type == DEFAULT_MESSAGE else type,
            webhook_id=self.application_id if webhook else None,
            interaction_metadata=interaction_metadata,
        )
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    def _apply_edit(self: FakeDiscordServer, message: StoredMessage, body: JSON,
                    files: list[Upload], channel: Channel, *, loading_done: bool = False) -> None:
        fields = self._compose(body, files, channel, SEND_FLAGS, editing=message)
        self._check_not_empty(fields, body, message)
        for key, value in fields.items():
            setattr(message, key, value)
        if loading_done:
            message.flags &= ~LOADING
        message.edited_at = utcnow()
        message.snapshot()
        self._notify()
        self._dispatch_message("MESSAGE_UPDATE", message)

    # ----------------------------------------------------------------- threads

    def _thread_fields(self: FakeDiscordServer, parent: Channel, body: JSON) -> tuple[str, int]:
        if parent.is_dm or parent.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        if len(name) > 100:
            raise too_long("name", 100)
        duration = body.get("auto_archive_duration") or 1440
        if duration not in ARCHIVE_DURATIONS:
            raise form_error("auto_archive_duration", "BASE_TYPE_CHOICES",
                             f"Value must be one of {ARCHIVE_DURATIONS}.")
        return name, duration

    def _start_thread(self: FakeDiscordServer, req: Request) -> JSON:
        parent = self._channel_for(req)
        body = req.json
        name, duration = self._thread_fields(parent, body)
        kind = body.get("type") or PRIVATE_THREAD
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (11, 12).")
        self._require(parent, CREATE_PUBLIC_THREADS if kind == PUBLIC_THREAD
                      else CREATE_PRIVATE_THREADS)
        thread = self._new_thread(parent, self._ids.next(), name, self.bot_id, kind, duration)
        return self._channel_json(thread)

    def _start_thread_from_message(self: FakeDiscordServer, req: Request) -> JSON:
        parent = self._channel_for(req)
        name, duration = self._thread_fields(parent, req.json)
        message = self._channel_message(parent, req.snowflake("message_id"))
        if message.thread_id is not None:
            raise ApiError(400, THREAD_ALREADY_CREATED,
                           "A thread has already been created for this message")
        self._require(parent, CREATE_PUBLIC_THREADS | READ_MESSAGE_HISTORY)
        thread = self._new_thread(parent, message.id, name, self.bot_id, PUBLIC_THREAD, duration)
        message.thread_id = thread.id
        return self._channel_json(thread)

    # ----------------------------------------------------------------- guilds

    def _guild_for(self: FakeDiscordServer, req: Request) -> Guild:
        guild = self.guilds.get(req.snowflake("guild_id"))
        if guild is None:
            raise not_found(UNKNOWN_GUILD, "Guild")
        return guild

    def _get_guild(self: FakeDiscordServer, req: Request) -> JSON:
        guild = self._guild_for(req)
        return {**self._guild_json(guild), "approximate_member_count": len(guild.members)}

    def _get_member(self: FakeDiscordServer, req: Request) -> JSON:
        guild = self._guild_for(req)
        member = guild.members.get(req.snowflake("user_id"))
        if member is None:
            raise not_found(UNKNOWN_MEMBER, "Member")
        return self._member_json(guild, member)

    def _get_roles(self: FakeDiscordServer, req: Request) -> list[JSON]:
        return [self._role_json(role) for role in self._guild_for(req).roles.values()]

    # ----------------------------------------------------------------- application commands

    def _check_application(self: FakeDiscordServer, req: Request) -> None:
        if req.snowflake("application_id") != self.application_id:
            raise forbidden(MISSING_ACCESS, "Missing Access")

    def _put_global_commands(self: FakeDiscordServer, req: Request) -> list[JSON]:
        self._check_application(req)
        commands = self._validate_commands(req.call.body)
        self._global_commands = self._sync_commands(self._global_commands, commands, None)
        self._notify()
        return list(self._global_commands.values())

    def _get_global_commands(self: FakeDiscordServer, req: Request) -> list[JSON]:
        self._check_application(req)
        return list(self._global_commands.values())

    def _put_guild_commands(self: FakeDiscordServer, req: Request) -> list[JSON]:
        self._check_application(req)
        guild = self._guild_for(req)
        commands = self._validate_commands(req.call.body)
        synced = self._sync_commands(self._guild_commands.get(guild.id, {}), commands, guild.id)
        self._guild_commands[guild.id] = synced
        self._notify()
        return list(synced.values())

    def _get_guild_commands(self: FakeDiscordServer, req: Request) -> list[JSON]:
        self._check_application(req)
        return list(self._guild_commands.get(self._guild_for(req).id, {}).values())

    @staticmethod
    def _validate_commands(body: Any) -> list[JSON]:
        if not isinstance(body, list):
            raise form_error("", "BASE_TYPE_ARRAY", "Could not interpret value as array.")
        if len(body) > 100:
            raise too_long("", 100)
        seen: set[tuple[int, str]] = set()
        for i, command in enumerate(body):
            if not isinstance(command, dict):
                raise form_error(str(i), "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
            kind = command.get("type") or 1
            _check_name_and_description(command, str(i), chat_input=kind == 1)
            options = command.get("options") or []
            if len(options) > 25:
                raise too_long(f"{i}.options", 25)
            optional = False
            for o, option in enumerate(options):
                _check_name_and_description(option, f"{i}.options.{o}", chat_input=True)
                if option.get("required") and optional:
                    raise form_error(f"{i}.options", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                     "Required options must be placed before non-required options")
                optional = optional or not option.get("required")
            if (kind, command["name"]) in seen:
                raise form_error("", "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                 "Application command names must be unique")
            seen.add((kind, command["name"]))
        return body

    def _sync_commands(self: FakeDiscordServer, old: dict[str, JSON], commands: list[JSON],
                       guild_id: int | None) -> dict[str, JSON]:
        synced: dict[str, JSON] = {}
        for command in commands:
            prior = old.get(command["name"])
            body: JSON = {
                "id": prior["id"] if prior else str(self._ids.next()),
                "application_id": str(self.application_id),
                "type": command.get("type") or 1,
                "name": command["name"],
                "name_localizations": command.get("name_localizations"),
                "description": command.get("description", ""),
                "description_localizations": command.get("description_localizations"),
                "options": command.get("options") or [],
                "default_member_permissions": command.get("default_member_permissions"),
                "nsfw": bool(command.get("nsfw", False)),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
            }
            if guild_id is not None:
                body["guild_id"] = str(guild_id)
            else:
                body["dm_permission"] = command.get("dm_permission", True)
            same = prior is not None and all(prior.get(k) == v for k, v in body.items()
                                              if k not in ("id", "version"))
            body["version"] = prior["version"] if same and prior else str(self._ids.next())
            synced[command["name"]] = body
        return synced

    # ----------------------------------------------------------------- interactions

    def _interaction_for(self: FakeDiscordServer, req: Request) -> InteractionRecord:
        record = self.interactions.get(parse_snowflake(req.call.params["interaction_id"]) or 0)
        if record is None or record.token != req.call.params["interaction_token"]:
            raise not_found(UNKNOWN_INTERACTION, "interaction")
        return record

    def _interaction_metadata(self: FakeDiscordServer, record: InteractionRecord) -> JSON:
        owners = {"0": str(record.guild_id)} if record.guild_id else {"0": "0"}
        body: JSON = {"id": str(record.id), "type": record.type,
                      "user": self._user_json(record.user_id),
                      "authorizing_integration_owners": owners}
        if record.type == COMPONENT_INTERACTION:
            body["interacted_message_id"] = str(record.message_id)
        else:
            body["name"] = record.data.get("name")
            body["command_type"] = record.data.get("type", 1)
        return body

    def _callback(self: FakeDiscordServer, req: Request) -> Any:
        record = self._interaction_for(req)
        body = req.json
        entry: JSON = {"body": body, "accepted": False, "at": self.clock()}
        record.callbacks.append(entry)
        self._notify()
        if record.acknowledged:
            raise ApiError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        if self.clock() - record.created_at > self.interaction_timeout:
            raise not_found(UNKNOWN_INTERACTION, "interaction")
        kind = body.get("type")
        allowed = {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}
        if record.type == COMPONENT_INTERACTION:
            allowed |= {DEFERRED_UPDATE, UPDATE_MESSAGE}
        if kind not in allowed:
            raise form_error("type", "BASE_TYPE_CHOICES",
                             f"Value must be one of {sorted(allowed)}.")
        data = body.get("data") or {}
        channel = self.channels[record.channel_id]
        message: StoredMessage | None = None
        message_type = (DEFAULT_MESSAGE if record.type == COMPONENT_INTERACTION
                        else CHAT_INPUT_COMMAND_MESSAGE)
        if kind == CHANNEL_MESSAGE:
            fields = self._compose(data, req.files, channel, RESPONSE_FLAGS)
            self._check_not_empty(fields, data)
            message = self._create(channel, fields, type=message_type, webhook=True,
                                   interaction_metadata=self._interaction_metadata(record))
            record.original_id = message.id
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            message = self._create(channel, {"flags": flags}, type=message_type, webhook=True,
                                   interaction_metadata=self._interaction_metadata(record))
            record.original_id = message.id
        elif kind == UPDATE_MESSAGE:
            message = self._messages[record.message_id or 0]
            self._apply_edit(message, data, req.files, channel)
        elif kind == MODAL and not (data.get("custom_id") and data.get("title")
                                    and data.get("components")):
            raise form_error("data", "BASE_TYPE_REQUIRED", "custom_id, title and components")
        record.response_type = kind
        entry["accepted"] = True
        self._notify()
        if not req.flag("with_response"):
            return NO_CONTENT
        resource: JSON = {"type": kind}
        interaction: JSON = {
            "id": str(record.id), "type": record.type,
            "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }
        if message is not None:
            interaction["response_message_id"] = str(message.id)
            if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
                resource["message"] = self._message_json(message)
        return {"interaction": interaction, "resource": resource}

    def _webhook_interaction(self: FakeDiscordServer, req: Request) -> InteractionRecord:
        params = req.call.params
        record = next((i for i in self.interactions.values()
                       if i.token == params["interaction_token"]), None)
        if (params["application_id"] != str(self.application_id) or record is None
                or self.clock() - record.created_at > FOLLOWUP_WINDOW):
            raise not_found(UNKNOWN_WEBHOOK, "Webhook")
        return record

    def _response_message(self: FakeDiscordServer,
                          req: Request) -> tuple[InteractionRecord, StoredMessage]:
        record = self._webhook_interaction(req)
        wanted = req.call.params["message_id"]
        if wanted == "@original":
            message_id = record.original_id
            if message_id is None and record.response_type in (DEFERRED_UPDATE, UPDATE_MESSAGE):
                message_id = record.message_id
        else:
            message_id = parse_snowflake(wanted)
            if message_id not in (*record.followup_ids, record.original_id):
                message_id = None
        message = self._messages.get(message_id or 0)
        if message is None or message.deleted:
            raise not_found(UNKNOWN_MESSAGE, "Message")
        return record, message

    def _followup(self: FakeDiscordServer, req: Request) -> JSON:
        record = self._webhook_interaction(req)
        if not record.acknowledged:
            raise not_found(UNKNOWN_WEBHOOK, "Webhook")
        channel = self.channels[record.channel_id]
        fields = self._compose(req.json, req.files, channel, RESPONSE_FLAGS)
        self._check_not_empty(fields, req.json)
        message = self._create(channel, fields, webhook=True,
                               interaction_metadata=self._interaction_metadata(record))
        record.followup_ids.append(message.id)
        return self._message_json(message)

    def _get_response(self: FakeDiscordServer, req: Request) -> JSON:
        return self._message_json(self._response_message(req)[1])

    def _edit_response(self: FakeDiscordServer, req: Request) -> JSON:
        _, message = self._response_message(req)
        self._apply_edit(message, req.json, req.files, self.channels[message.channel_id],
                         loading_done=True)
        return self._message_json(message)

    def _delete_response(self: FakeDiscordServer, req: Request) -> Any:
        _, message = self._response_message(req)
        self._delete_message(message)
        return NO_CONTENT


def _check_name_and_description(item: JSON, where: str, *, chat_input: bool) -> None:
    name = item.get("name")
    if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name) or (
            chat_input and name != name.lower()):
        raise form_error(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME",
                         "Command name is invalid")
    description = item.get("description") or ""
    if chat_input and not 1 <= len(description) <= 100:
        raise form_error(f"{where}.description", "BASE_TYPE_BAD_LENGTH",
                         "Must be between 1 and 100 in length.")
    if not chat_input and description:
        raise form_error(f"{where}.description", "APPLICATION_COMMAND_INVALID_DESCRIPTION",
                         "Description must be empty for this command type")
