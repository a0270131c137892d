"""Pointing discord.py at another Discord: the fake, or a REST proxy (a frontend's ``api_base``).

discord.py has no per-client endpoint setting. Two class attributes decide where it goes:

- ``discord.http.Route.BASE`` (``https://discord.com/api/v10``): every REST call, webhooks
  and interaction callbacks included, is ``Route.BASE + path``, read when the Route is built.
- ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (``wss://gateway.discord.gg/``): a
  plain ``discord.Client`` connects there first (only AutoShardedClient asks
  ``GET /gateway/bot``) and again after an INVALID_SESSION; RESUMEs go to the READY's
  ``resume_gateway_url``, which the fake sets to itself.

A frontend with an ``api_base`` setting does what ``discord_endpoints(api_base)`` plus
``adopt_gateway(client)`` do here: set ``Route.BASE = api_base`` before ``login()``, then in
``setup_hook`` (after login, before the gateway connects) ask that API for its gateway with
``GET /gateway/bot`` and set ``DEFAULT_GATEWAY`` to the answer. Against real Discord (or a
plain REST proxy) the answer is ``wss://gateway.discord.gg``; against the fake, its own
``ws://127.0.0.1:PORT/gateway``. Both attributes are process-wide: one Discord per process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


@contextlib.contextmanager
def discord_endpoints(api_base: str, gateway_url: str | None = None) -> Iterator[None]:
    """discord.py's REST calls go to ``api_base`` (e.g. ``http://127.0.0.1:PORT/api/v10``)
    and, if given, its first gateway connection to ``gateway_url``; both restored after."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_base.rstrip("/")
    if gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


async def adopt_gateway(client: discord.Client) -> str:
    """Connect where the API says its gateway is (``GET /gateway/bot``); call from
    ``setup_hook``. Returns the URL."""
    _, url, _ = await client.http.get_bot_gateway()
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    return url


@contextlib.asynccontextmanager
async def running(client: discord.Client, token: str, *,
                  timeout: float = 10.0) -> AsyncIterator[discord.Client]:
    """``client.start(token)`` in a task until ``on_ready``; closed on exit. What ``start``
    raises before ready (LoginFailure, PrivilegedIntentsRequired, ...) is raised here.
    Pass ``guild_ready_timeout`` small (e.g. 0.05) to the client: discord.py waits that
    long after the last GUILD_CREATE before on_ready."""
    task = asyncio.create_task(client.start(token))
    try:
        async with asyncio.timeout(timeout):
            while not client.is_ready():
                if task.done():
                    task.result()
                    raise RuntimeError("client.start() returned before the client was ready")
                await asyncio.sleep(0.005)
        yield client
    finally:
        await client.close()
        if not task.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 5.0)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a failure after close is not the test's
