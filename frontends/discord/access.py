"""Who may use the bot, as checked at ingress and again by the core's veto.

``Access`` holds the allowlist in force (reloaded on SIGHUP) and remembers who was let in by
a role (a ``ChatMessage`` carries no roles, so the veto and ``authorize`` ask here). Refusals
are the engine's (one per user an hour, a few a minute overall).
"""

from __future__ import annotations

from cadenza.frontends.discord.settings import Allowlist
from cadenza.frontends.live.refusals import Refusals

__all__ = ["Access", "Refusals", "refusal_text"]


def refusal_text(user_id: str) -> str:
    return ("Sorry, this bot only works for the people its operator allowed. Your Discord "
            f"user id is {user_id}: if you should have access, ask the operator to add it to "
            "[discord] allowed_users.")


class Access:
    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        self._by_role: dict[str, str] = {}  # user id → guild id they were let in by a role

    def replace(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        self._by_role.clear()  # roles are checked again at the next message

    def admit(self, user_id: str, guild_id: str | None, role_ids: set[str]) -> bool:
        allowed = self.allowlist.allows_member(user_id, guild_id, role_ids) is True
        if allowed and not self.allowlist.allows_user(user_id) and guild_id is not None:
            self._by_role[user_id] = guild_id
        elif not allowed:
            self._by_role.pop(user_id, None)
        return allowed

    def allows(self, user_id: str) -> bool:
        """For the veto and queued turns: on the list, or let in by a role in this run."""
        if self.allowlist.allows_user(user_id):
            return True
        guild = self._by_role.get(user_id)
        return guild is not None and guild in self.allowlist.guilds
