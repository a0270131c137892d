"""Discord's vocabulary for the fake: constants, errors, the in-memory records and the
validation of what a bot may send (content, components, allowed mentions, nonces)."""

from __future__ import annotations

import datetime
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a bot's uploads where no boost raised it
MAX_NONCE = 25

# --------------------------------------------------------------------------- gateway intents

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_TYPING = 1 << 11
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_TYPING = 1 << 14
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1

# --------------------------------------------------------------------------- permissions

ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
# What @everyone holds in a new guild, text-related part.
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
    | ADD_REACTIONS | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
)
# The bot's own role by default: a well-invited bot, able to ping @everyone (so tests notice
# a bot that forgets allowed_mentions).
BOT_PERMISSIONS = (
    EVERYONE_PERMISSIONS | MANAGE_MESSAGES | MANAGE_THREADS | MENTION_EVERYONE
)

# --------------------------------------------------------------------------- types and flags

TEXT_CHANNEL, DM_CHANNEL, PUBLIC_THREAD, PRIVATE_THREAD = 0, 1, 11, 12
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})
DEFAULT_MESSAGE, REPLY_MESSAGE, CHAT_INPUT_COMMAND_MESSAGE = 0, 19, 20
THREAD_STARTER_MESSAGE = 21
EPHEMERAL, LOADING, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2 = 1 << 6, 1 << 7, 1 << 12, 1 << 15
APPLICATION_COMMAND_INTERACTION, COMPONENT_INTERACTION = 2, 3
ACTION_ROW, BUTTON = 1, 2
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})
LINK_STYLE, PREMIUM_STYLE = 5, 6

# Interaction callback types.
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9

# --------------------------------------------------------------------------- JSON error codes

UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_ROLE = 10011
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
ENTITY_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
MISSING_ACCESS = 50001
CANNOT_ACT_ON_DM = 50003
CANNOT_EDIT_OTHERS = 50005
EMPTY_MESSAGE = 50006
CANNOT_DM_USER = 50007
MISSING_PERMISSIONS = 50013
INVALID_FORM_BODY = 50035
THREAD_ALREADY_CREATED = 160004


class ApiError(Exception):
    """An error answer in Discord's JSON shape: ``{"message", "code", "errors"?}``."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def not_found(code: int, what: str) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def forbidden(code: int = MISSING_PERMISSIONS, message: str = "Missing Permissions") -> ApiError:
    return ApiError(403, code, message)


def form_error(path: str, code: str, message: str) -> ApiError:
    """A 400 Invalid Form Body naming the offending field, e.g. ``components.0.components``
    ("" for the body itself)."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".") if path else []):
        errors = {part: errors}
    return ApiError(400, INVALID_FORM_BODY, "Invalid Form Body", errors)


def too_long(path: str, limit: int) -> ApiError:
    return form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def unauthorized() -> ApiError:
    return ApiError(401, 0, "401: Unauthorized")


# --------------------------------------------------------------------------- snowflakes


class Snowflakes:
    """Increasing ids whose timestamps are now, as Discord's are."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(self._last + 1, now)
        return self._last


def snowflake_time(snowflake: int) -> datetime.datetime:
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


def iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_snowflake(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# --------------------------------------------------------------------------- records


@dataclass
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    accepts_dms: bool = True


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    mentionable: bool = False


@dataclass
class Member:
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: datetime.datetime = field(default_factory=utcnow)


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined_at: datetime.datetime = field(default_factory=utcnow)


@dataclass
class Overwrite:
    """A channel permission overwrite: ``kind`` 0 for a role, 1 for a member."""

    id: int
    kind: int
    allow: int = 0
    deny: int = 0


@dataclass
class Channel:
    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    recipient_id: int | None = None  # DMs: the user the bot talks to
    position: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created_at: datetime.datetime = field(default_factory=utcnow)

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_dm(self) -> bool:
        return self.type == DM_CHANNEL


@dataclass(frozen=True)
class Upload:
    """A file in a multipart request: ``index`` is N of its ``files[N]`` field."""

    index: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None
    description: str | None = None
    url: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class Revision:
    """What a message showed after its creation or one edit."""

    content: str
    components: list[JSON]
    attachments: list[str]
    flags: int
    at: datetime.datetime


@dataclass
class Pings:
    """Who a message notified: Discord's mentions after allowed_mentions and permissions."""

    users: set[int] = field(default_factory=set)
    roles: set[int] = field(default_factory=set)
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.everyone)


