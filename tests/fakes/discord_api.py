"""A fake Discord REST API and gateway for driving the real discord.py client in tests.

The server speaks REST at ``http://127.0.0.1:PORT/api/v10`` and the gateway at
``ws://127.0.0.1:PORT/gateway`` (zlib-stream, as discord.py asks) the way discord.py 2 uses
them. It keeps users, guilds (roles, members, channels, permission overwrites, threads), DMs
and messages in memory, enforces Discord's limits (2,000 characters, counted in code points
as Discord's API counts them; uploads of 10 MiB, a bot's limit without boosts, else 413 with
code 40005 (``max_upload_bytes``); button layouts; per-route buckets with X-RateLimit-*
headers and the global 50 requests/s) and lets tests push users' messages (with files,
served at their ``url`` like Discord's CDN, each fetch in ``downloads``), run slash commands,
press buttons and script faults.

Typical use::

    async with FakeDiscordServer() as server:          # discord.py now points at it
        server.add_guild(GUILD, channels={CHANNEL: "general"}, members=[USER])
        client = MyClient(intents=intents, guild_ready_timeout=0.05)
        async with running(client, server.token):
            server.push_message(CHANNEL, USER, "hi", mention_bot=True)
            await server.wait_for(lambda: server.texts(CHANNEL))

Two discord.py settings keep tests fast: ``guild_ready_timeout`` (it waits 2 s after the
last GUILD_CREATE before on_ready) and an empty ``before_identify_hook`` (it sleeps 5 s
before every IDENTIFY but the first, e.g. after INVALID_SESSION).

Where to look:
- REST: ``SEND``, ``EDIT``, ``DELETE``, ``HISTORY``, ``TYPING``, ``OPEN_DM``, threads,
  ``GLOBAL_COMMANDS``/``GUILD_COMMANDS``, ``CALLBACK``, ``FOLLOWUP`` and the
  ``@original`` routes; every call is in ``server.calls`` (route key, path parameters,
  query, body or ``payload_json``, files, status, response, rate-limit headers, outcome).
- Users' side: ``push_message`` / ``push_dm`` (mentions, replies, attachments: fetches in
  ``downloads``),
  ``push_edit``, ``push_delete``, ``run_command``, ``press_button``, ``dispatch``.
- What the bot did: ``messages``/``bot_messages``/``texts`` per channel; a
  ``StoredMessage`` has ``history`` (content after each edit), ``revisions``, ``buttons``,
  ``attachments`` (bytes kept), ``pings`` (who was notified, after allowed_mentions),
  ``nonce``; ``typing_in``, ``commands``, ``interactions`` (callbacks, followups).
- Faults: ``fail_next(route, Fault.server_error() / .error() / .rate_limited() / .drop(
  after_processing=True) / .hang())``, ``rate_limit_next``; gateway ``close_gateway(code)``,
  ``drop_gateway()`` (RESUME with the missed dispatches replayed), ``send_reconnect()``,
  ``invalidate_session()``, ``gateway.ack_heartbeats``, ``gateway.accept_connections``;
  ``take_down``/``bring_up``/``restart`` for the whole server.
- Pointing discord.py elsewhere (and a frontend's ``api_base``): ``tests.fakes.discord.pointing``.

Not modelled: voice, reactions, pins, embeds' contents (passed through), select menus and
modal submissions from the user's side, autocomplete, components v2 layouts (accepted
unchecked), ETF encoding and zstd-stream (plain JSON text frames instead), the gateway's
120 events/min send limit, identify concurrency and heartbeat timeouts (the fake never
closes a silent connection), session expiry, sharding beyond one shard, archived threads,
slowmode and Cloudflare's invalid-request ban.
The parts live in the ``tests.fakes.discord`` package; this module is the one to import.
"""

from tests.fakes.discord.gateway import (
    CLOSE_REASONS,
    DISPATCH,
    HEARTBEAT,
    HEARTBEAT_ACK,
    HELLO,
    IDENTIFY,
    INVALID_SESSION,
    RECONNECT,
    RESUME,
    GatewayFrame,
    GatewaySession,
)
from tests.fakes.discord.limits import (
    APPLICATION,
    CALLBACK,
    DELETE,
    DELETE_RESPONSE,
    EDIT,
    EDIT_RESPONSE,
    FOLLOWUP,
    GATEWAY_BOT,
    GET_CHANNEL,
    GET_ME,
    GET_MESSAGE,
    GET_RESPONSE,
    GLOBAL_COMMANDS,
    GUILD_COMMANDS,
    HISTORY,
    OAUTH_APPLICATION,
    OPEN_DM,
    SEND,
    START_THREAD,
    START_THREAD_FROM_MESSAGE,
    TYPING,
    Fault,
    RateLimits,
    RouteLimit,
)
from tests.fakes.discord.model import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    GUILD_MEMBERS,
    GUILD_PRESENCES,
    LOADING,
    MAX_CONTENT,
    MAX_UPLOAD_BYTES,
    MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    ApiError,
    Attachment,
    Channel,
    Guild,
    InteractionRecord,
    Member,
    Pings,
    Revision,
    Role,
    StoredMessage,
    Upload,
    User,
)
from tests.fakes.discord.pointing import adopt_gateway, discord_endpoints, running
from tests.fakes.discord.server import (
    DEFAULT_BOT_ID,
    DEFAULT_OWNER_ID,
    DEFAULT_TOKEN,
    ApiCall,
    FakeDiscordServer,
    token_for,
)

__all__ = [
    "ALL_PERMISSIONS", "APPLICATION", "BOT_PERMISSIONS", "CALLBACK", "CLOSE_REASONS",
    "DEFAULT_BOT_ID", "DEFAULT_OWNER_ID", "DEFAULT_TOKEN", "DELETE", "DELETE_RESPONSE",
    "DISPATCH", "EDIT", "EDIT_RESPONSE", "EPHEMERAL", "EVERYONE_PERMISSIONS", "FOLLOWUP",
    "GATEWAY_BOT", "GET_CHANNEL", "GET_ME", "GET_MESSAGE", "GET_RESPONSE", "GLOBAL_COMMANDS",
    "GUILD_COMMANDS", "GUILD_MEMBERS", "GUILD_PRESENCES", "HEARTBEAT", "HEARTBEAT_ACK", "HELLO",
    "HISTORY", "IDENTIFY", "INVALID_SESSION", "LOADING", "MAX_CONTENT", "MAX_UPLOAD_BYTES",
    "MESSAGE_CONTENT", "OAUTH_APPLICATION", "OPEN_DM", "PRIVILEGED_INTENTS", "RECONNECT",
    "RESUME", "SEND", "START_THREAD", "START_THREAD_FROM_MESSAGE", "TYPING", "ApiCall",
    "ApiError", "Attachment", "Channel", "FakeDiscordServer", "Fault", "GatewayFrame",
    "GatewaySession", "Guild", "InteractionRecord", "Member", "Pings", "RateLimits", "Revision",
    "Role", "RouteLimit", "StoredMessage", "Upload", "User", "adopt_gateway",
    "discord_endpoints", "running", "token_for",
]
