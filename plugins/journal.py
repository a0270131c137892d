"""The recovery journal: how this run started, and no turn stranded by a crash, restart or reboot.

Every turn is written when it is accepted, again before its agent starts, once when the agent
names its session, and at its end; never per text delta. At startup the turns a previous run
left ``queued``, ``running`` or ``interrupted`` are resumed, at most ``max_attempts`` times each
and only within ``max_age``, or abandoned and reported with their full prompt.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cadenza.api import (
    Bot,
    ChatRef,
    Lifecycle,
    PluginContext,
    Recovery,
    StreamEvent,
    Turn,
    hookimpl,
)
from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
RECENT = 86400.0  # chats with turns this recent hear about restarts
OPEN_STATES = ("queued", "running", "interrupted")

MIGRATIONS = [
    """
    CREATE TABLE journal_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        boot_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        ended_at REAL,
        clean INTEGER NOT NULL DEFAULT 0,
        lifecycle TEXT NOT NULL
    );
    CREATE TABLE journal_turns (
        id TEXT PRIMARY KEY,
        chat TEXT NOT NULL,
        session TEXT NOT NULL,
        prompt TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_session_id TEXT,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        outcome TEXT,
        cost_usd REAL,
        run_id INTEGER
    );
    CREATE INDEX journal_turns_open ON journal_turns (state, created_at);
    CREATE INDEX journal_turns_recent ON journal_turns (created_at)
    """,
    # who sent each prompt: a resumed turn is re-checked against the allowlist
    "ALTER TABLE journal_turns ADD COLUMN user_id TEXT NOT NULL DEFAULT ''",
]

# The tables as MIGRATIONS leave them.
metadata = MetaData()
runs = Table(
    "journal_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("boot_id", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("clean", Integer, nullable=False, server_default="0"),
    Column("lifecycle", Text, nullable=False),
    sqlite_autoincrement=True,
)
turns = Table(
    "journal_turns", metadata,
    Column("id", Text, primary_key=True),
    Column("chat", Text, nullable=False),
    Column("session", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("agent_session_id", Text),
    Column("attempt", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("outcome", Text),
    Column("cost_usd", Float),
    Column("run_id", Integer),
    Column("user_id", Text, nullable=False, server_default=""),
)


class _Arrival(ColumnElement[Any]):
    """The order in which the journal's turns were written, to break ties of ``created_at``:
    SQLite's ``rowid``; another database orders ties by the turn id."""

    inherit_cache = True


@compiles(_Arrival)
def _arrival(element: _Arrival, compiler: Any, **kw: Any) -> str:
    return compiler.process(turns.c.id, **kw)  # type: ignore[no-any-return]


@compiles(_Arrival, "sqlite")
def _arrival_sqlite(element: _Arrival, compiler: Any, **kw: Any) -> str:
    return "journal_turns.rowid"


# Statements, built once: each run compiles them once (SQLAlchemy's compiled cache).
_CLOSE_CUT_SHORT = update(runs).where(runs.c.ended_at.is_(None)).values(
    ended_at=runs.c.heartbeat_at)
_FORGET_TURNS = delete(turns).where(turns.c.ended_at < bindparam("before"),
                                    turns.c.state.not_in(OPEN_STATES))
_FORGET_RUNS = delete(runs).where(runs.c.ended_at < bindparam("before"))
_NEW_RUN = insert(runs).returning(runs.c.id)
_LAST_RUN = select(runs).order_by(runs.c.id.desc()).limit(1)
_OPEN_TURNS = select(turns).where(turns.c.state.in_(OPEN_STATES)).order_by(
    turns.c.created_at, _Arrival())
_TAKE_OVER = update(turns).where(turns.c.id == bindparam("of_turn")).values(
    state=bindparam("new_state"), run_id=bindparam("new_run"))
_RECENT_CHATS = select(turns.c.chat).distinct().where(turns.c.created_at > bindparam("since"))
_HEARTBEAT = update(runs).where(runs.c.id == bindparam("of_run")).values(
    heartbeat_at=bindparam("at"))
_CLEAN_END = update(runs).where(runs.c.id == bindparam("of_run")).values(
    ended_at=bindparam("at"), heartbeat_at=bindparam("at"), clean=1)
