"""The approvals plugin's tables: the rules each conversation allowed, and every request the
chat was asked (open until answered, so a restart never answers one by itself)."""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, Table, Text, bindparam, delete, select, update

MIGRATIONS = [
    """
    CREATE TABLE approval_rules (
        chat TEXT NOT NULL,
        session TEXT NOT NULL,
        rule TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (chat, session, rule)
    );
    CREATE TABLE approval_requests (
        key TEXT PRIMARY KEY,
        turn_id TEXT NOT NULL,
        chat TEXT NOT NULL,
        session TEXT NOT NULL,
        tool TEXT NOT NULL,
        input TEXT NOT NULL,
        state TEXT NOT NULL,
        asked_at REAL NOT NULL,
        answered_at REAL,
        answered_by TEXT
    );
    CREATE INDEX approval_requests_state ON approval_requests (state)
    """,
]

metadata = MetaData()
rules_table = Table(
    "approval_rules", metadata,
    Column("chat", Text, primary_key=True),
    Column("session", Text, primary_key=True),
    Column("rule", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
)
requests_table = Table(
    "approval_requests", metadata,
    Column("key", Text, primary_key=True),
    Column("turn_id", Text, nullable=False),
    Column("chat", Text, nullable=False),
    Column("session", Text, nullable=False),
    Column("tool", Text, nullable=False),
    Column("input", Text, nullable=False),
    Column("state", Text, nullable=False),  # open | allowed | denied | withdrawn | lapsed
    Column("asked_at", Float, nullable=False),
    Column("answered_at", Float),
    Column("answered_by", Text),
)
_r, _q = rules_table.c, requests_table.c
_CONVERSATION = (_r.chat == bindparam("of_chat")) & (_r.session == bindparam("of_session"))
RULES = select(_r.rule).where(_CONVERSATION)
FORGET = delete(rules_table).where(_CONVERSATION)
ASKED = requests_table.insert()
SETTLED = update(requests_table).where(_q.key == bindparam("of_key")).values(
    state=bindparam("to_state"), answered_at=bindparam("at"), answered_by=bindparam("by"))
OPEN = select(_q.key, _q.chat).where(_q.state == "open")
OPEN_BY_CHAT = select(_q.chat, _q.session, _q.key, _q.tool, _q.input, _q.asked_at).where(
    _q.state == "open").order_by(_q.chat, _q.asked_at)
LAPSED = update(requests_table).where(_q.state == "open").values(state="lapsed")
