"""One Cadenza at a time: per state directory on SQLite (a flock), per process name on
PostgreSQL (an advisory lock). Either is released when the process dies, so a crash can never
leave it stuck: the kernel drops the flock, the server ends the session and its locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from cadenza.state import StateError, private_dir
from cadenza.state_postgres import StateUnreachable, connect, engine_for, lock_key, shown
from sqlalchemy import text

LOCK_NAME = "cadenza.lock"
_TAKE = text("SELECT pg_try_advisory_lock(:key)")
_ALIVE = text("SELECT 1")
# who holds it: the lock's session, named by its application_name
_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.classid::bigint = :high AND l.objid::bigint = :low")


@contextlib.contextmanager
def instance_lock(state_dir: Path) -> Iterator[None]:
    """One Cadenza per state directory (SQLite)."""
    path = state_dir / LOCK_NAME
    private_dir(state_dir)
    try:
        # never through a symbolic link planted in its place, and private like the database
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "r+")
    except OSError as exc:
        raise StateError(f"cannot use the lock file {path}: {exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StateError(
                f"another Cadenza (pid {holder}) is already running on {state_dir}; "
                "stop it first or use another --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


class AdvisoryLock:
    """One Cadenza per ``[state] name`` on a PostgreSQL store: a session-level advisory lock,
    held by a connection of its own for as long as the process runs."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        me = f"cadenza {name} (pid {os.getpid()} on {socket.gethostname()})"
        self._engine = engine_for(url, application_name=me[:63])
        self._connection: sqlalchemy.Connection | None = None
        self._take()

    def _take(self) -> None:
        """Take the lock on a new session: ``StateError`` naming the holder if it is taken,
        ``StateUnreachable`` if the server does not answer."""
        self._connection = connection = connect(self._engine, self.url)
        key = lock_key(self.name)
        try:
            taken = connection.execute(_TAKE, {"key": key}).scalar()
            holder = None if taken else connection.execute(_HOLDER, {
                "high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalar()
        except BaseException:
            self._close()
            raise
        if not taken:
            self._close()
            raise StateError(
                f"another Cadenza named {self.name!r} ({holder or 'another process'}) is "
                f"already running on the state store {shown(self.url)}; stop it first or "
                "give this one another [state] name")

    def check(self) -> bool | None:
        """Whether this process still holds the lock. A session the server lost (a restart,
        a failover) took the lock with it: it is taken again on a new one. ``False``: another
        process of this name holds it now, this one must stop; ``None``: the server does not
        answer (nor can anyone else take the lock there)."""
        if self._connection is not None:
            try:
                self._connection.execute(_ALIVE)
                return True
            except sqlalchemy.exc.SQLAlchemyError:
                self._close()
        try:
            self._take()
        except StateUnreachable:
            return None
        except StateError:
            return False
        return True

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                self._connection.close()  # the session ends: the lock is released
            self._connection = None

    def release(self) -> None:
        self._close()
        self._engine.dispose()

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
