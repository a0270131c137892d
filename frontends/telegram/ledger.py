"""Messages with buttons on record, so a crash cannot leave a Stop button that does nothing,
nor a live message that says "working…" for ever.

A message is written down when it is sent with buttons (a turn's live message, a timeout
warning) and forgotten once its view has shown its end. A live message's record also keeps
the text it shows (without its status line), written before each edit that changes it, so
it can be finished after a crash. A clean shutdown shows every end first; after a crash or
``kill -9`` the records survive, and at the next start the buttons of those messages are
removed and each live message is edited to say its turn was interrupted (and whether it
resumes). Writes happen when a message is sent, when its text changes (at most one edit a
second per chat, coalesced) and when it is done; never per text delta.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Store


MIGRATIONS = [
    "CREATE TABLE telegram_buttons (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
    "PRIMARY KEY (chat_id, message_id))",
    "CREATE TABLE telegram_live (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
    "turn_id TEXT NOT NULL, html TEXT NOT NULL, plain TEXT NOT NULL, "
    "PRIMARY KEY (chat_id, message_id))",
]


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """A turn's live message as a previous run last showed it (status line left out)."""

    chat_id: int
    message_id: int
    turn_id: str
    html: str
    plain: str


class Ledger:
    def __init__(self, store: Store, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        store.migrate("telegram", MIGRATIONS)

    def add(self, chat_id: int, message_id: int) -> None:
        self._write("INSERT OR IGNORE INTO telegram_buttons VALUES (?, ?)",
                    [(chat_id, message_id)])

    def remember(self, live: LiveMessage) -> None:
        """What a turn's live message shows now."""
        self._write("INSERT OR REPLACE INTO telegram_live VALUES (?, ?, ?, ?, ?)",
                    [(live.chat_id, live.message_id, live.turn_id, live.html, live.plain)])

    def forget_live(self, chat_id: int, message_id: int) -> None:
        """The message is no longer a live one (its answer went on in the next message)."""
        self._write("DELETE FROM telegram_live WHERE chat_id = ? AND message_id = ?",
                    [(chat_id, message_id)])

    def remove(self, messages: Iterable[tuple[int, int]]) -> None:
        rows = list(messages)
        self._write("DELETE FROM telegram_buttons WHERE chat_id = ? AND message_id = ?", rows)
        self._write("DELETE FROM telegram_live WHERE chat_id = ? AND message_id = ?", rows)

    def left_over(self) -> list[tuple[int, int]]:
        """Messages a previous run left with buttons: (chat id, message id)."""
        rows = self.store.query("SELECT chat_id, message_id FROM telegram_buttons "
                                "ORDER BY chat_id, message_id")
        return [(row["chat_id"], row["message_id"]) for row in rows]

    def live_left_over(self) -> list[LiveMessage]:
        """Live messages a previous run could not finish."""
        rows = self.store.query("SELECT chat_id, message_id, turn_id, html, plain FROM "
                                "telegram_live ORDER BY chat_id, message_id")
        return [LiveMessage(**row) for row in rows]

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        try:
            self.store.executemany(sql, rows)
        except Exception as exc:  # a bookkeeping failure must not stop a delivery
            self.log.warning("telegram: could not record messages with buttons: %s", exc)
