"""Tool approvals over Telegram's fake, with real aiogram and the scripted claude: the question
is a new message with buttons, a press answers it as the presser, a stranger's press answers
nothing, and the answer settles the question in place. The added latency from the agent's
request (its ``approval`` event in Cadenza) to the question on the fake Telegram server is
printed (the issue's target is under 1.5 s).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import test_telegram
from cadenza.api import APPROVAL, hookimpl
from test_telegram import STRANGER, USER, containing

from tests.fakes.telegram_api import FakeTelegramServer

pytestmark = pytest.mark.usefixtures("agent_path")
server, token = test_telegram.server, test_telegram.token
APPROVALS = '\n[approvals]\nmode = "chat"\n'


class RequestClock:
    """Notes when each approval event reached the plugins."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @hookimpl
    def on_stream_event(self, event: Any) -> None:
        if event.kind == APPROVAL:
            self.times.append(time.monotonic())


async def test_a_press_approves_and_the_answer_settles_the_question(
        server: FakeTelegramServer, token: str, start_app: Any, tmp_path: Path) -> None:
    clock = RequestClock()
    target = tmp_path / "pressed"
    await start_app(test_telegram.config(server, APPROVALS), clock=None, requests=clock)
    server.push_text(USER, USER, f"ask touch {target}; say after")
    question = await server.wait_for(containing(server, USER, f"$ touch {target}"), 15)
    added = time.monotonic() - clock.times[0]
    print(f"\nadded latency, approval request → question on Telegram: {added * 1000:.0f} ms")
    key = question.text.rsplit("/deny ", 1)[1].split()[0]
    assert [b["callback_data"] for b in question.buttons] == [
        f"cmd:/approve {key}", f"cmd:/approve {key} conversation", f"cmd:/deny {key}"]
    assert not target.exists()
    server.push_callback(USER, USER, question.message_id, f"cmd:/approve {key}")
    await server.wait_for(containing(server, USER, "✅ done"), 15)
    assert target.exists()
    assert not question.buttons and "✅ allowed once by" in question.text
    assert added < 1.5


async def test_a_strangers_press_in_a_group_answers_nothing(
        server: FakeTelegramServer, token: str, start_app: Any, tmp_path: Path) -> None:
    group = test_telegram.GROUP
    target = tmp_path / "stranger"
    await start_app(test_telegram.config(server, APPROVALS))
    server.push_text(group, USER, "/status", chat_type="supergroup")
    await server.wait_for(containing(server, group, "Nothing is running"), 15)
    server.push_text(group, USER, f"@cadenza_test_bot ask touch {target}; say after",
                     chat_type="supergroup")
    question = await server.wait_for(containing(server, group, f"$ touch {target}"), 15)
    key = question.text.rsplit("/deny ", 1)[1].split()[0]
    server.push_callback(group, STRANGER, question.message_id, f"cmd:/approve {key}")
    server.push_callback(group, USER, question.message_id, f"cmd:/deny {key}")
    await server.wait_for(containing(server, group, "✅ done"), 15)
    assert not target.exists()  # the stranger's allow never ran; the member's deny did
    assert "⛔ denied by" in question.text and not question.buttons
