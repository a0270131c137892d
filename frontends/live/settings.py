"""The settings every chat platform's table has: its bot token (``token_file`` or
``token_env``), its API base and its retry backoff.

The token is registered as a secret the moment it is read (so it is redacted from every log
line, doctor's output and stored failure texts) and its variable is withheld from agents.
Every error is located at plugins.toml's line for the key (or the table's header).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cadenza import api
from cadenza.api import ConfigError, Settings, withhold_from_agents


@dataclass(frozen=True)
class TokenKind:
    """What a platform's token looks like and where an operator gets one."""

    default_env: str  # e.g. TELEGRAM_BOT_TOKEN
    pattern: re.Pattern[str]
    shape: str  # e.g. "digits, a colon, a secret"
    source: str  # e.g. "@BotFather"


def read_token(
    settings: Settings, kind: TokenKind, environ: Mapping[str, str] | None = None
) -> tuple[str, str, str]:
    """(token_env, token_file, token): from ``token_file`` (relative to plugins.toml's folder)
    when that is set, else from the environment variable ``token_env``."""
    token_env = settings.string("token_env", kind.default_env)
    withhold_from_agents(token_env)
    token_file = settings.string("token_file", "")
    if token_file:
        if "token_env" in settings.values:
            raise settings.error("token_file", "set either token_file or token_env, not both")
        path = Path(token_file).expanduser()
        if not path.is_absolute():
            path = settings.config.path.resolve().parent / path
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise settings.error("token_file", f"cannot read the bot token from {path}: "
                                 f"{reason}") from None
        _secret(token)
        if not token:
            raise settings.error("token_file", f"{path} is empty; put the bot token from "
                                 f"{kind.source} in it")
        if not kind.pattern.fullmatch(token):
            raise settings.error("token_file", f"{path} does not hold a bot token (expected "
                                 f"{kind.shape})")
        return token_env, str(path), token
    env = os.environ if environ is None else environ
    token = env.get(token_env, "").strip()
    _secret(token)
    if not token:
        raise located(settings, "token_env", f"the environment variable {token_env} is not "
                      f"set; put the bot token from {kind.source} in it (or set token_file)")
    if not kind.pattern.fullmatch(token):
        raise located(settings, "token_env", f"the environment variable {token_env} does not "
                      f"hold a bot token (expected {kind.shape})")
    return token_env, "", token


def _secret(token: str) -> None:
    if token:
        api.register_secret(token)


def located(settings: Settings, key: str, message: str) -> ConfigError:
    """A located error; for a key left out, located at the table's header."""
    error = settings.error(key, message)
    if error.line is None:
        error = ConfigError(error.message, path=error.path,
                            line=settings.config.line_of(settings.table))
    return error


def api_base(settings: Settings, default: str) -> str:
    """``api_base``: the platform's API, or a proxy or self-hosted server (and the tests')."""
    base = settings.string("api_base", default).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise settings.error("api_base", f"must be an http:// or https:// URL, not {base!r}")
    return base


def backoff_range(settings: Settings) -> tuple[float, float]:
    """``backoff_min`` and ``backoff_max``: the first and the longest delay between retries
    after a network error, a 5xx or an unreachable API."""
    backoff_min = settings.number("backoff_min", 1.0, minimum=0.001)
    backoff_max = settings.number("backoff_max", 30.0, minimum=0.001)
    if backoff_max <= backoff_min:
        raise settings.error("backoff_max", f"must be more than backoff_min "
                             f"({backoff_min:g}), not {backoff_max:g}")
    return backoff_min, backoff_max
