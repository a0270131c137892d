"""Discord's rate limits (per-route buckets and the global limit) and scripted faults."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .model import JSON, ApiError

# Route keys, spelled like discord.py's Route templates (method, space, path).
GET_ME = "GET /users/@me"
GET_USER = "GET /users/{user_id}"
OPEN_DM = "POST /users/@me/channels"
GATEWAY = "GET /gateway"
GATEWAY_BOT = "GET /gateway/bot"
APPLICATION = "GET /applications/@me"
OAUTH_APPLICATION = "GET /oauth2/applications/@me"
GET_CHANNEL = "GET /channels/{channel_id}"
SEND = "POST /channels/{channel_id}/messages"
HISTORY = "GET /channels/{channel_id}/messages"
GET_MESSAGE = "GET /channels/{channel_id}/messages/{message_id}"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
DELETE = "DELETE /channels/{channel_id}/messages/{message_id}"
TYPING = "POST /channels/{channel_id}/typing"
START_THREAD = "POST /channels/{channel_id}/threads"
START_THREAD_FROM_MESSAGE = "POST /channels/{channel_id}/messages/{message_id}/threads"
GET_GUILD = "GET /guilds/{guild_id}"
GET_MEMBER = "GET /guilds/{guild_id}/members/{user_id}"
GET_ROLES = "GET /guilds/{guild_id}/roles"
GLOBAL_COMMANDS = "PUT /applications/{application_id}/commands"
GET_GLOBAL_COMMANDS = "GET /applications/{application_id}/commands"
GUILD_COMMANDS = "PUT /applications/{application_id}/guilds/{guild_id}/commands"
GET_GUILD_COMMANDS = "GET /applications/{application_id}/guilds/{guild_id}/commands"
CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"
FOLLOWUP = "POST /webhooks/{application_id}/{interaction_token}"
GET_RESPONSE = "GET /webhooks/{application_id}/{interaction_token}/messages/{message_id}"
EDIT_RESPONSE = "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}"
DELETE_RESPONSE = "DELETE /webhooks/{application_id}/{interaction_token}/messages/{message_id}"


@dataclass(frozen=True)
class RouteLimit:
    """``limit`` requests per ``per`` seconds, in a window opened by the first of them."""

    limit: int
    per: float


@dataclass(frozen=True)
class RateLimits:
    """Discord's numbers as observed from its headers: message sends and edits 5 per 5 s per
    channel, deletes 5 per 1 s, typing 5 per 5 s, interaction followups 5 per 2 s; any other
    route 50 per 1 s; 50 requests per second globally, interaction callbacks and followups
    exempt from the global limit."""

    global_per_second: int = 50
    routes: Mapping[str, RouteLimit] = field(
        default_factory=lambda: {
            SEND: RouteLimit(5, 5.0),
            EDIT: RouteLimit(5, 5.0),
            DELETE: RouteLimit(5, 1.0),
            TYPING: RouteLimit(5, 5.0),
            FOLLOWUP: RouteLimit(5, 2.0),
            EDIT_RESPONSE: RouteLimit(5, 2.0),
        }
    )
    default: RouteLimit | None = RouteLimit(50, 1.0)

    def for_route(self, route: str) -> RouteLimit | None:
        return self.routes.get(route, self.default)


@dataclass
class _Window:
    limit: int
    per: float
    opened: float
    used: int = 0

    def expired(self, now: float) -> bool:
        return now >= self.opened + self.per

    def reset_after(self, now: float) -> float:
        """Rounded up to the millisecond, so a client sleeping that long is never early."""
        return math.ceil(max(self.opened + self.per - now, 0.0) * 1000) / 1000


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request: headers to send, or a 429."""

    headers: dict[str, str]
    retry_after: float | None = None
    is_global: bool = False


class RateLimiter:
    """Fixed windows per (route, major parameter) and one global window, like Discord's."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: _Window | None = None

    def check(self, route: str, major: str, *, global_limit: bool) -> Verdict:
        now = self.clock()
        if global_limit and self.limits.global_per_second:
            window = self._global
            if window is None or window.expired(now):
                window = self._global = _Window(self.limits.global_per_second, 1.0, now)
            if window.used >= window.limit:
                retry = window.reset_after(now)
                headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
                return Verdict(headers | _retry_headers(retry), retry, is_global=True)
            window.used += 1
        limit = self.limits.for_route(route)
        if limit is None:
            return Verdict({})
        key = (route, major)
        window = self._windows.get(key)
        if window is None or window.expired(now):
            window = self._windows[key] = _Window(limit.limit, limit.per, now)
        bucket = hashlib.sha1(route.encode()).hexdigest()[:16]
        if window.used >= window.limit:
            retry = window.reset_after(now)
            headers = _bucket_headers(window, bucket, now) | {"X-RateLimit-Scope": "user"}
            return Verdict(headers | _retry_headers(retry), retry)
        window.used += 1
        return Verdict(_bucket_headers(window, bucket, now))


def _bucket_headers(window: _Window, bucket: str, now: float) -> dict[str, str]:
    reset_after = window.reset_after(now)
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(max(window.limit - window.used, 0)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _retry_headers(retry_after: float) -> dict[str, str]:
    # discord.py treats a 429 without Via as a Cloudflare ban; Discord's API sends it.
    return {"Retry-After": str(max(1, math.ceil(retry_after))), "Via": "1.1 google"}


def rate_limited_body(retry_after: float, *, is_global: bool = False) -> JSON:
    return {
        "message": "You are being rate limited.",
        "retry_after": round(retry_after, 3),
        "global": is_global,
        "code": 0,
    }


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour for one call; build with the classmethods."""

    kind: Literal["error", "rate_limited", "drop", "hang"]
    status: int = 0
    code: int = 0
    message: str = ""
    retry_after: float = 0.0
    is_global: bool = False
    after_processing: bool = False

    @classmethod
    def error(cls, status: int, code: int = 0, message: str = "") -> Fault:
        return cls("error", status, code, message or f"{status}: scripted error")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """discord.py retries 500, 502, 504 and 524 itself (sleeping 1 s, 3 s, ...); 503 not."""
        return cls("error", status, 0, f"{status}: Internal Server Error")

    @classmethod
    def rate_limited(cls, retry_after: float = 0.05, *, is_global: bool = False) -> Fault:
        """A 429 as Discord sends it; discord.py sleeps ``retry_after`` and retries."""
        return cls("rate_limited", 429, 0, "", retry_after, is_global)

    @classmethod
    def drop(cls, *, after_processing: bool = False) -> Fault:
        """Close the connection unanswered; ``after_processing`` applies the call first."""
        return cls("drop", after_processing=after_processing)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer until ``release_hangs()`` (then answer normally) or the server goes down."""
        return cls("hang")

    def as_error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message)
