"""The Telegram frontend: long polling with aiogram 3, one live message per turn.

What a chat shows and how it gets there is the shared live-message engine's
(``cadenza.frontends.live``); this package is what is Telegram's. Modules, one job each:
``plugin`` (the hooks), ``settings`` (the ``[telegram]`` table), ``connection`` (the live link:
client, polling task, the engine), ``client`` (the aiogram client, connecting, token
redaction), ``polling`` (the getUpdates loop), ``inbound`` and ``addressing`` (updates to
``ChatMessage``s and button presses; chats, topics and groups), ``auth`` (refusals),
``forwards`` (forwarded messages as context), ``egress`` (the engine's transport: Bot API
calls, what their failures mean, Telegram's limits), ``markup`` (Telegram HTML), ``views``
(Telegram's style for the engine's views) and ``ledger`` (its tables in the engine's).
"""

from cadenza.frontends.telegram.plugin import TelegramFrontend

__all__ = ["TelegramFrontend"]
