"""The state store: one database shared by plugins that own their tables, used through
SQLAlchemy Core so that the embedded SQLite default and PostgreSQL (``state_postgres``) serve
the same plugin code.

The default is one SQLite database in WAL mode. Writes happen at turn boundaries and
checkpoints, never per text delta. WAL with ``synchronous=NORMAL`` keeps the database
consistent when the process is killed at any instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.expression import ClauseElement

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


Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
Step = str | Callable[[sqlalchemy.Connection], None]

_metadata = MetaData()
schema_versions = Table(  # the store's own: how many migration steps each owner has applied
    "schema_versions", _metadata,
    Column("owner", Text, primary_key=True),
    Column("version", Integer),
)
_SCHEMA_VERSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER)")
_VERSION_OF = select(schema_versions.c.version).where(
    schema_versions.c.owner == bindparam("of_owner"))


class Store:
    """The state store a plugin gets as ``context.store``: SQLAlchemy Core statements against
    one database, the embedded SQLite file by default or PostgreSQL (``[state] url``), for the
    same code.

    A plugin owns its tables. It creates them with ``migrate`` when it is constructed, and
    describes them with a ``sqlalchemy.MetaData()`` and ``Table``s of its own module that match
    its migration DDL; statements are built with SQLAlchemy Core (``select``, ``insert``,
    ``update``, ``delete``), never as SQL strings, so that another dialect can run them::

        from sqlalchemy import Column, Float, MetaData, Table, Text, bindparam, select

        metadata = MetaData()
        spent = Table("budget_spent", metadata, Column("chat", Text, primary_key=True),
                      Column("usd", Float, nullable=False))
        MIGRATIONS = ["CREATE TABLE budget_spent (chat TEXT PRIMARY KEY, usd REAL NOT NULL)"]
        SPENT = select(spent.c.usd).where(spent.c.chat == bindparam("of_chat"))

        class Budget:
            def __init__(self, context):
                self.store = context.store
                self.store.migrate("budget", MIGRATIONS)
                self.add = self.store.upsert(  # usd added to what the chat has spent
                    spent, {}, key=["chat"], update=[],
                    update_with={"usd": lambda new: spent.c.usd + new.usd})

            @hookimpl
            async def on_stream_event(self, event):
                if event.terminal and event.cost_usd:
                    await self.store.execute(self.add, {"chat": event.turn.chat.key,
                                                        "usd": event.cost_usd})

            @hookimpl
            def report_status(self):  # runs in ``cadenza status``, where no loop runs
                return {"budget": self.store.fetch_sync(select(spent))}

    The API, version 1:

    ``dialect``
        ``"sqlite"`` or ``"postgresql"``.
    ``migrate(owner, steps)``
        Synchronous, called from a plugin's constructor. Brings ``owner``'s tables up to
        ``len(steps)``: step *i* runs once, in order, in a transaction with the version record.
        A ``str`` step is portable DDL (``CREATE TABLE``, ``CREATE INDEX``, ``ALTER TABLE …
        ADD COLUMN``), split on ``;``; a callable step gets the ``sqlalchemy.Connection`` (for
        data migrations; it must not commit). Steps are append-only: a released step is never
        edited, new ones go at the end. Write SQLite's type names: on PostgreSQL the store
        reads ``INTEGER`` as ``BIGINT`` (SQLite's integers have 64 bits), ``INTEGER PRIMARY
        KEY [AUTOINCREMENT]`` as a generated ``BIGINT`` key, ``REAL`` as ``DOUBLE
        PRECISION`` and ``BLOB`` as ``BYTEA`` (``state_postgres.postgres_ddl``); booleans are
        ``INTEGER`` 0/1 columns.
    ``await execute(statement, params=None) -> int``
        An ``insert``, ``update``, ``delete`` or ``text()`` statement; returns the number of rows
        it changed. ``params`` fills the statement's ``bindparam()``s: one mapping, or a list of
        mappings to run it once per mapping (executemany).
    ``await fetch(statement, params=None) -> list[dict]``, ``await fetch_one(…) -> dict | None``
        The rows of a ``select`` (or of an ``insert … returning``) as dicts keyed by column label.
    ``execute_sync(statement, params=None)``, ``fetch_sync(statement, params=None)``
        The same for code with no event loop to await on: synchronous hooks such as
        ``report_status`` and ``doctor_checks`` (which run in the ``cadenza`` command line
        process) and scripts. Inside a running bot, use the async methods.
    ``upsert(table, values, key, update, *, update_with=None) -> Executable``
        The dialect's ``INSERT … ON CONFLICT (key) DO UPDATE SET`` each column of ``update`` to
        the value being inserted, and each column of ``update_with`` to an expression over the
        stored row (``{"turns": table.c.turns + 1}``), or to a function of the row being
        inserted that returns one (``{"usd": lambda new: table.c.usd + new.usd}``); with
        neither, ``DO NOTHING``. ``values`` may be empty, and the row then comes from the
        ``params`` of ``execute``: build a statement that runs often once, when the plugin is
        constructed.
    ``async with transaction():``
        The statements awaited inside run in one transaction: committed at the end, rolled back
        if the block raises. While it is open, other tasks' statements wait for it to end;
        a transaction opened inside it joins it.

    Statements built the same way share one compiled form (SQLAlchemy's compiled cache), but
    building a statement costs more than running it: build statements at module level with
    ``bindparam()`` and pass the values in ``params``. In an ``update``, a ``bindparam`` must
    not be named like a column of the table (``where(t.c.id == bindparam("of_id"))``).
    """

    dialect: str = "sqlite"
    where: str  # what the store is, for messages: the file, or the URL without its password

    def __init__(self, path: Path, *, readonly: bool = False):
        self.where = str(path)
        self.path = path
        self.reset_note: str | None = None  # set when a damaged database was set aside
        self._raw = raw = self._open(readonly)
        # One connection for the life of the store, wrapped (not opened) by SQLAlchemy.
        self._engine = sqlalchemy.create_engine("sqlite://", creator=lambda: raw,
                                                poolclass=StaticPool)
        self._connection = self._engine.connect().execution_options(
            isolation_level="AUTOCOMMIT")  # transactions are ours: BEGIN IMMEDIATE … COMMIT
        self._init_common(sqlite_dialect.insert)

    def _init_common(self, insert: Callable[[Table], Any]) -> None:
        self._insert = insert
        self._tx_task: asyncio.Task[Any] | None = None  # the task whose transaction is open
        self._tx_waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._set_version = self.upsert(schema_versions, {}, key=["owner"], update=["version"])

    @classmethod
    def in_dir(cls, state_dir: Path, *, readonly: bool = False) -> Store:
        if not readonly:
            private_dir(state_dir)
            private_file(state_dir / DB_NAME)  # SQLite gives its -wal and -shm the same mode
        return cls(state_dir / DB_NAME, readonly=readonly)

    # --- the SQLite file --------------------------------------------------------------

    def _open(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            if not self.path.exists():
                return sqlite3.connect(":memory:", isolation_level=None)
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
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
            # isolation_level=None: the sqlite3 module never opens a transaction by itself
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
        db.execute(_SCHEMA_VERSIONS_DDL)
        return db

    # --- running statements -------------------------------------------------------------
    # SQLite runs every statement inline, on the event loop where the async methods are
    # awaited: a write at a turn boundary takes tens of µs, less than a hop to a worker thread
    # and back would cost, and one connection serialises them anyway. The PostgreSQL store
    # (``state_postgres``) overrides ``_await`` to run them on a worker thread instead, and
    # ``_begin``/``_end``/``_lock_schema``/``_ddl``; plugins do not change.

    def _run(self, statement: sqlalchemy.Executable, params: Params = None) -> Any:
        """The one place a statement meets the database."""
        return self._connection.execute(statement, params)  # type: ignore[arg-type]

    @staticmethod
    def _rows(result: Any) -> list[dict[str, Any]]:
        keys = list(result.keys())
        return [dict(zip(keys, row, strict=True)) for row in result]

    async def _wait_turn(self) -> None:
        """Wait while another task's transaction is open: its statements and ours must not
        end up in one transaction."""
        while self._tx_task is not None and self._tx_task is not asyncio.current_task():
            waiter = asyncio.get_running_loop().create_future()
            self._tx_waiters.append(waiter)
            await waiter

    async def _await(self, work: Callable[..., Any], *args: Any) -> Any:
        """Run ``work(*args)`` for an async method: inline for SQLite; a store whose driver
        waits on the network runs it off the event loop."""
        return work(*args)

    def _first(self, statement: sqlalchemy.Executable,
               params: Params = None) -> dict[str, Any] | None:
        result = self._run(statement, params)
        keys = list(result.keys())
        row = result.first()
        return None if row is None else dict(zip(keys, row, strict=True))

    async def execute(self, statement: sqlalchemy.Executable, params: Params = None) -> int:
        if self._tx_task is not None:
            await self._wait_turn()
        return int(await self._await(self.execute_sync, statement, params))

    async def fetch(self, statement: sqlalchemy.Executable,
                    params: Params = None) -> list[dict[str, Any]]:
        if self._tx_task is not None:
            await self._wait_turn()
        rows: list[dict[str, Any]] = await self._await(self.fetch_sync, statement, params)
        return rows

    async def fetch_one(self, statement: sqlalchemy.Executable,
                        params: Params = None) -> dict[str, Any] | None:
        if self._tx_task is not None:
            await self._wait_turn()
        row: dict[str, Any] | None = await self._await(self._first, statement, params)
        return row

    def execute_sync(self, statement: sqlalchemy.Executable, params: Params = None) -> int:
        return int(self._run(statement, params).rowcount)

    def fetch_sync(self, statement: sqlalchemy.Executable,
                   params: Params = None) -> list[dict[str, Any]]:
        return self._rows(self._run(statement, params))

    def upsert(self, table: Table, values: Mapping[str, Any], key: Sequence[str],
               update: Sequence[str], *,
               update_with: Mapping[str, Any] | None = None) -> sqlalchemy.Executable:
        statement = self._insert(table)
        if values:
            statement = statement.values(dict(values))
        changes: dict[str, Any] = {name: statement.excluded[name] for name in update}
        for name, value in (update_with or {}).items():
            if callable(value) and not isinstance(value, ClauseElement):
                value = value(statement.excluded)
            changes[name] = value
        if not changes:
            return statement.on_conflict_do_nothing(index_elements=list(key))
        return statement.on_conflict_do_update(index_elements=list(key), set_=changes)

    # --- transactions -------------------------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._tx_task is task:
            yield  # a transaction inside a transaction joins it
            return
        await self._wait_turn()
        self._tx_task = task
        try:
            await self._await(self._begin)
            try:
                yield
            except BaseException:
                await self._await(self._end, "ROLLBACK")
                raise
            await self._await(self._end, "COMMIT")
        finally:
            self._tx_task = None
            waiters, self._tx_waiters = self._tx_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _begin(self) -> None:
        # IMMEDIATE takes the write lock at once: no deadlock upgrading a read lock later
        self._raw.execute("BEGIN IMMEDIATE")

    def _end(self, how: str) -> None:
        """``COMMIT`` or ``ROLLBACK`` the transaction ``_begin`` opened."""
        self._raw.execute(how)

    @contextmanager
    def _transaction_sync(self) -> Iterator[None]:
        self._begin()
        try:
            yield
        except BaseException:
            self._end("ROLLBACK")
            raise
        self._end("COMMIT")

    # --- schema -------------------------------------------------------------------------

    def migrate(self, owner: str, steps: Sequence[Step]) -> None:
        """Bring ``owner``'s tables up to ``len(steps)``: step i is applied once, in order.

        Steps are append-only: released steps are never edited, new ones are added at the end.
        """
        if self._version(owner) >= len(steps):
            return
        while True:
            with self._transaction_sync():
                self._lock_schema()
                version = self._version(owner)  # again: another process may have migrated
                if version >= len(steps):
                    return
                step = steps[version]
                if callable(step):
                    step(self._connection)
                else:
                    for statement in self._ddl(step).split(";"):
                        if statement.strip():
                            self._connection.exec_driver_sql(statement)
                self._run(self._set_version, {"owner": owner, "version": version + 1})

    def _version(self, owner: str) -> int:
        row = self._run(_VERSION_OF, {"of_owner": owner}).first()
        return int(row[0]) if row and row[0] is not None else 0

    def _lock_schema(self) -> None:
        """Keep other processes' migrations out until this step's transaction ends: SQLite's
        ``BEGIN IMMEDIATE`` already holds the database's write lock."""

    @staticmethod
    def _ddl(step: str) -> str:
        """A migration step in this database's dialect: SQLite runs it as written."""
        return step

    def has_table(self, name: str) -> bool:
        return bool(sqlalchemy.inspect(self._connection).has_table(name))

    # --- upkeep ---------------------------------------------------------------------------

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
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(sqlite3.Error):
            self._raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError, sqlite3.Error):
            self._connection.close()
        self._engine.dispose()
        self._raw.close()
