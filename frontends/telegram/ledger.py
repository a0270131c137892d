"""Messages with buttons on record, so a crash cannot leave a Stop button that does nothing.

A message is written down when it is sent with buttons (a turn's live message, a timeout
warning) and forgotten once its view has shown its end. A clean shutdown shows every end
first; after a crash or ``kill -9`` the records survive, and at the next start the buttons
of those messages are removed. Two writes per such message, never one per edit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # internal types; plugins use core.api at run time
    from core.api import Store


MIGRATIONS = [
    "CREATE TABLE telegram_buttons (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
    "PRIMARY KEY (chat_id, message_id))",
]


class Ledger:
    def __init__(self, store: Store, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        store.migrate("telegram", MIGRATIONS)

    def add(self, chat_id: int, message_id: int) -> None:
        self._write("INSERT OR IGNORE INTO telegram_buttons VALUES (?, ?)",
                    [(chat_id, message_id)])

    def remove(self, messages: Iterable[tuple[int, int]]) -> None:
        self._write("DELETE FROM telegram_buttons WHERE chat_id = ? AND message_id = ?",
                    list(messages))

    def left_over(self) -> list[tuple[int, int]]:
        """Messages a previous run left with buttons: (chat id, message id)."""
        rows = self.store.query("SELECT chat_id, message_id FROM telegram_buttons "
                                "ORDER BY chat_id, message_id")
        return [(row["chat_id"], row["message_id"]) for row in rows]

    def _write(self, sql: str, rows: list[tuple[int, int]]) -> None:
        if not rows:
            return
        try:
            self.store.executemany(sql, rows)
        except Exception as exc:  # a bookkeeping failure must not stop a delivery
            self.log.warning("telegram: could not record messages with buttons: %s", exc)
