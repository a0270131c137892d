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
        self.run_id: int | None = None
        self._recovering: set[str] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None

    # --- startup ------------------------------------------------------------------

    @hookimpl
    async def on_ready(self, bot: Bot) -> None:
        now = self.clock.time()
        boot_id = read_boot_id(self.boot_id_file)
        previous = self._last_run()
        kind = self._lifecycle_kind(previous, boot_id)
        downtime = None
        if previous is not None:
            downtime = max(0.0, now - (previous["ended_at"] or previous["heartbeat_at"]))
        with self.store.transaction() as db:
            # A run that never recorded its end was cut short: close its record now.
            db.execute("UPDATE journal_runs SET ended_at = heartbeat_at WHERE ended_at IS NULL")
            # Finished turns and runs older than keep_days go: the journal must not grow forever.
            db.execute("DELETE FROM journal_turns WHERE ended_at < ? AND state NOT IN "
                       "('queued', 'running', 'interrupted')", (now - self.keep,))
            db.execute("DELETE FROM journal_runs WHERE ended_at < ?", (now - self.keep,))
            cursor = db.execute(
                "INSERT INTO journal_runs (boot_id, pid, started_at, heartbeat_at, lifecycle) "
                "VALUES (?, ?, ?, ?, ?)", (boot_id, os.getpid(), now, now, kind))
            self.run_id = cursor.lastrowid
            plan = self._plan_recovery(now, kind)
        resuming = [turn for action, turn, _ in plan if action == "resume"]
        notes = (self.store.reset_note,) if self.store.reset_note else ()
        lifecycle = Lifecycle(
            kind=kind, boot_id=boot_id,
            previous_boot_id=previous["boot_id"] if previous else None,
            downtime=downtime, interrupted=len(plan), resuming=len(resuming), notes=notes,
            recent_chats=self._recent_chats(now),
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

    def _last_run(self) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM journal_runs ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    @staticmethod
    def _lifecycle_kind(previous: dict[str, Any] | None, boot_id: str) -> str:
        if previous is None:
            return "started"
        if previous["boot_id"] != boot_id:
            return "reboot"
        return "restarted" if previous["clean"] else "crashed"

    def _plan_recovery(self, now: float, kind: str) -> list[tuple[str, Turn, str]]:
        """Decide each open turn's fate. A row's ``attempt`` is the last attempt that started
        (written before its spawn, so a turn that crashes Cadenza again and again runs out of
        attempts: no replay loop); a turn that never started keeps its attempt number."""
        rows = self.store.query(
            "SELECT * FROM journal_turns WHERE state IN (?, ?, ?) ORDER BY created_at, rowid",
            OPEN_STATES)
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
        self.store.executemany(
            "UPDATE journal_turns SET state = ?, run_id = ? WHERE id = ?",
            [("queued" if action == "resume" else "abandoned", self.run_id, turn.id)
             for action, turn, _ in plan])
        self._recovering = {turn.id for action, turn, _ in plan if action == "resume"}
        return plan

    def _recent_chats(self, now: float) -> tuple[ChatRef, ...]:
        rows = self.store.execute(
            "SELECT DISTINCT chat FROM journal_turns WHERE created_at > ?", (now - RECENT,))
        return tuple(ChatRef.from_key(chat) for (chat,) in rows)

    async def _beat(self) -> None:
        # How long a crashed run was down is measured from its last heartbeat.
        while True:
            await self.clock.sleep(self.heartbeat)
            self.store.execute("UPDATE journal_runs SET heartbeat_at = ? WHERE id = ?",
                               (self.clock.time(), self.run_id))

    @hookimpl
    def on_shutdown(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        if self.run_id is not None:
            now = self.clock.time()
            self.store.execute(
                "UPDATE journal_runs SET ended_at = ?, heartbeat_at = ?, clean = 1 WHERE id = ?",
                (now, now, self.run_id))

    # --- the in-flight journal ---------------------------------------------------------

    @hookimpl
    def on_turn_accepted(self, turn: Turn) -> None:
        if turn.id in self._recovering:
            self._recovering.discard(turn.id)  # already written by the recovery plan
            return
        self.store.execute(
            "INSERT INTO journal_turns (id, chat, session, prompt, agent, agent_session_id, "
            "attempt, state, created_at, run_id, user_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) "
            # a resumed turn keeps its original prompt and creation time
            "ON CONFLICT(id) DO UPDATE SET state = 'queued', attempt = excluded.attempt, "
            "run_id = excluded.run_id",
            (turn.id, turn.chat.key, turn.session, turn.prompt, turn.agent, turn.resume_id,
             turn.attempt, turn.created_at, self.run_id, turn.user_id))

    @hookimpl
    def on_turn_start(self, turn: Turn) -> None:
        self.store.execute(
            "UPDATE journal_turns SET state = 'running', started_at = ?, attempt = ?, agent = ?, "
            "agent_session_id = COALESCE(?, agent_session_id), run_id = ? WHERE id = ?",
            (self.clock.time(), turn.attempt, turn.agent, turn.resume_id, self.run_id, turn.id))

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        if session_id := event.new_agent_session:
            self.store.execute("UPDATE journal_turns SET agent_session_id = ? WHERE id = ?",
                               (session_id, event.turn.id))
        elif event.terminal:
            self.store.execute(
                "UPDATE journal_turns SET state = ?, ended_at = ?, outcome = ?, cost_usd = ? "
                "WHERE id = ?",
                (event.kind, self.clock.time(), event.text[:2000] or None, event.cost_usd,
                 event.turn.id))

    # --- cadenza status --------------------------------------------------------------

    @hookimpl
    def report_status(self) -> dict[str, Any]:
        runs = self.store.query(
            "SELECT id, lifecycle, boot_id, pid, datetime(started_at, 'unixepoch') AS started, "
            "datetime(ended_at, 'unixepoch') AS ended, clean FROM journal_runs "
            "ORDER BY id DESC LIMIT 5")
        counts = dict(self.store.execute(
            "SELECT state, count(*) FROM journal_turns GROUP BY state").fetchall())
        open_turns = self.store.query(
            "SELECT id, chat, session, state, attempt, substr(prompt, 1, 60) AS prompt "
            "FROM journal_turns WHERE state IN ('queued', 'running', 'interrupted', "
            "'abandoned') ORDER BY created_at DESC LIMIT 50")
        resumed = self.store.query(
            "SELECT id, chat, state, attempt, substr(prompt, 1, 60) AS prompt FROM journal_turns "
            "WHERE attempt > 1 ORDER BY created_at DESC LIMIT 20")
        return {"runs": runs, "turns": counts, "unfinished_turns": open_turns,
                "resumed_turns": resumed}
