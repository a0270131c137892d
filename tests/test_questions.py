"""Questions with answer buttons (what tool approvals ask), in every live frontend: a notice
with ``ask`` and ``buttons`` is a new message whose buttons run their command as the person
who presses them typed it; a notice with ``answered`` settles it (the answer under the
question, no buttons). Real aiogram and discord.py against the fakes.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_discord
import test_telegram
from cadenza.api import ChatMessage, ChatRef, hookimpl
from test_telegram import STRANGER, USER, containing

from tests.fakes.discord_api import FakeDiscordServer
from tests.fakes.telegram_api import FakeTelegramServer

pytestmark = pytest.mark.usefixtures("agent_path")
server, token = test_telegram.server, test_telegram.token
discord_server = test_discord.server


class Asker:
    """Asks one question and answers it with ``/pick CHOICE``, saying who picked."""

    def __init__(self) -> None:
        self.picks: list[tuple[str, str]] = []

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("pick", self.pick, help="answer the question")

    async def ask(self, bot: Any, chat: ChatRef) -> None:
        await bot.notify(chat, "Run `touch /tmp/x`?", kind="approval", ask="q1",
                         buttons=[("✅ Yes", "/pick yes"), ("⛔ No", "/pick no")])

    async def pick(self, bot: Any, message: ChatMessage, args: str) -> None:
        self.picks.append((message.user_id, args))
        await bot.notify(message.chat, f"→ {args}, said {message.user_id}", kind="approval",
                         answered="q1")


async def test_telegram_buttons_answer_as_the_presser_and_the_answer_settles_them(
        server: FakeTelegramServer, token: str, start_app: Any) -> None:
    asker = Asker()
    h = await start_app(test_telegram.config(server, allowed_users=f"[{USER}]"), asker=asker)
    await asker.ask(h.bot, ChatRef("telegram", str(USER)))
    question = await server.wait_for(containing(server, USER, "touch /tmp/x"), 15)
    assert [b["callback_data"] for b in question.buttons] == ["cmd:/pick yes", "cmd:/pick no"]
    server.push_callback(USER, USER, question.message_id, "cmd:/pick no")
    await server.wait_for(lambda: not question.buttons, 15)
    assert question.text == f"Run `touch /tmp/x`?\n\n→ no, said {USER}"
    assert asker.picks == [(str(USER), "no")]
    assert len(server.bot_messages(USER)) == 1  # settled in place, no new message


async def test_a_strangers_press_answers_nothing(
        server: FakeTelegramServer, token: str, start_app: Any) -> None:
    asker = Asker()
    group = test_telegram.GROUP
    h = await start_app(test_telegram.config(server, allowed_users=f"[{USER}]"), asker=asker)
    server.push_text(group, USER, "/status", chat_type="supergroup")
    await server.wait_for(containing(server, group, "Nothing is running"), 15)
    await asker.ask(h.bot, ChatRef("telegram", str(group)))
    question = await server.wait_for(containing(server, group, "touch /tmp/x"), 15)
    server.push_callback(group, STRANGER, question.message_id, "cmd:/pick yes")
    server.push_callback(group, USER, question.message_id, "cmd:/pick no")
    await server.wait_for(lambda: not question.buttons, 15)
    assert asker.picks == [(str(USER), "no")]  # the stranger's press never ran


async def test_discord_buttons_answer_as_the_presser(
        discord_server: FakeDiscordServer, start_app: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = discord_server
    monkeypatch.setenv("DISCORD_BOT_TOKEN", test_discord.DEFAULT_TOKEN)
    asker = Asker()
    h = await start_app(test_discord.config(server), asker=asker)
    await server.wait_for(lambda: server.gateway.connected, 10)
    channel = test_discord.dm(server)
    await asker.ask(h.bot, ChatRef("discord", str(channel)))
    question = await server.wait_for(test_discord.containing(server, channel, "touch /tmp/x"),
                                     15)
    assert [b["custom_id"] for b in question.buttons] == ["cmd:/pick yes", "cmd:/pick no"]
    server.press_button(question, "cmd:/pick yes", test_discord.STRANGER)
    server.press_button(question, "cmd:/pick yes", test_discord.USER)
    await server.wait_for(lambda: not question.buttons, 15)
    assert asker.picks == [(str(test_discord.USER), "yes")]
    assert question.content.endswith(f"→ yes, said {test_discord.USER}")
