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
import time
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
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    case,
    func,
    select,
    update,
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

# The table as MIGRATIONS leave it.
metadata = MetaData()
sessions = Table(
    "sessions", metadata,
    Column("chat", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("agent", Text, nullable=False),
    Column("agent_session_id", Text),
    Column("last_prompt", Text, nullable=False, server_default=""),
    Column("state", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used", Float, nullable=False),
    Column("turns", Integer, nullable=False, server_default="0"),
    Column("last_cost", Float),
)
_c = sessions.c
_THIS = (_c.chat == bindparam("of_chat")) & (_c.name == bindparam("of_name"))

# Statements, built once: each run compiles them once (SQLAlchemy's compiled cache).
_CONTINUED = select(_c.chat, _c.name, _c.agent, _c.agent_session_id).where(
    _c.state != "ended", _c.agent_session_id.is_not(None))
_LAST_PROMPT = select(_c.last_prompt).where(_THIS)
_AGENT_SESSION = update(sessions).where(_THIS).values(agent_session_id=bindparam("session_id"))
_TURN_END = update(sessions).where(_THIS).values(
    state=case((_c.state == "ended", "ended"), else_="idle"),
    last_used=bindparam("at"), last_cost=func.coalesce(bindparam("cost", type_=Float),
                                                       _c.last_cost))
_NOT_RESUMED = update(sessions).where(_THIS, _c.state == "running").values(state="idle")
_OPEN_COUNT = select(func.count().label("count")).where(
    _c.chat == bindparam("of_chat"), _c.state != "ended")
_NAMES = select(_c.name).where(_c.chat == bindparam("of_chat"))
_ROW = select(sessions).where(_THIS)
_END = update(sessions).where(_THIS).values(state="ended")
_LISTING = select(
    _c.name, _c.state, _c.created_at, _c.last_used, _c.last_prompt, _c.turns, _c.last_cost,
).where(_c.chat == bindparam("of_chat"), _c.name != "").order_by(
    _c.state == "ended", _c.last_used.desc()).limit(50)
_IDLE = select(_c.chat, _c.name).where(_c.state == "idle", _c.name != "",
                                       _c.last_used < bindparam("before"))
_STATUS = select(
    _c.chat, _c.name, _c.state, _c.turns, func.substr(_c.last_prompt, 1, 60).label(
        "last_prompt"), _c.last_used,
).where(_c.name != "").order_by(_c.last_used.desc()).limit(100)


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
        self._accept = self.store.upsert(
            sessions, {}, key=["chat", "name"],
            update=["last_prompt", "state", "agent", "last_used"],
            update_with={"turns": _c.turns + 1})
        self.bot: Bot | None = None
        self._expiry: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------

    @hookimpl
    async def on_start(self, bot: Bot) -> None:
        self.bot = bot
        # Conversations continue across restarts: lanes start from the stored agent session.
        for row in await self.store.fetch(_CONTINUED):
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
    async def on_turn_accepted(self, turn: Turn) -> None:
        now = self.clock.time()
        prompt = turn.prompt if turn.attempt == 1 else await self._last_prompt(turn)
        await self.store.execute(self._accept, {
            "chat": turn.chat.key, "name": turn.session, "agent": turn.agent,
            "last_prompt": prompt, "state": "running", "created_at": now, "last_used": now,
            "turns": 1})

    async def _last_prompt(self, turn: Turn) -> str:
        # a resumed turn's prompt carries the journal's note; keep the user's own words
        row = await self.store.fetch_one(_LAST_PROMPT, {"of_chat": turn.chat.key,
                                                        "of_name": turn.session})
        return row["last_prompt"] if row else turn.prompt

    @hookimpl
    async def on_stream_event(self, event: StreamEvent) -> None:
        this = {"of_chat": event.turn.chat.key, "of_name": event.turn.session}
        if session_id := event.new_agent_session:
            await self.store.execute(_AGENT_SESSION, {**this, "session_id": session_id})
        elif event.terminal and event.kind != api.INTERRUPTED:
            await self.store.execute(_TURN_END, {**this, "at": self.clock.time(),
                                                 "cost": event.cost_usd})

    @hookimpl
    async def on_recover(self, recovery: Recovery) -> None:
        if recovery.action != "resume":
            await self.store.execute(_NOT_RESUMED, {"of_chat": recovery.turn.chat.key,
                                                    "of_name": recovery.turn.session})

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
            head = await self._new_name(chat)
        problem = self._name_problem(head)
        if problem:
            await bot.notify(chat, problem, kind="error")
            return
        if not rest:
            await bot.notify(chat, f"What should session {head} do? Send /session {head} PROMPT.",
                             kind="error")
            return
        row = await self._row(chat, head)
        if row is None or row["state"] == "ended":
            if await self._open_count(chat) >= self.max_per_chat:
                await bot.notify(chat, f"This chat has {self.max_per_chat} sessions, the most "
                                 "it may have; end one first (/sessions lists them, /session "
                                 "end NAME ends one).", kind="error")
                return
            if row is not None:  # a new conversation under a name that was used before
                bot.continue_conversation(chat, head, None)
            await bot.notify(chat, f"▶ session {head} started in the background. "
                             f"Follow up with @{head} PROMPT; /sessions lists them.")
        await bot.submit(chat, rest, session=head, user_id=message.user_id)

    async def _open_count(self, chat: ChatRef) -> int:
        row = await self.store.fetch_one(_OPEN_COUNT, {"of_chat": chat.key})
        return int(row["count"]) if row else 0

    def _name_problem(self, name: str) -> str | None:
        if name in RESERVED:
            return f"{name!r} is reserved; pick another session name."
        if not NAME.match(name):
            return (f"Session names are 1 to 32 characters: lowercase letters, digits, '-' and "
                    f"'_', starting with a letter or digit; {name[:40]!r} is not one.")
        return None

    async def _new_name(self, chat: ChatRef) -> str:
        taken = {row["name"] for row in await self.store.fetch(_NAMES, {"of_chat": chat.key})}
        rng = random.Random()
        for _ in range(100):
            name = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
            if name not in taken:
                return name
        return f"session-{len(taken) + 1}"

    async def _row(self, chat: ChatRef, name: str) -> dict[str, Any] | None:
        return await self.store.fetch_one(_ROW, {"of_chat": chat.key, "of_name": name})

    async def _end(self, bot: Bot, chat: ChatRef, name: str) -> None:
        row = await self._row(chat, name) if name else None
        if row is None or not name:
            await bot.notify(chat, f"No session named {name!r} here; /sessions lists them.",
                             kind="error")
            return
        await self._end_session(bot, chat, name, "ended with /session end")
        await bot.notify(chat, f"■ session {name} ended.")

    async def _end_session(self, bot: Bot, chat: ChatRef, name: str, why: str) -> None:
        await self.store.execute(_END, {"of_chat": chat.key, "of_name": name})
        await bot.end_conversation(chat, name, why)

    async def cmd_sessions(self, bot: Bot, message: ChatMessage, args: str) -> None:
        await bot.notify(message.chat, await self.listing(message.chat), kind="status")

    async def listing(self, chat: ChatRef) -> str:
        rows = await self.store.fetch(_LISTING, {"of_chat": chat.key})
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
        rows = await self.store.fetch(_IDLE, {"before": cutoff})
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
        rows = self.store.fetch_sync(_STATUS)  # the command line's: no loop runs there
        for row in rows:  # shown as UTC, to the second
            row["last_used"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["last_used"]))
        return {"sessions": rows}
