"""Real agents through the Telegram frontend: Telegram fake → Cadenza → real CLI → fake model.

The real App runs in-process with the Telegram frontend on, its ``api_base`` pointed at
``FakeTelegramServer`` (real aiogram, real sockets), and the agent set to the pinned Claude
Code or Codex CLI, contained and offline as ``real_agent_chats`` describes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("real_agent_chats")
pytest_plugins = ["real_agent_chats"]  # its fixtures: binaries, model

from real_agent_chats import (  # noqa: E402
    STREAMED_PROMPT,
    assert_offline,
    assert_streamed_answer,
    contain,
)
from test_real_agents import AGENTS, ModelAPI  # noqa: E402

from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer, StoredMessage  # noqa: E402

pytestmark = pytest.mark.agent_cli

USER = 42
DONE = "✅ done"
TELEGRAM = {  # paces shrunk as in test_telegram.py: Telegram's limits only slow a test down
    "edit_interval": "0.05", "group_messages_per_minute": "1200", "messages_per_second": "200",
    "request_timeout": "2", "poll_timeout": "1", "backoff_min": "0.05", "backoff_max": "0.3",
    "flush_timeout": "3",
}


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(max_poll_wait=0.5) as fake:
        yield fake


def edits_showing(telegram: FakeTelegramServer, message: StoredMessage, needle: str) -> list[Any]:
    return [call for call in telegram.calls_to("editMessageText")
            if call.ok and call.params.get("message_id") == message.message_id
            and needle in call.params.get("text", "")]


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_streamed_answer_with_a_tool_call_reaches_telegram(
        agent: str, binaries: dict[str, Path], model: ModelAPI,
        telegram: FakeTelegramServer, start_app: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    contained = contain(agent, binaries, model, tmp_path, monkeypatch,
                        ("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN))
    settings = {"api_base": f'"{telegram.base_url}"', "allowed_users": f"[{USER}]", **TELEGRAM}
    h = await start_app(contained.plugins_toml("telegram", settings))

    telegram.push_text(USER, USER, STREAMED_PROMPT)
    await telegram.wait_for(lambda: any(DONE in m.text for m in telegram.bot_messages(USER)),
                            timeout=20)

    (message,) = telegram.bot_messages(USER)  # one live message, edited as the answer came
    assert_streamed_answer(agent, message.history, message.text,
                           lambda part: edits_showing(telegram, message, part)[0].at)
    assert message.reply_markup is None  # the Stop button went with the end
    (end,) = h.recorder.terminals()
    assert end.kind == "completed" and end.turn.prompt == STREAMED_PROMPT
    assert_offline(model, agent)
