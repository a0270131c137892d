"""Telegram's style for the engine's views (``cadenza.frontends.live.views``): Telegram HTML,
within 4,096 UTF-16 code units a message.

No aiogram here: the plugin builds views before it connects, and ``cadenza plugins list``
builds the plugin too.
"""

from __future__ import annotations

from cadenza.api import Turn
from cadenza.frontends.live import views
from cadenza.frontends.live.split import UTF16
from cadenza.frontends.telegram.markup import HTML

MAX_MESSAGE = 4096  # UTF-16 code units of visible text, after the HTML is parsed
STYLE = views.Style(HTML, MAX_MESSAGE, UTF16)
TEXT_BUDGET = STYLE.text_budget  # answer text in one message, beside label and status


class TurnView(views.TurnView):
    """A turn's view in Telegram's style."""

    def __init__(self, turn: Turn) -> None:
        super().__init__(turn, STYLE)
