"""Who may use the bot, and telling the others politely, once an hour at most.

``Access`` holds the allowlist in force; ``cadenza`` reloads it on SIGHUP without a restart
(``on_config_reload``), and every check reads the current one. ``Refusals``, the engine's,
decides when a stranger hears back: once per user an hour, a few a minute all together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadenza.frontends.live.refusals import Refusals

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.frontends.telegram.settings import Allowlist


def refusal_text(user_id: str) -> str:
    return ("Sorry, this bot only works for the people its operator allowed. Your Telegram "
            f"user id is {user_id}: if you should have access, ask the operator to add it to "
            "[telegram] allowed_users.")


class Access:
    """The allowlist in force. Whoever asks treats a failure to answer as a refusal."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist

    def allows(self, user_id: str) -> bool:
        return self.allowlist.allows(user_id) is True

    def replace(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist


__all__ = ["Access", "Refusals", "refusal_text"]