_TURN_START = update(turns).where(turns.c.id == bindparam("of_turn")).values(
    state="running", started_at=bindparam("at"), attempt=bindparam("new_attempt"),
    agent=bindparam("new_agent"), run_id=bindparam("new_run"),
    agent_session_id=func.coalesce(bindparam("resume_id", type_=Text),
                                   turns.c.agent_session_id))
_AGENT_SESSION = update(turns).where(turns.c.id == bindparam("of_turn")).values(
    agent_session_id=bindparam("session_id"))
_TURN_END = update(turns).where(turns.c.id == bindparam("of_turn")).values(
    state=bindparam("kind"), ended_at=bindparam("at"), outcome=bindparam("text"),
    cost_usd=bindparam("cost"))


def read_boot_id(path: str) -> str:
    """Linux's boot id; elsewhere the boot time, which also changes with every boot."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return f"boot-time-{round(time.time() - time.monotonic(), -1):.0f}"


def resume_prompt(prompt: str, reason: str, with_session: bool) -> str:
    if with_session:
        note = (f"Cadenza: your previous run of this request was interrupted ({reason}). "
                "Continue where you left off instead of starting over.")
    else:
        note = (f"Cadenza: a previous run of this request was interrupted ({reason}); "
                "some of its work may already be done.")
    return f"{prompt}\n\n[{note}]"


_REASONS = {"crashed": "Cadenza crashed", "restarted": "Cadenza restarted",
            "reboot": "the machine rebooted", "started": "Cadenza restarted"}


class RecoveryJournal:
    def __init__(self, context: PluginContext) -> None:
        settings = context.settings
        settings.reject_unknown(
            ["max_attempts", "max_age", "boot_id_file", "heartbeat", "keep_days"])
        self.keep = settings.number("keep_days", 30, minimum=0) * 86400
        self.max_attempts = int(settings.number("max_attempts", 2, minimum=0))
        self.max_age = settings.number("max_age", 3600, minimum=0)
        self.boot_id_file = settings.string("boot_id_file", BOOT_ID_FILE)
        self.heartbeat = settings.number("heartbeat", 30, minimum=0.01)
        self.store = context.store
        self.clock = context.clock
        self.hooks = context.hooks
        self.log = context.log
        self.store.migrate("journal", MIGRATIONS)
        # a resumed turn keeps its original prompt and creation time
        self._accept = self.store.upsert(turns, {}, key=["id"],
                                         update=["state", "attempt", "run_id"])
        self.run_id: int | None = None
        self._recovering: set[str] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None

    # --- startup ------------------------------------------------------------------

    @hookimpl
    async def on_ready(self, bot: Bot) -> None:
        now = self.clock.time()
        boot_id = read_boot_id(self.boot_id_file)
        previous = await self.store.fetch_one(_LAST_RUN)
        kind = self._lifecycle_kind(previous, boot_id)
        downtime = None
        if previous is not None:
            downtime = max(0.0, now - (previous["ended_at"] or previous["heartbeat_at"]))
        store = self.store
        async with store.transaction():
            # A run that never recorded its end was cut short: close its record now.
            await store.execute(_CLOSE_CUT_SHORT)
            # Finished turns and runs older than keep_days go: the journal must not grow forever.
            await store.execute(_FORGET_TURNS, {"before": now - self.keep})
            await store.execute(_FORGET_RUNS, {"before": now - self.keep})
            run = await store.fetch_one(_NEW_RUN, {
                "boot_id": boot_id, "pid": os.getpid(), "started_at": now, "heartbeat_at": now,
                "lifecycle": kind})
            assert run is not None
            self.run_id = run["id"]
            plan = await self._plan_recovery(now, kind)
        resuming = [turn for action, turn, _ in plan if action == "resume"]
        notes = (self.store.reset_note,) if self.store.reset_note else ()
        lifecycle = Lifecycle(
            kind=kind, boot_id=boot_id,
            previous_boot_id=previous["boot_id"] if previous else None,
            downtime=downtime, interrupted=len(plan), resuming=len(resuming), notes=notes,
            recent_chats=await self._recent_chats(now),
        )
        self.log.info("lifecycle: %s; %d interrupted turn(s), %d to resume",
                      kind, len(plan), len(resuming))
        if plan and kind == "crashed":
            # the dead run's agents may still be running (and holding their conversation)
            stopped = await bot.stop_strays([turn.id for _, turn, _ in plan])
            if stopped:
                self.log.warning("stopped %d agent process(es) left by the crashed run", stopped)
        await self.hooks.call("on_startup_lifecycle", lifecycle=lifecycle)
        for action, turn, detail in plan:
            recovery = Recovery(turn=turn, attempt=turn.attempt, reason=kind, action=action,
                                detail=detail)
            await self.hooks.call("on_recover", recovery=recovery)
            if action == "resume":
                await bot.enqueue(turn, announce=False)
        self._heartbeat_task = asyncio.ensure_future(self._beat())

    @staticmethod
    def _lifecycle_kind(previous: dict[str, Any] | None, boot_id: str) -> str:
        if previous is None:
            return "started"
        if previous["boot_id"] != boot_id:
            return "reboot"
        return "restarted" if previous["clean"] else "crashed"

    async def _plan_recovery(self, now: float, kind: str) -> list[tuple[str, Turn, str]]:
        """Decide each open turn's fate. A row's ``attempt`` is the last attempt that started
        (written before its spawn, so a turn that crashes Cadenza again and again runs out of
        attempts: no replay loop); a turn that never started keeps its attempt number."""
        rows = await self.store.fetch(_OPEN_TURNS)
        plan = []
        reason = _REASONS[kind]
        for row in rows:
            turn = Turn(
                id=row["id"], chat=ChatRef.from_key(row["chat"]), prompt=row["prompt"],
                agent=row["agent"], session=row["session"], attempt=row["attempt"],
                resume_id=row["agent_session_id"], created_at=row["created_at"],
                user_id=row["user_id"],
            )
            age = now - row["created_at"]
            attempt = row["attempt"] + (1 if row["started_at"] is not None else 0)
            if attempt > self.max_attempts + 1:
                detail = f"it was interrupted {row['attempt']} times"
                plan.append(("abandon", turn, detail))
            elif age > self.max_age:
                plan.append(("abandon", turn, f"it is {round(age / 60)} min old"))
            else:
                resumed = replace(
                    turn, attempt=attempt,
                    prompt=resume_prompt(row["prompt"], reason, bool(row["agent_session_id"])))
                plan.append(("resume", resumed, ""))
        if plan:
            await self.store.execute(_TAKE_OVER, [
                {"new_state": "queued" if action == "resume" else "abandoned",
                 "new_run": self.run_id, "of_turn": turn.id} for action, turn, _ in plan])
        self._recovering = {turn.id for action, turn, _ in plan if action == "resume"}
        return plan

    async def _recent_chats(self, now: float) -> tuple[ChatRef, ...]:
        rows = await self.store.fetch(_RECENT_CHATS, {"since": now - RECENT})
        return tuple(ChatRef.from_key(row["chat"]) for row in rows)

    async def _beat(self) -> None:
        # How long a crashed run was down is measured from its last heartbeat.
        while True:
            await self.clock.sleep(self.heartbeat)
            await self.store.execute(_HEARTBEAT, {"at": self.clock.time(),
                                                  "of_run": self.run_id})

    @hookimpl
    async def on_shutdown(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        if self.run_id is not None:
            await self.store.execute(_CLEAN_END, {"at": self.clock.time(),
                                                  "of_run": self.run_id})

    # --- the in-flight journal ---------------------------------------------------------

    @hookimpl
    async def on_turn_accepted(self, turn: Turn) -> None:
        if turn.id in self._recovering:
            self._recovering.discard(turn.id)  # already written by the recovery plan
            return
        await self.store.execute(self._accept, {
            "id": turn.id, "chat": turn.chat.key, "session": turn.session, "prompt": turn.prompt,
            "agent": turn.agent, "agent_session_id": turn.resume_id, "attempt": turn.attempt,
            "state": "queued", "created_at": turn.created_at, "run_id": self.run_id,
            "user_id": turn.user_id})

    @hookimpl
    async def on_turn_start(self, turn: Turn) -> None:
        # awaited by the core before the agent is spawned: a crash from here on finds the
        # turn ``running`` with this attempt
        await self.store.execute(_TURN_START, {
            "at": self.clock.time(), "new_attempt": turn.attempt, "new_agent": turn.agent,
            "resume_id": turn.resume_id, "new_run": self.run_id, "of_turn": turn.id})

    @hookimpl
    async def on_stream_event(self, event: StreamEvent) -> None:
        if session_id := event.new_agent_session:
            await self.store.execute(_AGENT_SESSION, {"session_id": session_id,
                                                      "of_turn": event.turn.id})
        elif event.terminal:
            await self.store.execute(_TURN_END, {
                "kind": event.kind, "at": self.clock.time(), "text": event.text[:2000] or None,
                "cost": event.cost_usd, "of_turn": event.turn.id})

    # --- what other plugins read --------------------------------------------------------

    async def recent_turns(self, limit_per_chat: int = 20,
                           limit: int = 500) -> list[dict[str, Any]]:
        """The newest turns of every chat the journal still keeps (``keep_days``), newest
        first: at most ``limit_per_chat`` of each chat and ``limit`` in all. Read-only; each
        row has ``id``, ``chat``, ``session``, ``agent``, ``prompt`` (its first
        ``RECENT_PROMPT_CHARS`` characters), ``state`` (``queued``, ``running``,
        ``interrupted``, ``abandoned``, or how it ended: ``completed``, ``error``, …),
        ``attempt``, ``created_at``, ``started_at``, ``ended_at`` (epoch seconds, None until
        then) and ``cost_usd``."""
        return await self.store.fetch(_RECENT_TURNS, {
            "per_chat": max(0, limit_per_chat), "most": max(0, limit)})

    # --- cadenza status --------------------------------------------------------------

    @hookimpl
    def report_status(self) -> dict[str, Any]:
        store = self.store  # the command line's: no loop runs there
        last_runs = [
            {"id": row["id"], "lifecycle": row["lifecycle"], "boot_id": row["boot_id"],
             "pid": row["pid"], "started": _utc(row["started_at"]),
             "ended": _utc(row["ended_at"]), "clean": row["clean"]}
            for row in store.fetch_sync(_STATUS_RUNS)]
        counts = {row["state"]: row["count"] for row in store.fetch_sync(_STATUS_COUNTS)}
        return {"runs": last_runs, "turns": counts,
                "unfinished_turns": store.fetch_sync(_STATUS_UNFINISHED),
                "resumed_turns": store.fetch_sync(_STATUS_RESUMED)}


_PROMPT_HEAD = func.substr(turns.c.prompt, 1, 60).label("prompt")
RECENT_PROMPT_CHARS = 500
_NEWEST_OF_CHAT = func.row_number().over(
    partition_by=turns.c.chat, order_by=(turns.c.created_at.desc(), _Arrival().desc()))
_RANKED = select(
    turns.c.id, turns.c.chat, turns.c.session, turns.c.agent,
    func.substr(turns.c.prompt, 1, RECENT_PROMPT_CHARS).label("prompt"), turns.c.state,
    turns.c.attempt, turns.c.created_at, turns.c.started_at, turns.c.ended_at,
    turns.c.cost_usd, _NEWEST_OF_CHAT.label("nth"), _Arrival().label("arrival"),
).subquery()
_RECENT_TURNS = select(*(c for c in _RANKED.c if c.name not in ("nth", "arrival"))).where(
    _RANKED.c.nth <= bindparam("per_chat")).order_by(
    _RANKED.c.created_at.desc(), _RANKED.c.arrival.desc()).limit(bindparam("most"))
_STATUS_RUNS = select(runs).order_by(runs.c.id.desc()).limit(5)
_STATUS_COUNTS = select(turns.c.state, func.count().label("count")).group_by(turns.c.state)
_STATUS_UNFINISHED = select(
    turns.c.id, turns.c.chat, turns.c.session, turns.c.state, turns.c.attempt, _PROMPT_HEAD,
).where(turns.c.state.in_(("queued", "running", "interrupted", "abandoned"))).order_by(
    turns.c.created_at.desc()).limit(50)
_STATUS_RESUMED = select(
    turns.c.id, turns.c.chat, turns.c.state, turns.c.attempt, _PROMPT_HEAD,
).where(turns.c.attempt > 1).order_by(turns.c.created_at.desc()).limit(20)


def _utc(at: float | None) -> str | None:
    """A time as ``cadenza status`` shows it: UTC, to the second."""
    return None if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
