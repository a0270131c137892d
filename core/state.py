"""The state store: one SQLite database in WAL mode, shared by plugins that own their tables.

Writes happen at turn boundaries and checkpoints, never per text delta. WAL with
``synchronous=NORMAL`` keeps the database consistent when the process is killed at any instant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("cadenza.state")

DB_NAME = "state.db"


class StateError(Exception):
    """The state directory or database cannot be used."""


def private_dir(path: Path) -> None:
    """Create ``path`` as a directory only its owner can enter, or check that it is one: it
    holds the journal (prompts, and turns that run at the next start) and the lock."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if info.st_uid != os.getuid():
            raise StateError(f"the state directory {path} belongs to uid {info.st_uid}, not to "
                             f"this user (uid {os.getuid()}); use a directory of your own")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
            log.warning("made the state directory %s private (mode 0700)", path)
    except OSError as exc:
        raise StateError(f"cannot use the state directory {path}: {exc}") from None


def private_file(path: Path) -> None:
    """Create ``path`` readable and writable by its owner only (or tighten it), refusing to
    follow a symbolic link planted in its place."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot use {path}: {exc}") from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Store:
    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.reset_note: str | None = None  # set when a damaged database was set aside
        self.db = self._open(readonly)

    @classmethod
    def in_dir(cls, state_dir: Path, *, readonly: bool = False) -> Store:
        if not readonly:
            private_dir(state_dir)
            private_file(state_dir / DB_NAME)  # SQLite gives its -wal and -shm the same mode
        return cls(state_dir / DB_NAME, readonly=readonly)

    def _open(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            if not self.path.exists():
                return sqlite3.connect(":memory:", isolation_level=None)
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            db.execute("PRAGMA query_only=ON")
            return db
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # A damaged file must not keep the bot down forever: keep it for inspection
            # and start afresh, and say so (the journal puts this note in the chat notice).
            kept = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(Path(f"{kept}{suffix}"))
            self.reset_note = f"the state database was unreadable ({exc}); kept it as {kept.name}"
            log.error("%s and started a fresh one", self.reset_note)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StateError(f"cannot open {self.path}: {exc}") from None
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        # Checkpoints copy the WAL into the database and fsync: slow on a busy disk, so they
        # run from a thread (``checkpoint``), never on the event loop inside a hook.
        db.execute("PRAGMA wal_autocheckpoint=0")
        row = db.execute("PRAGMA quick_check").fetchone()
        if row[0] != "ok":
            db.close()
            raise sqlite3.DatabaseError(f"integrity check failed: {row[0]}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER)"
        )
        return db

    def migrate(self, owner: str, steps: Sequence[str]) -> None:
        """Bring ``owner``'s tables up to ``len(steps)``: step i is applied once, in order.

        Steps are append-only: released steps are never edited, new ones are added at the end.
        """
        row = self.db.execute(
            "SELECT version FROM schema_versions WHERE owner = ?", (owner,)
        ).fetchone()
        version = row[0] if row else 0
        for number, step in enumerate(steps[version:], version + 1):
            with self.transaction():
                for statement in step.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO schema_versions VALUES (?, ?) "
                    "ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
                    (owner, number),
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self.db.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, params)
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def has_table(self, name: str) -> bool:
        return bool(
            self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone()
        )

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Move the WAL's content into the database, from a connection of its own, so that it
        can run in a worker thread while the event loop goes on writing."""
        db = sqlite3.connect(self.path, timeout=5)
        try:
            db.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.OperationalError as exc:  # busy: the next round catches up
            log.debug("checkpoint skipped: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
