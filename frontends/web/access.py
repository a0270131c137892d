"""Who may see the page: one secret (a password, or a token shown once), kept only as a salted
hash; login sessions with a CSRF token each; failed logins limited per client address.

Time comes from the injectable clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass

from cadenza.api import Clock

SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class Secret:
    """The login secret, stored as a salted scrypt hash; compared in constant time."""

    def __init__(self, secret: str) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = self._digest(secret)

    def _digest(self, secret: str) -> bytes:
        return hashlib.scrypt(secret.encode(), salt=self._salt, **SCRYPT)

    def matches(self, attempt: str) -> bool:
        return hmac.compare_digest(self._hash, self._digest(attempt))


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Login:
    user: str
    csrf: str
    expires: float  # clock.time()


class Logins:
    """Open login sessions by cookie value (random, never derived from the secret)."""

    def __init__(self, clock: Clock, lifetime: float) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._open: dict[str, Login] = {}

    def open(self, user: str) -> tuple[str, Login]:
        cookie = secrets.token_urlsafe(32)
        login = Login(user, secrets.token_urlsafe(32), self.clock.time() + self.lifetime)
        self._open[cookie] = login
        return cookie, login

    def find(self, cookie: str | None) -> Login | None:
        login = self._open.get(cookie or "")
        if login is None:
            return None
        if login.expires <= self.clock.time():
            del self._open[cookie or ""]
            return None
        return login

    def close(self, cookie: str | None) -> None:
        self._open.pop(cookie or "", None)


def csrf_ok(login: Login, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(login.csrf, sent or "")


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window`` seconds from one address; one more
    waits until the oldest failure leaves the window (``retry_after``)."""

    def __init__(self, clock: Clock, attempts: int, window: float) -> None:
        self.clock = clock
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        now = self.clock.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.attempts:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, address: str) -> None:
        self._failures.setdefault(address, deque()).append(self.clock.monotonic())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