@dataclass
class StoredMessage:
    """A message in a channel, the bot's or a user's; ``revisions`` keeps every version."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    from_bot: bool
    content: str = ""
    components: list[JSON] = field(default_factory=list)
    embeds: list[JSON] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = DEFAULT_MESSAGE
    pings: Pings = field(default_factory=Pings)
    reference_id: int | None = None
    nonce: str | int | None = None
    allowed_mentions: JSON | None = None
    tts: bool = False
    webhook_id: int | None = None
    interaction_metadata: JSON | None = None
    thread_id: int | None = None  # a thread started from this message
    edited_at: datetime.datetime | None = None
    deleted: bool = False
    revisions: list[Revision] = field(default_factory=list)
    fields: JSON = field(default_factory=dict)  # extra Message fields pushed as they are

    def __post_init__(self) -> None:
        if not self.revisions:
            self.snapshot()

    def snapshot(self) -> None:
        self.revisions.append(
            Revision(
                self.content,
                [dict(c) for c in self.components],
                [a.filename for a in self.attachments],
                self.flags,
                self.edited_at or self.created_at,
            )
        )

    @property
    def created_at(self) -> datetime.datetime:
        return snowflake_time(self.id)

    @property
    def history(self) -> list[str]:
        """The content as sent, then after each edit."""
        return [revision.content for revision in self.revisions]

    @property
    def buttons(self) -> list[JSON]:
        """Every button, row by row, flattened."""
        return [c for c in walk_components(self.components) if c.get("type") == BUTTON]

    @property
    def custom_ids(self) -> list[str]:
        return [str(c["custom_id"]) for c in walk_components(self.components) if "custom_id" in c]

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched and what the bot answered."""

    id: int
    token: str
    type: int
    user_id: int
    channel_id: int
    guild_id: int | None
    data: JSON
    created_at: float
    message_id: int | None = None  # the message a component sits on
    callbacks: list[JSON] = field(default_factory=list)  # every callback body, accepted or not
    response_type: int | None = None
    original_id: int | None = None  # the message the response created
    followup_ids: list[int] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def response(self) -> JSON | None:
        """The accepted callback body."""
        for body in self.callbacks:
            if body.get("accepted"):
                return body["body"]  # type: ignore[no-any-return]
        return None


# --------------------------------------------------------------------------- validation


def walk_components(components: list[JSON]) -> list[JSON]:
    found: list[JSON] = []
    for component in components:
        found.append(component)
        for key in ("components",):
            children = component.get(key)
            if isinstance(children, list):
                found.extend(walk_components(children))
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            found.append(accessory)
    return found


def check_content(content: Any, path: str = "content") -> str | None:
    if content is None:
        return None
    if not isinstance(content, str):
        raise form_error(path, "BASE_TYPE_STRING", "Could not interpret value as string.")
    if len(content) > MAX_CONTENT:
        raise too_long(path, MAX_CONTENT)
    return content


def check_nonce(nonce: Any) -> str | int | None:
    if nonce is None:
        return None
    if isinstance(nonce, bool) or not isinstance(nonce, str | int):
        raise form_error("nonce", "BASE_TYPE_STRING", "Could not interpret value as string.")
    if isinstance(nonce, str) and len(nonce) > MAX_NONCE:
        raise too_long("nonce", MAX_NONCE)
    return nonce


