"""The live-message engine every chat frontend shares: what a chat should show, and getting it
there within the platform's limits, whatever the platform answers.

A frontend provides a ``Transport`` (its API calls, markup, limits, addressing and how its
errors classify; see ``transport`` for the protocol) and its ingress; the engine does the rest.
Modules, one job each:

- ``transport``: the ``Transport`` protocol, ``Limits``, ``Outgoing`` and the errors a
  transport raises;
- ``views``: what a chat should show, as data (a turn's live message, notices, warnings,
  documents), written in a transport's ``Style``;
- ``split``: cutting text into messages at readable places, in the platform's units;
- ``pacing``: token buckets per room, per group and overall, so the platform never says 429;
- ``retry``: backoff for calls that failed;
- ``outbox``: one room's deliveries, reconciling its views with what it shows;
- ``ledger``: messages with buttons and live messages on record, for clean-up after a crash;
- ``engine``: a frontend's outboxes, that clean-up, and delivering what is owed at shutdown;
- ``notices``: a short new message when a long turn ends or a turn waits for the user;
- ``holding``: messages held back a moment so that pieces of one thing become one prompt;
- ``paste``: a long paste split by the chat client merged back into one prompt;
- ``reachability``: whether the platform answers, so chats catch up at once after an outage;
- ``frontend``: the rendering hooks (stream events, warnings, lifecycle, recovery, notices).
"""

from cadenza.frontends.live.engine import Engine
from cadenza.frontends.live.frontend import LiveFrontend
from cadenza.frontends.live.paste import Pastes
from cadenza.frontends.live.retry import RetryPolicy
from cadenza.frontends.live.transport import Limits, Markup, Outgoing, Rate, Transport
from cadenza.frontends.live.views import Style

__all__ = ["Engine", "Limits", "LiveFrontend", "Markup", "Outgoing", "Pastes", "Rate",
           "RetryPolicy", "Style", "Transport"]
