"""Tool approvals over Discord's fake, with real discord.py and the scripted claude: the question
is a new message with buttons, a press answers it as the presser, a stranger's press in a server
channel answers nothing, a typed ``/deny KEY reason`` reaches the agent, and the answer settles
the question in place. The added latency from the agent's request to the question on the fake
Discord server is printed (the issue's target is under 1.5 s), as over Telegram.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_discord
from test_approvals_telegram import APPROVALS, RequestClock
from test_discord import CHANNEL, DEFAULT_TOKEN, DONE, STRANGER, USER, containing

from tests.fakes.discord_api import FakeDiscordServer, StoredMessage

pytestmark = pytest.mark.usefixtures("agent_path")
server = test_discord.server


async def start(server: FakeDiscordServer, start_app: Any, monkeypatch: pytest.MonkeyPatch,
                **plugins: Any) -> Any:
    """The app with Discord and approvals on, once discord.py is connected."""
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)
    h = await start_app(test_discord.config(server) + APPROVALS, **plugins)
    await server.wait_for(lambda: server.gateway.connected, 10)
    await server.wait_for(lambda: server.commands(), 10)
    return h


def asking(server: FakeDiscordServer, channel: int) -> Callable[[], StoredMessage | None]:
    """Finds the bot's question in ``channel``: the message with an ``/approve`` button."""
    def find() -> StoredMessage | None:
        return next((m for m in server.bot_messages(channel) if any(
            b.get("custom_id", "").startswith("cmd:/approve ") for b in m.buttons)), None)

    return find


def plain(message: StoredMessage) -> str:
    """The message's text without Discord's markdown escapes (a path's ``_`` is ``\\_``)."""
    return message.content.replace("\\", "")


def key_of(question: StoredMessage) -> str:
    """The request's key, from the question's first button (``cmd:/approve KEY``)."""
    return question.buttons[0]["custom_id"].split()[1]


async def test_a_press_approves_and_the_answer_settles_the_question(
        server: FakeDiscordServer, start_app: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    clock = RequestClock()
    target = tmp_path / "pressed"
    await start(server, start_app, monkeypatch, clock=None, requests=clock)
    server.push_dm(USER, f"ask touch {target}; say after")
    channel = test_discord.dm(server)
    question = await server.wait_for(asking(server, channel), 15)
    added = time.monotonic() - clock.times[0]
    print(f"\nadded latency, approval request → question on Discord: {added * 1000:.0f} ms")
    assert f"$ touch {target}" in plain(question)
    key = key_of(question)
    assert [b["custom_id"] for b in question.buttons] == [
        f"cmd:/approve {key}", f"cmd:/approve {key} conversation", f"cmd:/deny {key}"]
    assert [b["label"] for b in question.buttons] == [
        "✅ Allow once", "♾ Allow for this conversation", "⛔ Deny"]
    assert not target.exists()
    server.press_button(question, f"cmd:/approve {key}", USER)
    await server.wait_for(containing(server, channel, DONE), 15)
    assert target.exists()
    await server.wait_for(lambda: not question.buttons, 15)
    assert "✅ allowed once by" in plain(question).split(f"$ touch {target}", 1)[1]
    assert added < 1.5


async def test_a_strangers_press_in_a_server_answers_nothing_and_a_typed_deny_reaches_the_agent(
        server: FakeDiscordServer, start_app: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    target = tmp_path / "stranger"
    await start(server, start_app, monkeypatch)
    server.push_message(CHANNEL, USER, f"ask touch {target}; say after", mention_bot=True)
    question = await server.wait_for(asking(server, CHANNEL), 15)
    assert f"$ touch {target}" in plain(question)
    key = key_of(question)
    press = server.press_button(question, f"cmd:/approve {key}", STRANGER)
    await server.wait_for(lambda: press.acknowledged, 15)
    assert "Only the people" in press.response["data"]["content"]  # refused, only to them
    server.push_message(CHANNEL, USER, f"/deny {key} not today", mention_bot=True)
    final = await server.wait_for(containing(server, CHANNEL, DONE), 15)
    assert not target.exists()  # the stranger's allow never ran; the member's deny did
    assert "denied: the user said: not today" in final.content
    await server.wait_for(lambda: not question.buttons, 15)
    assert "⛔ denied by" in question.content and "not today" in question.content