def check_components(components: Any, flags: int = 0) -> list[JSON]:
    """Discord's layout rules for action rows and buttons (components v1)."""
    if components is None:
        return []
    if not isinstance(components, list):
        raise form_error("components", "BASE_TYPE_ARRAY", "Could not interpret value as array.")
    if flags & IS_COMPONENTS_V2:
        return components
    if len(components) > 5:
        raise too_long("components", 5)
    seen: set[str] = set()
    for r, row in enumerate(components):
        where = f"components.{r}"
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            raise form_error(
                f"{where}.type", "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
            )
        children = row.get("components")
        if not isinstance(children, list) or not children:
            raise form_error(f"{where}.components", "BASE_TYPE_REQUIRED", "This field is required")
        selects = sum(1 for c in children if isinstance(c, dict) and c.get("type") in SELECT_TYPES)
        if len(children) > 5 or (selects and len(children) > 1):
            raise form_error(
                f"{where}.components",
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        for c, child in enumerate(children):
            _check_child(child, f"{where}.components.{c}", seen)
    return components


def _check_child(child: Any, where: str, seen: set[str]) -> None:
    if not isinstance(child, dict):
        raise form_error(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    kind = child.get("type")
    if kind != BUTTON and kind not in SELECT_TYPES:
        raise form_error(f"{where}.type", "UNION_TYPE_CHOICES", "Invalid component type")
    if kind == BUTTON:
        style = child.get("style")
        if style not in range(1, 7):
            raise form_error(f"{where}.style", "ENUM_TYPE_COERCE",
                             f'Value "{style}" is not a valid enum value.')
        label = child.get("label")
        if isinstance(label, str) and len(label) > 80:
            raise too_long(f"{where}.label", 80)
        if style == LINK_STYLE:
            if not child.get("url"):
                raise form_error(f"{where}.url", "BUTTON_URL_REQUIRED", "A URL is required")
            if "custom_id" in child:
                raise form_error(
                    f"{where}.custom_id", "BUTTON_CUSTOM_ID_INVALID", "A custom id may not be set"
                )
            return
        if style == PREMIUM_STYLE:
            return
    custom_id = child.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise form_error(f"{where}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
    if len(custom_id) > 100:
        raise too_long(f"{where}.custom_id", 100)
    if custom_id in seen:
        raise form_error(
            f"{where}.custom_id",
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        )
    seen.add(custom_id)


def check_allowed_mentions(allowed: Any) -> JSON | None:
    if allowed is None:
        return None
    if not isinstance(allowed, dict):
        raise form_error("allowed_mentions", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    parse = allowed.get("parse", [])
    if not isinstance(parse, list) or not set(parse) <= {"users", "roles", "everyone"}:
        raise form_error(
            "allowed_mentions.parse",
            "ENUM_TYPE_COERCE",
            "Value must be one of {'everyone', 'roles', 'users'}.",
        )
    for kind in ("users", "roles"):
        ids = allowed.get(kind, [])
        if not isinstance(ids, list):
            raise form_error(f"allowed_mentions.{kind}", "BASE_TYPE_ARRAY",
                             "Could not interpret value as array.")
        if len(ids) > 100:
            raise too_long(f"allowed_mentions.{kind}", 100)
        if ids and kind in parse:
            raise form_error(
                "allowed_mentions",
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
    return allowed


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def parse_mentions(content: str) -> tuple[list[int], list[int], bool]:
    """User ids, role ids (in order, once each) and whether @everyone/@here appear."""
    users = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
    roles = list(dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content)))
    return users, roles, "@everyone" in content or "@here" in content


def resolve_pings(
    content: str,
    allowed: JSON | None,
    *,
    known_users: set[int],
    known_roles: set[int],
    can_ping_everyone: bool,
    replied_author: int | None,
) -> Pings:
    """Who Discord notifies for a bot's message, after ``allowed_mentions``."""
    users, roles, everyone = parse_mentions(content)
    users = [u for u in users if u in known_users]
    roles = [r for r in roles if r in known_roles]
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        listed_users: set[int] = set()
        listed_roles: set[int] = set()
        replied = True
    else:
        parse = set(allowed.get("parse", []))
        listed_users = {int(u) for u in allowed.get("users", [])}
        listed_roles = {int(r) for r in allowed.get("roles", [])}
        replied = bool(allowed.get("replied_user", False))
    pings = Pings(
        users={u for u in users if "users" in parse or u in listed_users},
        roles={r for r in roles if "roles" in parse or r in listed_roles},
        everyone=everyone and "everyone" in parse and can_ping_everyone,
    )
    if replied and replied_author is not None:
        pings.users.add(replied_author)
    return pings


_counter = itertools.count(1)


def interaction_token() -> str:
    return f"aW50ZXJhY3Rpb246{next(_counter):06d}OmZha2UtZGlzY29yZC10b2tlbg"
