"""The store API v1 (SQLAlchemy Core over SQLite in WAL mode), and databases written by the
version before it: they open, keep their rows and migrate."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from backends import Backend
from cadenza.api import ChatRef, hookimpl
from cadenza.api import Store as ApiStore
from cadenza.app import App, plugin_health
from cadenza.config import Config
from cadenza.frontends.telegram.ledger import Ledger, LiveMessage
from cadenza.plugins import journal, sessions
from cadenza.state import DB_NAME, Store
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

metadata = MetaData()
notes = Table(
    "notes", metadata,
    Column("chat", Text, primary_key=True),
    Column("body", Text, nullable=False),
    Column("hits", Integer, nullable=False),
)
STEPS = ["CREATE TABLE notes (chat TEXT PRIMARY KEY, body TEXT NOT NULL, hits INTEGER NOT NULL)"]
NOTE_OF = select(notes).where(notes.c.chat == bindparam("of_chat"))


@pytest.fixture
def store(tmp_path: Path, state_backend: Backend):
    """A store on each backend, with the notes table."""
    store = state_backend.open(tmp_path / "state")
    store.migrate("notes", STEPS)
    yield store
    store.close()


def versions(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT owner, version FROM schema_versions").fetchall())
    finally:
        db.close()


# --- the API --------------------------------------------------------------------------


async def test_execute_fetch_and_fetch_one_round_trip(store: Store) -> None:
    assert ApiStore is Store and isinstance(store, Store)
    assert store.dialect in ("sqlite", "postgresql")
    assert await store.execute(insert(notes).values(chat="a", body="one", hits=1)) == 1
    assert await store.execute(insert(notes), [{"chat": "b", "body": "two", "hits": 2},
                                                {"chat": "c", "body": "three", "hits": 3}]) == 2
    assert await store.fetch(select(notes.c.chat, notes.c.hits).order_by(notes.c.chat)) == [
        {"chat": "a", "hits": 1}, {"chat": "b", "hits": 2}, {"chat": "c", "hits": 3}]
    assert await store.fetch_one(NOTE_OF, {"of_chat": "b"}) == {
        "chat": "b", "body": "two", "hits": 2}
    assert await store.fetch_one(NOTE_OF, {"of_chat": "z"}) is None
    changed = update(notes).where(notes.c.hits >= bindparam("least")).values(body="many")
    assert await store.execute(changed, {"least": 2}) == 2
    assert await store.execute(delete(notes).where(notes.c.chat == "a")) == 1
    count = select(func.count().label("n")).select_from(notes)
    assert await store.fetch(count) == [{"n": 2}]
    assert await store.fetch(text("SELECT body FROM notes WHERE chat = :c"), {"c": "c"}) == [
        {"body": "many"}]
    # the synchronous twins, for report_status, doctor and scripts
    assert store.execute_sync(update(notes).values(hits=0)) == 2
    assert store.fetch_sync(select(notes.c.hits)) == [{"hits": 0}, {"hits": 0}]


async def test_upsert_updates_named_columns_or_does_nothing(store: Store) -> None:
    put = store.upsert(notes, {}, key=["chat"], update=["body"],
                       update_with={"hits": notes.c.hits + 1})
    for body in ("first", "second", "third"):
        await store.execute(put, {"chat": "a", "body": body, "hits": 1})
    assert await store.fetch_one(NOTE_OF, {"of_chat": "a"}) == {
        "chat": "a", "body": "third", "hits": 3}
    add = store.upsert(notes, {}, key=["chat"], update=[],
                       update_with={"hits": lambda new: notes.c.hits + new.hits})
    await store.execute(add, [{"chat": "a", "body": "not kept", "hits": 10},
                              {"chat": "b", "body": "new", "hits": 10}])
    assert await store.fetch(select(notes.c.body, notes.c.hits).order_by(notes.c.chat)) == [
        {"body": "third", "hits": 13}, {"body": "new", "hits": 10}]
    await store.execute(delete(notes).where(notes.c.chat == "b"))
    keep = store.upsert(notes, {"chat": "a", "body": "ignored", "hits": 9}, key=["chat"],
                        update=[])
    assert await store.execute(keep) == 0
    assert (await store.fetch_one(NOTE_OF, {"of_chat": "a"}) or {})["body"] == "third"
    replace = store.upsert(notes, {"chat": "a", "body": "replaced", "hits": 7}, key=["chat"],
                           update=["body", "hits"])
    await store.execute(replace)
    assert await store.fetch_one(NOTE_OF, {"of_chat": "a"}) == {
        "chat": "a", "body": "replaced", "hits": 7}


async def test_a_transaction_commits_or_rolls_back_as_a_whole(store: Store) -> None:
    async with store.transaction():
        await store.execute(insert(notes).values(chat="a", body="kept", hits=1))
        async with store.transaction():  # joins the open one
            await store.execute(insert(notes).values(chat="b", body="kept", hits=1))
    with pytest.raises(IntegrityError):
        async with store.transaction():
            await store.execute(update(notes).values(body="lost"))
            await store.execute(insert(notes).values(chat="c", body="lost", hits=1))
            await store.execute(insert(notes).values(chat="a", body="duplicate", hits=1))
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await store.execute(delete(notes))
            raise RuntimeError("a bug in the block")
    rows = await store.fetch(select(notes.c.chat, notes.c.body).order_by(notes.c.chat))
    assert rows == [{"chat": "a", "body": "kept"}, {"chat": "b", "body": "kept"}]
    assert not store._connection.connection.dbapi_connection.in_transaction \
        if store.dialect == "sqlite" else store.fetch_sync(text(
            "SELECT now() = statement_timestamp() AS fresh")) == [{"fresh": True}]


async def test_other_tasks_wait_for_an_open_transaction(store: Store) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def rolled_back() -> None:
        with pytest.raises(RuntimeError):
            async with store.transaction():
                await store.execute(insert(notes).values(chat="a", body="lost", hits=1))
                inside.set()
                await release.wait()
                raise RuntimeError("rolled back")

    task = asyncio.ensure_future(rolled_back())
    await inside.wait()
    writer = asyncio.ensure_future(
        store.execute(insert(notes).values(chat="b", body="kept", hits=1)))
    await asyncio.sleep(0.01)
    assert not writer.done()  # it would have joined the transaction and been rolled back
    release.set()
    await task
    assert await writer == 1
    assert await store.fetch(select(notes.c.chat)) == [{"chat": "b"}]


def test_migrate_applies_each_step_once_in_its_transaction(tmp_path: Path,
                                                           state_backend: Backend) -> None:
    store = state_backend.open(tmp_path)
    calls = []

    def backfill(connection) -> None:
        calls.append(1)
        connection.execute(insert(notes).values(chat="seed", body="from a step", hits=0))

    steps = [*STEPS, "CREATE INDEX notes_hits ON notes (hits); ALTER TABLE notes ADD COLUMN "
             "extra TEXT", backfill]
    store.migrate("notes", steps)
    store.migrate("notes", steps)
    assert calls == [1]
    assert store.fetch_sync(select(notes.c.chat)) == [{"chat": "seed"}]

    def broken(connection) -> None:
        connection.execute(delete(notes))
        raise ValueError("a bad step")

    with pytest.raises(ValueError):
        store.migrate("notes", [*steps, "CREATE TABLE more (x INTEGER)", broken])
    assert store.has_table("more") and store.fetch_sync(select(notes.c.chat)) != []
    store.close()
    # the broken step left no trace
    assert state_backend.rows(tmp_path, "SELECT version FROM schema_versions WHERE owner = "
                              "'notes'") == [{"version": 4}]


def test_sqlite_file_private_wal_and_checkpointed_by_hand(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store.in_dir(state)
    store.migrate("notes", STEPS)
    store.execute_sync(insert(notes).values(chat="a", body="x", hits=1))
    pragma = {name: store._raw.execute(f"PRAGMA {name}").fetchone()[0]
              for name in ("journal_mode", "synchronous", "busy_timeout", "wal_autocheckpoint")}
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000,
                      "wal_autocheckpoint": 0}
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    store.checkpoint()  # from a connection of its own, as the worker thread does
    store.close()
    readonly = Store(state / DB_NAME, readonly=True)
    assert readonly.fetch_sync(select(notes.c.chat)) == [{"chat": "a"}]
    with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
        readonly.execute_sync(delete(notes))
    readonly.close()
    missing = Store(tmp_path / "nowhere.db", readonly=True)
    assert not missing.has_table("notes")
    missing.close()


def test_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    store = Store.in_dir(tmp_path)
    assert store.reset_note and "kept it as state.db.damaged-" in store.reset_note
    store.migrate("notes", STEPS)
    assert store.fetch_sync(select(notes)) == []
    store.close()
    assert [path.name for path in tmp_path.glob("state.db.damaged-*")]


# --- a database written by the previous version ----------------------------------------

OLD_LAYOUT = [
    "CREATE TABLE schema_versions (owner TEXT PRIMARY KEY, version INTEGER)",
    "CREATE TABLE plugin_health (name TEXT PRIMARY KEY, problem TEXT, at REAL)",
    journal.MIGRATIONS[0],  # the journal at its first step: no user_id yet
    sessions.MIGRATIONS[0],
    "CREATE TABLE telegram_buttons (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
    "PRIMARY KEY (chat_id, message_id))",
    "CREATE TABLE telegram_live (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
    "turn_id TEXT NOT NULL, html TEXT NOT NULL, plain TEXT NOT NULL, "
    "PRIMARY KEY (chat_id, message_id))",
]


def write_old_database(path: Path, boot_id: str) -> None:
    """What the raw-SQL store left: the same file, pragmas and tables, written by hand."""
    now = time.time()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for step in OLD_LAYOUT:
            db.executescript(step)
        db.executemany("INSERT INTO schema_versions VALUES (?, ?)",
                       [("core", 1), ("journal", 1), ("sessions", 1), ("telegram", 2)])
        db.execute("INSERT INTO plugin_health VALUES ('timeout', 'raised once', ?)", (now,))
        db.execute("INSERT INTO journal_runs (boot_id, pid, started_at, heartbeat_at, "
                   "lifecycle) VALUES (?, 1, ?, ?, 'started')", (boot_id, now - 600, now - 60))
        db.execute("INSERT INTO journal_turns (id, chat, session, prompt, agent, "
                   "agent_session_id, attempt, state, created_at, started_at, run_id) VALUES "
                   "('old1', 'old:1', '', 'finish the report', 'command', NULL, 1, "
                   "'running', ?, ?, 1)", (now - 120, now - 119))
        db.execute("INSERT INTO journal_turns (id, chat, session, prompt, agent, attempt, "
                   "state, created_at, ended_at, outcome, cost_usd, run_id) VALUES ('old0', "
                   "'old:1', '', 'say hi', 'command', 1, 'completed', ?, ?, 'hi', 0.5, 1)",
                   (now - 300, now - 290))
        db.execute("INSERT INTO sessions VALUES ('old:1', 'docs', 'claude', 'sess-9', "
                   "'write the docs', 'idle', ?, ?, 4, 0.25)", (now - 900, now - 800))
        db.execute("INSERT INTO telegram_buttons VALUES (42, 7)")
        db.execute("INSERT INTO telegram_live VALUES (42, 7, 'old1', '<b>hi</b>', 'hi')")
    finally:
        db.close()


class Seen:
    def __init__(self) -> None:
        self.lifecycle = None
        self.recoveries: list = []

    @hookimpl
    def on_startup_lifecycle(self, lifecycle) -> None:
        self.lifecycle = lifecycle

    @hookimpl
    def on_recover(self, recovery) -> None:
        self.recoveries.append(recovery)


async def test_a_database_of_the_previous_version_opens_and_migrates(tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write_old_database(state / DB_NAME, "boot-1")
    config = tmp_path / "plugins.toml"
    config.write_text('[plugins]\nconsole = false\n[agent]\ndefault = "command"\n'
                      'command = ["true", "{prompt}"]\n'
                      f'[journal]\nboot_id_file = "{boot}"\n')
    seen = Seen()
    app = App(Config.load(config), state)
    app.add_plugin("seen", seen)
    await app.start()
    try:
        store = app.store
        assert store is not None
        # the run that never ended was a crash; its running turn is taken over
        assert seen.lifecycle is not None and seen.lifecycle.kind == "crashed"
        assert [(r.turn.id, r.action) for r in seen.recoveries] == [("old1", "resume")]
        old = await store.fetch_one(select(journal.turns).where(journal.turns.c.id == "old0"))
        assert old is not None and (old["outcome"], old["cost_usd"], old["user_id"]) == (
            "hi", 0.5, "")  # the added column, with its default for the old rows
        assert await store.fetch(select(plugin_health)) == []  # a new run starts afresh
        assert app.loader is not None
        named = app.loader.instances["sessions"]
        assert "• docs [idle]" in await named.listing(ChatRef.from_key("old:1"))
        ledger = Ledger(store, logging.getLogger("test"))
        assert await ledger.left_over() == [(42, 7)]
        assert await ledger.live_left_over() == [LiveMessage(42, 7, "old1", "<b>hi</b>", "hi")]
        assert await ledger.rooms_on_record() == {}  # the table the new version added
    finally:
        await app.stop()
    assert versions(state / DB_NAME) == {"approvals": 1, "core": 1, "journal": 2, "sessions": 1,
                                          "telegram": 3}
    db = sqlite3.connect(state / DB_NAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (clean,) = db.execute("SELECT clean FROM journal_runs ORDER BY id DESC").fetchone()
        assert clean == 1
    finally:
        db.close()
