"""Real agents through the Discord frontend: Discord fake → Cadenza → real CLI → fake model.

The real App runs in-process with the Discord frontend on, its ``api_base`` pointed at
``FakeDiscordServer`` (real discord.py, real sockets: REST and the gateway), and the agent set
to the pinned Claude Code or Codex CLI, contained and offline as ``real_agent_chats``
describes. The fake's rate limits are off here, as the Telegram fake's flood limits are in
test_real_agents_telegram.py: they only slow a test down (tests/test_discord.py and
bench/discord.py run under them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("real_agent_chats")
pytest_plugins = ["real_agent_chats"]  # its fixtures: binaries, model

from real_agent_chats import (  # noqa: E402
    DONE,
    STREAMED_PROMPT,
    assert_offline,
    assert_streamed_answer,
    contain,
)
from test_real_agents import AGENTS, ModelAPI  # noqa: E402

from tests.fakes.discord_api import (  # noqa: E402
    DEFAULT_TOKEN,
    EDIT,
    SEND,
    FakeDiscordServer,
    StoredMessage,
)

pytestmark = pytest.mark.agent_cli

USER = 900_000_000_000_000_010
DISCORD = {"edit_interval": "0.05", "backoff_min": "0.05", "backoff_max": "0.3",
           "flush_timeout": "3"}


@pytest.fixture
async def discord_server() -> AsyncIterator[FakeDiscordServer]:
    async with FakeDiscordServer(enforce_limits=False) as fake:
        yield fake


def first_shown(server: FakeDiscordServer, message: StoredMessage, needle: str) -> float:
    """When the send or an edit of ``message`` first showed ``needle``."""
    return next(call.at for call in server.calls
                if call.ok and call.route in (SEND, EDIT)
                and str(message.id) in (call.params.get("message_id"), call.response.get("id"))
                and needle in call.response.get("content", ""))


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_streamed_answer_with_a_tool_call_reaches_discord(
        agent: str, binaries: dict[str, Path], model: ModelAPI,
        discord_server: FakeDiscordServer, start_app: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = discord_server
    contained = contain(agent, binaries, model, tmp_path, monkeypatch,
                        ("DISCORD_BOT_TOKEN", DEFAULT_TOKEN))
    settings = {"api_base": f'"{server.api_base}"', "allowed_users": f'["{USER}"]', **DISCORD}
    h = await start_app(contained.plugins_toml("discord", settings))
    # connected and ready (on_ready): before it, the answer would wait for the connection
    await asyncio.wait_for(h.app.loader.instances["discord"].engine.ready.wait(), 10)

    server.push_dm(USER, STREAMED_PROMPT)
    channel = server.dm_channel(USER).id
    await server.wait_for(lambda: any(DONE in m.content for m in server.bot_messages(channel)),
                          timeout=20)

    (message,) = server.bot_messages(channel)  # one live message, edited as the answer came
    assert_streamed_answer(agent, message.history, message.content,
                           lambda part: first_shown(server, message, part),
                           activity=lambda line: f"*{line}*")  # Discord Markdown: italics
    assert message.buttons == []  # the Stop button went with the end
    assert all(not m.pings.users and not m.pings.everyone for m in server.bot_messages(channel))
    (end,) = h.recorder.terminals()
    assert end.kind == "completed" and end.turn.prompt == STREAMED_PROMPT
    assert_offline(model, agent)
