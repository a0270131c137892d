"""cadenza-budget: a spending budget per chat and day for Cadenza.

Every finished turn adds what the agent says it cost (the terminal event's ``cost_usd``) to
its chat's spending for the day, in the store table ``budget_spending``. The chat is told what
the turn cost and what is left; at ``warn_at`` of the budget it is warned, and once the day's
budget is used, prompts are refused (through the ``on_inbound_message`` veto) until the day
ends in the configured time zone. Commands still pass, so ``/budget``, ``/stop`` and ``/help``
keep working.

Settings, in ``plugins.toml``::

    [budget]
    daily_usd = 5.0          # what one chat may spend a day, in US dollars
    warn_at = 0.8            # warn once this share of the budget is spent (0 to 1)
    timezone = "UTC"         # where the day ends: an IANA name such as "Europe/Berlin"

It imports only ``cadenza.api``, the stable plugin API.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from cadenza.api import (
    Bot,
    ChatMessage,
    ChatRef,
    PluginContext,
    StreamEvent,
    duration,
    hookimpl,
)

__version__ = "0.1.0"
CADENZA_PLUGIN_API_VERSION = 1

SETTINGS = ("daily_usd", "warn_at", "timezone")
MICROS = 1_000_000  # money is stored in millionths of a dollar: sums stay exact

metadata = sa.MetaData()
spending = sa.Table(
    "budget_spending",
    metadata,
    sa.Column("chat", sa.String(255), primary_key=True),  # frontend:chat_id, topics included
    sa.Column("day", sa.String(10), primary_key=True),  # ISO date in the budget's time zone
    sa.Column("spent_micros", sa.BigInteger, nullable=False),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),  # epoch seconds of the last turn
)

# Append-only: a released step is never edited, a change is a new step at the end.
MIGRATIONS = [
    "CREATE TABLE budget_spending ("
    " chat VARCHAR(255) NOT NULL,"
    " day VARCHAR(10) NOT NULL,"
    " spent_micros BIGINT NOT NULL,"
    " turns INTEGER NOT NULL,"
    " updated_at FLOAT NOT NULL,"
    " PRIMARY KEY (chat, day))",
]

DAY_OF_CHAT = sa.select(spending.c.spent_micros, spending.c.turns).where(
    spending.c.chat == sa.bindparam("of_chat"), spending.c.day == sa.bindparam("of_day"))

# What Cadenza's core takes for a command; mirrors its parser so the veto and the core agree.
_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


def money(usd: float) -> str:
    """``$5.00``, ``$0.12``, ``$0.0123``: small sums keep the digits that tell turns apart."""
    if usd == 0 or abs(usd) >= 0.1:
        return f"${usd:,.2f}"
    whole, _, decimals = f"{usd:.4f}".partition(".")
    return f"${whole}.{decimals[:2]}{decimals[2:].rstrip('0')}"


def budget_chat(chat: ChatRef) -> str:
    """The key a budget is kept under: the chat, with all its threads or topics."""
    return ChatRef(chat.frontend, chat.chat_id).key


def is_prompt(text: str) -> bool:
    """Whether a message would start agent work: plain text, ``@NAME PROMPT`` and
    ``/session NAME PROMPT``. Other commands (``/budget``, ``/stop``, ``/help``…) are not."""
    text = text.strip()
    found = _COMMAND.match(text)
    if not found:
        return bool(text)
    name, args = found.group(1).lower(), (found.group(2) or "").strip()
    if name != "session":
        return False
    first, _, rest = args.partition(" ")
    return first != "end" and bool(rest.strip())


class Budget:
    """The plugin: one instance per Cadenza run (``[plugins] budget = true``)."""

    def __init__(self, context: PluginContext) -> None:
        settings = context.settings
        settings.reject_unknown(SETTINGS)
        self.daily_usd = settings.number("daily_usd", 5.0)
        if self.daily_usd <= 0:
            raise settings.error("daily_usd", f"must be more than 0, not {self.daily_usd:g}")
        self.warn_at = settings.number("warn_at", 0.8, minimum=0)
        if self.warn_at > 1:
            raise settings.error(
                "warn_at", f"must be a share of the budget from 0 to 1, not {self.warn_at:g}")
        self.timezone = settings.string("timezone", "UTC")
        try:
            self.zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise settings.error(
                "timezone", f"unknown time zone {self.timezone!r}; use an IANA name such as "
                "'UTC' or 'Europe/Berlin'") from None
        self.default_agent = context.config.settings("agent").get("default", "auto", str)
        self.store = context.store
        self.clock = context.clock
        self.spawn = context.spawn
        self.bot: Bot | None = None
        self.usage: dict[str, float] = {}  # turn id → cost from its latest usage event
        self.store.migrate("budget", MIGRATIONS)
        # built once: a turn's cost is added in the database, whatever ran meanwhile
        self.add_turn = self.store.upsert(
            spending, {}, key=("chat", "day"), update=("updated_at",),
            update_with={"spent_micros": lambda new: spending.c.spent_micros + new.spent_micros,
                         "turns": lambda new: spending.c.turns + new.turns})

    # --- the day ----------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), self.zone)

    def day(self) -> date:
        return self.now().date()

    def today(self) -> str:
        """Today's key in the table: the date in the budget's time zone."""
        return self.day().isoformat()

    def reset_text(self) -> str:
        """When the day's budget starts afresh: ``00:00 UTC (in 3 h 12 min)``."""
        now = self.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), time(0), self.zone)
        left = midnight.timestamp() - now.timestamp()
        return f"{midnight:%H:%M} {midnight.tzname()} (in {duration(left)})"

    # --- the store --------------------------------------------------------------------

    async def spent(self, chat: str) -> tuple[float, int]:
        """What ``chat`` spent today, in dollars, and over how many turns."""
        row = await self.store.fetch_one(DAY_OF_CHAT, {"of_chat": chat, "of_day": self.today()})
        return (row["spent_micros"] / MICROS, row["turns"]) if row else (0.0, 0)

    async def add(self, chat: str, usd: float) -> tuple[float, float]:
        """Add one turn's cost to today's spending: (before, after), in dollars."""
        micros = round(usd * MICROS)
        day = self.today()
        async with self.store.transaction():  # the sum and the read of it, as one
            await self.store.execute(self.add_turn, {
                "chat": chat, "day": day, "spent_micros": micros, "turns": 1,
                "updated_at": self.clock.time()})
            row = await self.store.fetch_one(DAY_OF_CHAT, {"of_chat": chat, "of_day": day})
        after = row["spent_micros"] if row else micros
        return (after - micros) / MICROS, after / MICROS

    # --- hooks ------------------------------------------------------------------------

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("budget", self.cmd_budget,
                 help="today's spending in this chat against its daily budget")

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        self.bot = bot

    @hookimpl
    async def on_inbound_message(self, message: ChatMessage) -> str | None:
        if not is_prompt(message.text):
            return None
        spent, _ = await self.spent(budget_chat(message.chat))
        if spent < self.daily_usd:
            return None
        self.tell(message.chat,
                  f"💸 Today's budget for this chat is used: {money(spent)} of "
                  f"{money(self.daily_usd)}. Prompts are refused until it resets at "
                  f"{self.reset_text()}; /budget shows the details.",
                  kind="refusal")
        return f"the daily budget of {money(self.daily_usd)} is used ({money(spent)} spent)"

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> Awaitable[None] | None:
        # Called for every text chunk, so it is a plain function: only a terminal event with
        # a cost returns work to await (Cadenza awaits what a hook returns).
        cost = event.cost_usd
        if not event.terminal:
            if cost is not None:
                self.usage[event.turn.id] = cost
            return None
        # a stopped turn's terminal event may not carry the cost its usage event reported
        usage = self.usage.pop(event.turn.id, None)
        cost = cost if cost is not None else usage
        if not cost or cost < 0:
            return None
        return self.turn_ended(event.turn.chat, cost)

    async def turn_ended(self, chat: ChatRef, cost: float) -> None:
        before, after = await self.add(budget_chat(chat), cost)
        text = (f"💰 {money(cost)} this turn · {money(after)} of {money(self.daily_usd)} "
                f"spent today · {money(max(self.daily_usd - after, 0))} left")
        if after >= self.daily_usd:
            text += (f"\n💸 Today's budget is used: new prompts are refused until "
                     f"{self.reset_text()}.")
        elif before < self.warn_at * self.daily_usd <= after:
            text += f"\n⚠️ {after / self.daily_usd:.0%} of today's budget is used."
        self.tell(chat, text, kind="info", spent_usd=after, cost_usd=cost)

    async def cmd_budget(self, bot: Bot, message: ChatMessage, args: str) -> None:
        spent, turns = await self.spent(budget_chat(message.chat))
        left = max(self.daily_usd - spent, 0)
        state = ("used: prompts are refused until it resets" if spent >= self.daily_usd
                 else "resets")
        await bot.notify(
            message.chat,
            f"💰 Budget today ({self.today()}): {money(spent)} of "
            f"{money(self.daily_usd)} spent over {turns} turn{'s' * (turns != 1)}, "
            f"{money(left)} left. The budget {state} at {self.reset_text()}.",
            kind="status", spent_usd=spent, left_usd=left, turns=turns)

    def tell(self, chat: ChatRef, text: str, kind: str, **data: Any) -> None:
        """A notice to the chat, sent in a task of its own: the hook does not wait on the
        frontend, and a slow frontend never makes this plugin's veto time out."""
        if self.bot is not None:
            self.spawn(self.bot.notify(chat, text, kind, **data), "notice")

    # --- the command line -------------------------------------------------------------

    @hookimpl
    def report_status(self) -> dict[str, Any]:
        today = self.today()
        rows = self.store.fetch_sync(
            sa.select(spending).where(spending.c.day == today)
            .order_by(spending.c.spent_micros.desc()))
        return {"budget": [
            {"chat": row["chat"], "day": row["day"], "turns": row["turns"],
             "spent_usd": row["spent_micros"] / MICROS,
             "left_usd": max(self.daily_usd - row["spent_micros"] / MICROS, 0),
             "refusing": row["spent_micros"] / MICROS >= self.daily_usd}
            for row in rows
        ]}

    @hookimpl
    def doctor_checks(self) -> list[tuple[bool, str]]:
        checks = [(True, f"budget: {money(self.daily_usd)} a day per chat, a warning at "
                         f"{self.warn_at:.0%}, days end at midnight {self.timezone}")]
        try:
            rows = self.store.fetch_sync(
                sa.select(sa.func.count().label("chats")).select_from(spending)
                .where(spending.c.day == self.today()))
        except Exception as exc:  # a database this version cannot read: say so, not crash
            checks.append((False, f"budget: cannot read its table budget_spending: {exc}"))
        else:
            count = rows[0]["chats"] if rows else 0
            checks.append((True, f"budget: {count} chat{'s' * (count != 1)} spent today"))
        if self.default_agent == "command":
            checks.append((True, "budget: the command agent reports no cost, so its turns "
                                 "count as $0"))
        return checks
