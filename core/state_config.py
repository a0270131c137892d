"""``[state]``: where the state store is, this process's name, and reaching the store at start.

``url`` empty (the default): the embedded SQLite file in the state directory. ``url =
"postgresql://user@host:5432/db"``: PostgreSQL (a URL without a password lets libpq take it
from ``PGPASSWORD`` or ``~/.pgpass``). ``name``: this process's name (default: the host name);
on PostgreSQL, two processes of one name cannot run at once. ``connect_wait``: how long, in
seconds, a store that cannot be reached at start is tried again, with backoff, before Cadenza
gives up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cadenza.clock import Clock
from cadenza.config import Config
from cadenza.state import DB_NAME, StateError, Store
from cadenza.state_postgres import PostgresStore, StateUnreachable, is_postgres_url

log = logging.getLogger("cadenza.state")

FIRST_DELAY = 0.5  # seconds before the second attempt; each delay doubles …
MAX_DELAY = 10.0  # … up to this
T = TypeVar("T")


@dataclass(frozen=True)
class StateSettings:
    url: str  # "" for the embedded SQLite file
    name: str
    connect_wait: float

    @classmethod
    def from_config(cls, config: Config) -> StateSettings:
        settings = config.settings("state")
        settings.reject_unknown(["url", "name", "connect_wait"])
        url = settings.string("url", "").strip()
        if url and not is_postgres_url(url):
            raise settings.error("url", "must be empty (the embedded SQLite file in the state "
                                 "directory) or a postgresql:// URL")
        name = settings.string("name", "").strip() or socket.gethostname()
        return cls(url, name, settings.number("connect_wait", 60.0, minimum=0))

    @property
    def postgres(self) -> bool:
        return bool(self.url)


def open_store(state: StateSettings, state_dir: Path, *, readonly: bool = False) -> Store:
    """The configured store: ``StateUnreachable`` when its server does not answer."""
    if state.postgres:
        return PostgresStore(state.url, readonly=readonly)
    if readonly:
        return Store(state_dir / DB_NAME, readonly=True)
    return Store.in_dir(state_dir)


def state_exists(state: StateSettings, state_dir: Path) -> bool:
    """Whether there is state to read: always for a server, the file for SQLite."""
    return state.postgres or (state_dir / DB_NAME).exists()


async def with_retries(attempt: Callable[[], T], clock: Clock, wait: float,
                       *, in_thread: bool = True) -> T:
    """``attempt()`` until it does not raise ``StateUnreachable``, sleeping on ``clock`` between
    attempts (``FIRST_DELAY``, doubling up to ``MAX_DELAY``) for at most ``wait`` seconds in
    all; then its last error. Each attempt runs in a worker thread (unless ``in_thread`` is
    false), so that a slow connect does not hold up the event loop."""
    slept, delay = 0.0, FIRST_DELAY
    while True:
        try:
            return await asyncio.to_thread(attempt) if in_thread else attempt()
        except StateUnreachable as exc:
            if slept >= wait:
                raise StateError(f"{exc} (gave up after {slept:g} s of retries)") from None
            pause = min(delay, wait - slept)
            log.warning("%s; trying again in %g s", exc, pause)
            await clock.sleep(pause)
            slept += pause
            delay = min(delay * 2, MAX_DELAY)
