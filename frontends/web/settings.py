"""``[web]`` of plugins.toml, checked at load: a page open beyond this machine needs a password."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from cadenza.api import Settings

FRONTEND = "web"


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"  # the interface served; another than loopback needs a password
    port: int = field(default=8780, metadata={"minimum": 0})  # 0: any free port (tests)
    password_env: str = ""  # environment variable holding the password; "": a one-time token
    user: str = "operator"  # the login name, and the page's own chat: web:<user>
    login_attempts: int = field(default=5, metadata={"minimum": 1})  # failures per window
    login_window: float = field(default=60.0, metadata={"minimum": 1})  # seconds
    session_hours: float = field(default=12.0, metadata={"minimum": 0.01})


@dataclass(frozen=True)
class WebConfig:
    """The settings as the server uses them: the password read from its variable."""

    settings: WebSettings
    password: str | None  # None: log in with the token printed at start

    @classmethod
    def read(cls, table: Settings) -> WebConfig:
        settings = table.load(WebSettings)
        password = None
        if settings.password_env:
            password = os.environ.get(settings.password_env) or None
            if password is None:
                raise table.error("password_env", f"${settings.password_env} is not set "
                                  "(or empty): set it, or remove password_env to log in "
                                  "with a token printed at start")
        if password is None and not loopback(settings.host):
            raise table.error("host", f"{settings.host!r} is reachable from other machines: "
                              "set password_env to a variable holding a password first")
        return cls(settings, password)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
