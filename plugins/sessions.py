"""Named sessions: several agent conversations per chat, running beside the foreground one,
each persisted (agent session id, last prompt, state) so follow-ups and restarts continue it.

Commands: ``/session NAME PROMPT`` (or ``@NAME PROMPT``) starts or continues NAME in the
background; ``/session - PROMPT`` picks a name; ``/sessions`` lists the chat's sessions;
``/session end NAME`` ends one. Interrupted session turns are resumed by the recovery journal
like any other turn; this plugin keeps the session records in step.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

from cadenza import api
from cadenza.api import (
    Bot,
    ChatMessage,
    ChatRef,
    PluginContext,
    Recovery,
    StreamEvent,
    Turn,
    duration,
    first_line,
    hookimpl,
)

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RESERVED = {"end", "list", "-"}
AUTO = "-"
_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fond", "glad", "hazel", "ivory",
               "jolly", "keen", "lucid", "mellow", "nimble", "olive", "plucky", "quiet",
               "rapid", "sunny", "tidy", "urban", "vivid", "witty", "zesty")
_NOUNS = ("otter", "falcon", "maple", "comet", "harbor", "lynx", "pebble", "quartz", "raven",
          "cedar", "dune", "ember", "fjord", "gecko", "heron", "iris", "koala", "lotus",
          "marten", "nova", "orchid", "puffin", "reef", "tern")

MIGRATIONS = [
    """
    CREATE TABLE sessions (
        chat TEXT NOT NULL,
        name TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_session_id TEXT,
        last_prompt TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used REAL NOT NULL,
        turns INTEGER NOT NULL DEFAULT 0,
        last_cost REAL,
        PRIMARY KEY (chat, name)
    );
    CREATE INDEX sessions_state ON sessions (state, last_used)
    """,
]


class NamedSessions:
    def __init__(self, context: PluginContext) -> None:
        settings = context.settings
        settings.reject_unknown(["idle_timeout", "max_per_chat"])
        self.idle_timeout = settings.number("idle_timeout", 7 * 86400, minimum=0.01)
        self.max_per_chat = int(settings.number("max_per_chat", 50, minimum=1))
        self.store = context.store
        self.clock = context.clock
        self.log = context.log
        self.store.migrate("sessions", MIGRATIONS)
        self.bot: Bot | None = None
        self._expiry: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        self.bot = bot
        # Conversations continue across restarts: lanes start from the stored agent session.
        for row in self.store.query(
            "SELECT chat, name, agent, agent_session_id FROM sessions WHERE state != 'ended' "
            "AND agent_session_id IS NOT NULL"
        ):
            bot.continue_conversation(ChatRef.from_key(row["chat"]), row["name"],
                                      row["agent_session_id"], row["agent"])
        self._expiry = asyncio.ensure_future(self._expire_idle())

    @hookimpl
    def on_shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("session", self.cmd_session, usage="NAME PROMPT",
                 help="start or continue the named session NAME in the background "
                      "(@NAME PROMPT for short; /session - PROMPT picks a name; "
                      "/session end NAME ends it)")
        register("sessions", self.cmd_sessions, help="list this chat's named sessions")

    # --- records --------------------------------------------------------------------

    @hookimpl
    def on_turn_accepted(self, turn: Turn) -> None:
        now = self.clock.time()
        self.store.execute(
            "INSERT INTO sessions (chat, name, agent, last_prompt, state, created_at, last_used, "
            "turns) VALUES (?, ?, ?, ?, 'running', ?, ?, 1) ON CONFLICT(chat, name) DO UPDATE "
            "SET last_prompt = excluded.last_prompt, state = 'running', agent = excluded.agent, "
            "last_used = excluded.last_used, turns = turns + 1",
            (turn.chat.key, turn.session, turn.agent, turn.prompt if turn.attempt == 1 else
             self._last_prompt(turn), now, now))

    def _last_prompt(self, turn: Turn) -> str:
        # a resumed turn's prompt carries the journal's note; keep the user's own words
        row = self.store.execute("SELECT last_prompt FROM sessions WHERE chat = ? AND name = ?",
                                 (turn.chat.key, turn.session)).fetchone()
        return row[0] if row else turn.prompt

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        if session_id := event.new_agent_session:
            self.store.execute(
                "UPDATE sessions SET agent_session_id = ? WHERE chat = ? AND name = ?",
                (session_id, event.turn.chat.key, event.turn.session))
        elif event.terminal and event.kind != api.INTERRUPTED:
            self.store.execute(
                "UPDATE sessions SET state = CASE state WHEN 'ended' THEN 'ended' ELSE 'idle' END, "
                "last_used = ?, last_cost = COALESCE(?, last_cost) WHERE chat = ? AND name = ?",
                (self.clock.time(), event.cost_usd, event.turn.chat.key, event.turn.session))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        if recovery.action != "resume":
            self.store.execute(
                "UPDATE sessions SET state = 'idle' WHERE chat = ? AND name = ? AND state = "
                "'running'", (recovery.turn.chat.key, recovery.turn.session))

    # --- commands ---------------------------------------------------------------------

    async def cmd_session(self, bot: Bot, message: ChatMessage, args: str) -> None:
        chat = message.chat
        parts = args.split(None, 1)
        head = parts[0].lower() if parts else ""
        rest = parts[1].strip() if len(parts) > 1 else ""
        if head == "end":
            await self._end(bot, chat, rest.lower())
            return
        if not head and not rest:
            await bot.notify(chat, "Usage: /session NAME PROMPT (or @NAME PROMPT); "
                             "/session - PROMPT picks a name; /sessions lists them.")
            return
        if head == AUTO:
            head = self._new_name(chat)
        problem = self._name_problem(head)
        if problem:
            await bot.notify(chat, problem, kind="error")
            return
        if not rest:
            await bot.notify(chat, f"What should session {head} do? Send /session {head} PROMPT.",
                             kind="error")
            return
        row = self._row(chat, head)
        if row is None or row["state"] == "ended":
            if self._open_count(chat) >= self.max_per_chat:
                await bot.notify(chat, f"This chat has {self.max_per_chat} sessions, the most "
                                 "it may have; end one first (/sessions lists them, /session "
                                 "end NAME ends one).", kind="error")
                return
            if row is not None:  # a new conversation under a name that was used before
                bot.continue_conversation(chat, head, None)
            await bot.notify(chat, f"▶ session {head} started in the background. "
                             f"Follow up with @{head} PROMPT; /sessions lists them.")
        await bot.submit(chat, rest, session=head, user_id=message.user_id)

    def _open_count(self, chat: ChatRef) -> int:
        (count,) = self.store.execute(
            "SELECT count(*) FROM sessions WHERE chat = ? AND state != 'ended'", (chat.key,)
        ).fetchone()
        return int(count)

    def _name_problem(self, name: str) -> str | None:
        if name in RESERVED:
            return f"{name!r} is reserved; pick another session name."
        if not NAME.match(name):
            return (f"Session names are 1 to 32 characters: lowercase letters, digits, '-' and "
                    f"'_', starting with a letter or digit; {name[:40]!r} is not one.")
        return None

    def _new_name(self, chat: ChatRef) -> str:
        taken = {row["name"] for row in self.store.query(
            "SELECT name FROM sessions WHERE chat = ?", (chat.key,))}
        rng = random.Random()
        for _ in range(100):
            name = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
            if name not in taken:
                return name
        return f"session-{len(taken) + 1}"

    def _row(self, chat: ChatRef, name: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM sessions WHERE chat = ? AND name = ?",
                                (chat.key, name))
        return rows[0] if rows else None

    async def _end(self, bot: Bot, chat: ChatRef, name: str) -> None:
        row = self._row(chat, name) if name else None
        if row is None or not name:
            await bot.notify(chat, f"No session named {name!r} here; /sessions lists them.",
                             kind="error")
            return
        await self._end_session(bot, chat, name, "ended with /session end")
        await bot.notify(chat, f"■ session {name} ended.")

    async def _end_session(self, bot: Bot, chat: ChatRef, name: str, why: str) -> None:
        self.store.execute("UPDATE sessions SET state = 'ended' WHERE chat = ? AND name = ?",
                           (chat.key, name))
        await bot.end_conversation(chat, name, why)

    async def cmd_sessions(self, bot: Bot, message: ChatMessage, args: str) -> None:
        await bot.notify(message.chat, self.listing(message.chat), kind="status")

    def listing(self, chat: ChatRef) -> str:
        rows = self.store.query(
            "SELECT name, state, created_at, last_used, last_prompt, turns, last_cost "
            "FROM sessions WHERE chat = ? AND name != '' ORDER BY state = 'ended', last_used DESC "
            "LIMIT 50", (chat.key,))
        if not rows:
            return "No named sessions yet. Start one with /session NAME PROMPT."
        now = self.clock.time()
        lines = ["Sessions:"]
        for row in rows:
            cost = f" · ${row['last_cost']:.4f}".rstrip("0") if row["last_cost"] else ""
            hint = "" if row["state"] == "ended" else f" — @{row['name']} PROMPT"
            lines.append(
                f"• {row['name']} [{row['state']}] {duration(now - row['created_at'])} old, "
                f"{row['turns']} turn(s){cost}: {first_line(row['last_prompt'], 60)}{hint}")
        return "\n".join(lines)

    # --- idle expiry --------------------------------------------------------------------

    async def _expire_idle(self) -> None:
        while True:
            await self.clock.sleep(min(self.idle_timeout / 4, 3600))
            await self.expire_idle()

    async def expire_idle(self) -> None:
        """End sessions idle longer than ``idle_timeout``, and tell their chats."""
        cutoff = self.clock.time() - self.idle_timeout
        rows = self.store.query(
            "SELECT chat, name FROM sessions WHERE state = 'idle' AND name != '' "
            "AND last_used < ?", (cutoff,))
        for row in rows:
            chat = ChatRef.from_key(row["chat"])
            if self.bot is None:
                return
            await self._end_session(self.bot, chat, row["name"], "idle too long")
            await self.bot.notify(chat, f"■ session {row['name']} ended after "
                                  f"{duration(self.idle_timeout)} without use.")

    # --- cadenza status -------------------------------------------------------------------

    @hookimpl
    def report_status(self) -> dict[str, Any]:
        rows = self.store.query(
            "SELECT chat, name, state, turns, substr(last_prompt, 1, 60) AS last_prompt, "
            "datetime(last_used, 'unixepoch') AS last_used FROM sessions WHERE name != '' "
            "ORDER BY last_used DESC LIMIT 100")
        return {"sessions": rows}
