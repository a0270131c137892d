"""The ``[telegram]`` table of plugins.toml, read once and checked where it is written.

Every mistake is a located ``ConfigError`` (exit code 2): a wrong type, an unknown key, a
missing or malformed token, an empty allowlist without the explicit opt-out. Reading the
settings touches no network, so ``cadenza plugins list`` and ``cadenza doctor`` can build
the plugin safely. The token itself is kept out of ``repr`` and never appears in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cadenza.api import ChatRef, Settings
from cadenza.frontends.live import settings as platform
from cadenza.frontends.live.settings import TokenKind, located, read_token

FRONTEND = "telegram"
_TOKEN = re.compile(r"\d+:\S+")  # what aiogram accepts
TOKEN = TokenKind("TELEGRAM_BOT_TOKEN", _TOKEN, "digits, a colon, a secret", "@BotFather")

KEYS = (
    "token_env", "token_file", "allowed_users", "allow_all_users", "api_base", "lifecycle_chats",
    "edit_interval", "group_messages_per_minute", "messages_per_second", "request_timeout",
    "poll_timeout", "backoff_min", "backoff_max", "flush_timeout", "notify_after", "merge_pastes",
)


@dataclass(frozen=True)
class Allowlist:
    """Who may use the bot: ``allowed_users``, or anyone with ``allow_all_users``."""

    users: frozenset[str]
    anyone: bool = False

    def allows(self, user_id: str) -> bool:
        return self.anyone or user_id in self.users

    @classmethod
    def read(cls, settings: Settings) -> Allowlist:
        allowed = settings.ids("allowed_users")
        for user in sorted(allowed):
            if not re.fullmatch(r"\d+", user):
                raise located(settings, "allowed_users", f"{user!r} is not a numeric user id "
                             "(usernames can change; @userinfobot tells you your id)")
        anyone = settings.get("allow_all_users", False, bool)
        if not allowed and not anyone:
            raise located(settings, "allowed_users", "is empty, so nobody could use the bot: list "
                         "the numeric Telegram user ids allowed to use it, or set "
                         "allow_all_users = true to let anyone in")
        return cls(frozenset(allowed), anyone)


@dataclass(frozen=True)
class TelegramSettings:
    token_env: str
    allowed_users: frozenset[str]
    allow_all_users: bool
    api_base: str
    lifecycle_chats: tuple[ChatRef, ...]
    edit_interval: float  # seconds between two sends/edits in one chat (Telegram: about 1)
    group_messages_per_minute: float  # in one group (Telegram: 20)
    messages_per_second: float  # all chats together (Telegram: 30; the rest is headroom)
    request_timeout: float  # a request that hangs longer is abandoned and retried
    poll_timeout: int  # how long one getUpdates long poll waits for updates
    backoff_min: float  # first delay after a network error, 5xx or unreachable API
    backoff_max: float  # longest delay between two such retries
    flush_timeout: float  # at shutdown, how long final texts may still take to go out
    notify_after: float = 30.0  # a turn that ran longer gets a new message at its end; 0: off
    merge_pastes: bool = True  # a long paste split by the client is one prompt
    token: str = field(default="", repr=False)
    token_file: str = ""  # where the token was read from, when not from $token_env

    @classmethod
    def read(cls, settings: Settings, environ: dict[str, str] | None = None) -> TelegramSettings:
        settings.reject_unknown(KEYS)
        token_env, token_file, token = read_token(settings, TOKEN, environ)
        allowlist = Allowlist.read(settings)
        api_base = platform.api_base(settings, "https://api.telegram.org")
        backoff_min, backoff_max = platform.backoff_range(settings)
        return cls(
            token_env=token_env,
            allowed_users=allowlist.users,
            allow_all_users=allowlist.anyone,
            api_base=api_base,
            lifecycle_chats=_chats(settings),
            edit_interval=settings.number("edit_interval", 1.0, minimum=0.01),
            group_messages_per_minute=settings.number("group_messages_per_minute", 20,
                                                      minimum=1),
            messages_per_second=settings.number("messages_per_second", 28, minimum=1),
            request_timeout=settings.number("request_timeout", 20.0, minimum=0.1),
            poll_timeout=int(settings.number("poll_timeout", 25, minimum=0)),
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            flush_timeout=settings.number("flush_timeout", 8.0, minimum=0),
            notify_after=settings.number("notify_after", 30.0, minimum=0),
            merge_pastes=settings.get("merge_pastes", True, bool),
            token=token,
            token_file=token_file,
        )

    @property
    def allowlist(self) -> Allowlist:
        return Allowlist(self.allowed_users, self.allow_all_users)

    @property
    def token_source(self) -> str:
        """Where the token came from, for messages: the file or the variable."""
        return self.token_file or f"${self.token_env}"

    def allows(self, user_id: str) -> bool:
        return self.allowlist.allows(user_id)

    def doctor_lines(self) -> list[tuple[bool, str]]:
        """What ``cadenza doctor`` can say without the network."""
        who = ("anyone (allow_all_users = true): everyone who finds the bot can run the agent"
               if self.allow_all_users
               else f"{len(self.allowed_users)} allowed user(s): "
               + ", ".join(sorted(self.allowed_users)))
        return [
            (True, f"telegram: bot token found in {self.token_source}"),
            (True, f"telegram: {who}"),
        ]


def _chats(settings: Settings) -> tuple[ChatRef, ...]:
    """``lifecycle_chats``: numeric chat ids, or ``"-1001234/7"`` for a forum topic."""
    chats = []
    for item in sorted(settings.ids("lifecycle_chats")):
        chat_id, _, thread = item.partition("/")
        if not re.fullmatch(r"-?\d+", chat_id.strip()) or not re.fullmatch(r"\d*", thread):
            raise settings.error("lifecycle_chats", f"{item!r} is not a chat id (a number, or "
                                 "\"CHAT/TOPIC\" for a forum topic)")
        chats.append(ChatRef(FRONTEND, chat_id.strip(), thread or None))
    return tuple(chats)
