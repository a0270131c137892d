"""Codex's side of approvals: ``codex exec`` never asks, and a command its read-only sandbox
refuses leaves no item in its stream (only the agent's own answer says what it could not do).
So when a Codex turn that ran read-only ends, the chat is offered **Run with write access**:
``/writable KEY`` runs the same prompt again in the same thread (the conversation's resume)
with ``sandbox = "workspace-write"`` for that one turn.

Measured with Codex 0.171.0 against the fake model: a resumed thread obeys ``exec -s
workspace-write … resume ID -`` (the adapter's ``sandbox`` option), as it does a root ``-s`` or
``-c sandbox_mode=…``; the next resume without it is read-only again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cadenza.api import COMPLETED, FAILED, Bot, ChatMessage, Config, StreamEvent, Turn

CODEX = "codex"
WIDER = "workspace-write"
# what widens Codex's sandbox for every turn already ([agent.codex] args)
_WIDE_ARGS = ("-s", "--sandbox", "--full-auto", "--dangerously-bypass-approvals-and-sandbox",
              "sandbox_mode")
NOTE = ("[Cadenza: the user gave you write access to the working directory for this turn. "
        "Do what you could not do before.]")
MAX_OFFERS = 1000  # offers kept (one per conversation's last read-only turn)


@dataclass(frozen=True)
class Offer:
    turn: Turn


class WriteAccessOffers:
    """Offers of one more run with write access, by key."""

    def __init__(self, config: Config) -> None:
        args = config.settings(f"agent.{CODEX}").values.get("args") or []
        self.always_wide = any(part in str(arg) for arg in args for part in _WIDE_ARGS)
        self.offers: dict[str, Offer] = {}

    def wanted(self, event: StreamEvent) -> bool:
        """Whether this ended turn earns an offer: Codex, read-only, not stopped."""
        turn = event.turn
        return (event.kind in (COMPLETED, FAILED) and turn.agent == CODEX
                and not self.always_wide and turn.options.get("sandbox") in (None, "read-only"))

    async def offer(self, bot: Bot, event: StreamEvent) -> None:
        key = secrets.token_hex(3)
        # one open offer per conversation: the newest replaces what is left of older ones
        for old, offer in list(self.offers.items()):
            if (offer.turn.chat, offer.turn.session) == (event.turn.chat, event.turn.session):
                del self.offers[old]
        while len(self.offers) >= MAX_OFFERS:
            del self.offers[next(iter(self.offers))]
        self.offers[key] = Offer(event.turn)
        await bot.notify(event.turn.chat, (
            "🔒 Codex ran in a read-only sandbox: what it could not write, it says above. "
            f"/writable {key} runs it again in the same conversation, with write access to "
            "its working directory for that one turn."),
            kind="approval", ask=key, buttons=[("✍ Run with write access", f"/writable {key}")],
            turn_id=event.turn.id, session=event.turn.session)

    async def cmd_writable(self, bot: Bot, message: ChatMessage, args: str) -> None:
        key = args.strip().lower()
        offer = self.offers.get(key)
        if offer is None or offer.turn.chat != message.chat:
            await bot.notify(message.chat, "Nothing to run again here with write access "
                             "(it was done, replaced by a later turn's offer, or Cadenza "
                             "restarted).", kind="error")
            return
        del self.offers[key]
        turn = offer.turn
        await bot.notify(message.chat, f"✍ running again with write access, asked by "
                         f"{message.user_name or message.user_id}", kind="approval",
                         answered=key)
        await bot.submit(message.chat, f"{NOTE}\n\n{turn.prompt}", turn.session,
                         user_id=message.user_id, options={"sandbox": WIDER})
