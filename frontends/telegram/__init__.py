"""The Telegram frontend: long polling with aiogram 3, one live message per turn.

Modules, one job each: ``plugin`` (the hooks), ``settings`` (the ``[telegram]`` table),
``connection`` (the live link: client, polling task, outboxes), ``client`` (the aiogram
client, connecting, token redaction), ``polling`` (the getUpdates loop), ``inbound`` and
``addressing`` (updates to ``ChatMessage``s and button presses), ``auth`` (refusals),
``views`` (what a chat should show), ``markup`` and ``split`` (Telegram HTML, message-size
cuts), ``pacing`` (flood limits), ``egress`` (API calls and what their failures mean),
``outbox`` (per-chat delivery) and ``ledger`` (messages with buttons, for crash clean-up).
"""

from cadenza.frontends.telegram.plugin import TelegramFrontend

__all__ = ["TelegramFrontend"]
