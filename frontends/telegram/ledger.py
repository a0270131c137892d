"""Telegram's tables in the engine's ledger (``cadenza.frontends.live.ledger``): messages
with buttons, and live messages, on record for clean-up after a crash.

They keep the names and columns they had before the engine was shared (``telegram_buttons``,
``telegram_live`` with the markup in ``html``), so a database written by an earlier version
opens as it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cadenza.frontends.live import ledger
from cadenza.frontends.live.ledger import LiveMessage
from cadenza.frontends.telegram.settings import FRONTEND

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Store

__all__ = ["MIGRATIONS", "Ledger", "LiveMessage"]

MARKUP_COLUMN = "html"
MIGRATIONS = ledger.migrations(FRONTEND, MARKUP_COLUMN)


class Ledger(ledger.Ledger):
    def __init__(self, store: Store, log: logging.Logger) -> None:
        super().__init__(store, log, FRONTEND, markup_column=MARKUP_COLUMN)
