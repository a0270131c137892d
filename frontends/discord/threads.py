"""A named session started in a guild text channel gets a public thread of its own.

The frontend learns of the session from the core's ``on_turn_accepted`` (the turn names its
session, and the hook is awaited before the turn starts), and opens the thread then, named
after the session. The core keeps the session under the channel it was started in (``@NAME
PROMPT`` there still continues it); what the frontend does is put it where a Discord user
looks: each of its turns is shown in the thread (``home``: the turn, addressed to the thread,
which is a chat of its own), and a prompt sent to the bot in the thread continues the session
(``route``). In DMs and in threads no thread is opened. When the thread cannot be opened (no
Create Public Threads, Discord down), the turn runs in the channel and the caller gets a
one-line notice to show there; the next turn of the session tries again.

Which thread belongs to which session is kept in the store (``discord_session_threads``), so
turns resumed after a restart still show in their thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from cadenza import api
from cadenza.api import ChatMessage, ChatRef, Turn
from cadenza.frontends.discord.settings import FRONTEND
from sqlalchemy import Column, Integer, MetaData, Table, Text, select

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Store

THREAD_NAME_MAX = 100  # Discord's limit for a thread's name
OPEN_TIMEOUT = 5.0  # seconds: within the core's hook time limit, so the notice still goes out

metadata = MetaData()
threads_table = Table(
    "discord_session_threads", metadata,
    Column("chat", Text, primary_key=True),  # the channel's chat key
    Column("session", Text, primary_key=True),
    Column("thread_id", Integer, nullable=False),
)
MIGRATIONS = ["CREATE TABLE discord_session_threads (chat TEXT NOT NULL, session TEXT NOT NULL, "
              "thread_id INTEGER NOT NULL, PRIMARY KEY (chat, session))"]


class SessionThreads:
    def __init__(self, client: discord.Client, store: Store, log: logging.Logger) -> None:
        self.client = client
        self.store = store
        self.log = log
        store.migrate("discord_session_threads", MIGRATIONS)
        self._threads: dict[tuple[str, str], ChatRef] = {}  # (channel key, session) → thread
        self._sessions: dict[str, tuple[ChatRef, str]] = {}  # thread id → (channel, session)

    async def load(self) -> None:
        for row in await self.store.fetch(select(threads_table)):
            self._remember(ChatRef.from_key(row["chat"]), row["session"], str(row["thread_id"]))

    def home(self, turn: Turn) -> Turn:
        """The turn as it is shown: in its session's thread, when the session has one."""
        thread = self._threads.get((turn.chat.key, turn.session)) if turn.session else None
        return turn if thread is None else replace(turn, chat=thread)

    def route(self, message: ChatMessage) -> ChatMessage:
        """A prompt sent in a session's thread continues that session (commands and
        ``@NAME`` prompts are the thread's own)."""
        home = self._sessions.get(message.chat.thread_id or "")
        if home is None or message.text.lstrip().startswith(("/", "@")):
            return message
        channel, session = home
        return replace(message, chat=channel, text=f"@{session} {message.text}")

    async def accepted(self, turn: Turn) -> str | None:
        """Open the thread of a named session's turn in a guild text channel, if it has none
        yet; returns a notice for the channel when that failed."""
        chat, session = turn.chat, turn.session
        if (chat.frontend != FRONTEND or not session or chat.thread_id is not None
                or (chat.key, session) in self._threads or not chat.chat_id.isdigit()):
            return None
        channel = self.client.get_channel(int(chat.chat_id))
        if not isinstance(channel, discord.TextChannel):
            return None  # a DM (or a kind of channel that has no threads)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                thread = await channel.create_thread(
                    name=session[:THREAD_NAME_MAX], type=discord.ChannelType.public_thread,
                    reason=f"Cadenza session {session}")
        except Exception as exc:
            why = ("the bot lacks Create Public Threads here"
                   if isinstance(exc, discord.Forbidden) else "Discord did not answer"
                   if isinstance(exc, TimeoutError) else api.redact(str(exc))[:200])
            self.log.warning("discord: could not open a thread for session %s in channel %s: "
                             "%s", session, chat.chat_id, why)
            return f"Could not open a thread for session {session} ({why}); it runs here."
        self._remember(chat, session, str(thread.id))
        statement = self.store.upsert(threads_table, {}, key=["chat", "session"],
                                      update=["thread_id"])
        try:
            await self.store.execute(statement, {"chat": chat.key, "session": session,
                                                 "thread_id": thread.id})
        except Exception as exc:  # shown in the thread now; after a restart, in the channel
            self.log.warning("discord: could not record the thread of session %s: %s",
                             session, exc)
        return None

    def _remember(self, chat: ChatRef, session: str, thread_id: str) -> None:
        self._threads[(chat.key, session)] = ChatRef(FRONTEND, chat.chat_id, thread_id)
        self._sessions[thread_id] = (chat, session)
