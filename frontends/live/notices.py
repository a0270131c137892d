"""Noticed when it matters: a short new message when a long turn ends or a turn waits for
the user.

A live message is edited as the answer arrives, and edits do not notify a phone: someone who
put the phone away during a long turn would never learn that it ended. So when a turn that
ran longer than ``notify_after`` seconds ends (default 30; 0 switches this off), the chat
gets a short new message saying how it ended and which prompt it was; and when a turn waits
for the user's answer (a stream event whose ``data`` has ``awaits_user`` true, such as a
question or an approval request), the chat gets one at once. A turn the user stopped, or one
interrupted by a shutdown, gets none (the first was watched, the second is announced when it
resumes). A timeout warning is already a message of its own. The message is for the person
who sent the prompt (``Outgoing.notify``): in a Discord server it mentions them, since a new
message there notifies only those who follow every message.
"""

from __future__ import annotations

from cadenza import api
from cadenza.api import StreamEvent
from cadenza.frontends.live.views import Style, TextView, TurnView
from cadenza.frontends.text import ended_text, outcome_text, waiting_text

AWAITS_USER = "awaits_user"  # StreamEvent.data key: the turn waits for the user's answer
QUIET_ENDS = frozenset({api.CANCELLED, api.INTERRUPTED})


class Pings:
    def __init__(self, style: Style, notify_after: float) -> None:
        self.style = style
        self.notify_after = notify_after  # seconds; 0: off

    def after(self, view: TurnView, event: StreamEvent) -> TextView | None:
        """The short new message ``event`` calls for, if any."""
        if self.notify_after <= 0:
            return None
        if event.terminal:
            elapsed = event.data.get("elapsed")
            if (event.kind in QUIET_ENDS or not isinstance(elapsed, int | float)
                    or elapsed <= self.notify_after):
                return None
            outcome = outcome_text(event, view.answer)
            return TextView(view.chat, ended_text(event, outcome), self.style,
                            notify=view.turn.user_id)
        if event.data.get(AWAITS_USER):
            return TextView(view.chat, waiting_text(event), self.style,
                            notify=view.turn.user_id)
        return None
