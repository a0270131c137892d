"""Telegram access fails closed (issue 13): every kind of update from someone not on the
allowlist stops at the frontend's own ingress, a failing check refuses, a switched-off
frontend takes nothing, SIGHUP reloads the allowlist, a Stop button acts in its own chat only,
and strangers cost neither memory nor Telegram calls, however many there are.

Like ``test_telegram.py``: the real App, the real aiogram client over real sockets, the fake
Bot API, and waits on conditions, never on time.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import test_telegram
from cadenza.api import ChatMessage, ChatRef, Notice
from cadenza.frontends.live.refusals import Refusals
from cadenza.frontends.telegram.settings import Allowlist
from test_telegram import DONE, GROUP, STRANGER, USER, containing, eventually

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start


def spy_on_handle(h: Any) -> list[ChatMessage]:
    """Every ChatMessage the frontend hands to the core, in order."""
    seen: list[ChatMessage] = []
    real = h.bot.handle

    async def handle(message: ChatMessage) -> None:
        seen.append(message)
        await real(message)

    h.bot.handle = handle
    return seen


def hidden_user(name: str = "Mallory") -> dict[str, Any]:
    return {"type": "hidden_user", "sender_user_name": name, "date": 1}


# --------------------------------------------------------------------------- access


async def test_no_kind_of_update_from_a_stranger_reaches_the_core(start, server, caplog) -> None:
    caplog.set_level(logging.INFO)
    h = await start()
    seen = spy_on_handle(h)
    server.push_text(USER, USER, "say first; sleep 30")
    live = await server.wait_for(containing(server, USER, "first"), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    # a stranger tries every door: text, command, caption, forward, an edit, a button, a group
    server.push_text(STRANGER, STRANGER, "id > /tmp/pwned")
    server.push_text(STRANGER, STRANGER, "/status")
    server.push_message(STRANGER, STRANGER, caption="id > /tmp/pwned")
    server.push_message(STRANGER, STRANGER, text="id", forward_origin=hidden_user())
    mine = server.messages(STRANGER)[0].message_id
    server.push_edit(STRANGER, mine, "id > /tmp/edited")
    server.push_text(GROUP, STRANGER, "@cadenza_test_bot id", chat_type="supergroup")
    server.push_text(GROUP, 888, "just chatting among ourselves", chat_type="supergroup")
    server.push_message(STRANGER, STRANGER, sticker={"file_id": "s", "file_unique_id": "s",
                                                     "type": "regular", "width": 1,
                                                     "height": 1, "is_animated": False,
                                                     "is_video": False})
    for _ in range(3):
        press = server.push_callback(USER, STRANGER, live.message_id, f"stop:{turn.id}")
    # an allowed user's edit is taken, but runs nothing either
    server.push_edit(USER, server.messages(USER)[0].message_id, "say edited")
    await server.wait_for(containing(server, USER, "Edits of a sent message"), 15)
    server.push_text(USER, USER, "/status")
    await server.wait_for(containing(server, USER, "running"), 15)
    assert [message.user_id for message in seen] == [str(USER), str(USER)]
    assert h.bot.running(turn.id) is not None  # the stranger's Stop presses did nothing
    # one refusal for the stranger, one log line: a flood of updates is no flood of replies
    (refusal,) = server.bot_messages(STRANGER)
    assert str(STRANGER) in refusal.text and "allowed_users" in refusal.text
    assert server.bot_messages(GROUP) == []
    assert caplog.text.count(f"refused user {STRANGER}") == 1
    assert "other refused update(s)" not in caplog.text
    assert "refused user 888" not in caplog.text  # a group's own talk is not for the bot
    assert server.callback_answer(press) is None and not server.calls_to("answerCallbackQuery")


async def test_a_failing_allowlist_check_refuses(start, server, monkeypatch, caplog) -> None:
    h = await start()
    seen = spy_on_handle(h)

    def broken(self: Allowlist, user_id: str) -> bool:
        raise RuntimeError("a bug in the allowlist check")

    with monkeypatch.context() as patch:
        patch.setattr(Allowlist, "allows", broken)
        first = server.push_text(USER, USER, "say hello")
        server.push_message(USER, USER, caption="say hello")
        await server.wait_for(lambda: server.confirmed_offset > first + 1 or None, 15)
        await eventually(lambda: "checking update" in caplog.text)
        assert seen == [] and h.recorder.events == []
        # the veto and the check before a queued or resumed turn runs refuse too
        chat = ChatRef("telegram", str(USER))
        assert await h.app.relay.veto("on_inbound_message",
                                      message=ChatMessage(chat, str(USER), "x")) is not None
        assert not await h.app.relay.allowed("authorize", chat=chat, user_id=str(USER))
    server.push_text(USER, USER, "say works again")
    await server.wait_for(containing(server, USER, DONE), 15)


async def test_a_switched_off_frontend_stops_taking_updates_and_keeps_them(
        start, server, caplog) -> None:
    h = await start(tables="[core]\nmax_failures = 1\n")
    seen = spy_on_handle(h)
    server.push_text(USER, USER, "say before")
    await server.wait_for(containing(server, USER, DONE), 15)
    # a real failure of one of the plugin's hooks: the core switches the plugin off
    await h.app.relay.call("on_timeout_warning", warning=object())
    assert h.app.relay.disabled("telegram")
    await eventually(lambda: "no more messages are taken from Telegram" in caplog.text)
    later = server.push_text(USER, USER, "say after")
    await h.app.stop()
    assert [message.text for message in seen] == ["say before"]
    assert [update["update_id"] for update in server.pending_updates] == [later]


async def test_sighup_reloads_the_allowlist_and_waiting_turns_are_checked_again(
        start, server, tmp_path, caplog) -> None:
    h = await start()
    toml = (tmp_path / "plugins.toml").read_text()

    async def reload(allowed: str) -> None:
        (tmp_path / "plugins.toml").write_text(toml.replace(f"allowed_users = [{USER}]",
                                                            f"allowed_users = {allowed}"))
        await h.app.reload()

    server.push_text(STRANGER, STRANGER, "say not yet")
    await server.wait_for(containing(server, STRANGER, "only works for the people"), 15)
    await reload(f"[{USER}, {STRANGER}]")
    assert "telegram: allowlist reloaded: 2 user(s); added 777" in caplog.text
    server.push_text(STRANGER, STRANGER, "say now allowed")
    await server.wait_for(containing(server, STRANGER, DONE), 15)
    # a bad new value keeps the allowlist in force
    await reload('["@someone"]')
    assert "the allowlist was not reloaded" in caplog.text and "'@someone'" in caplog.text
    server.push_text(STRANGER, STRANGER, "say first; sleep 1; say running")
    await server.wait_for(containing(server, STRANGER, "first"), 15)
    server.push_text(STRANGER, STRANGER, "say queued behind it")
    await server.wait_for(containing(server, STRANGER, "Queued"), 15)
    # removed while a turn runs and another waits: the waiting one never runs
    await reload(f"[{USER}]")
    told = await server.wait_for(containing(server, STRANGER, "no longer allowed"), 15)
    assert told.text.startswith("⛔")
    ends = await h.recorder.finished(3)
    assert [e.turn.prompt for e in ends if e.kind == "completed"] == [
        "say now allowed", "say first; sleep 1; say running"]
    assert ends[-1].kind == "cancelled" and ends[-1].data.get("refused")
    assert "queued behind it" not in h.recorder.text_of(ends[-1].turn.id)
    assert await h.app.relay.allowed("authorize", chat=ChatRef("telegram", str(USER)),
                                     user_id=str(USER))
    assert not await h.app.relay.allowed("authorize", chat=ChatRef("telegram", str(USER)),
                                         user_id=str(STRANGER))


# --------------------------------------------------------------------------- buttons


async def test_stop_acts_only_on_a_turn_of_the_chat_it_was_pressed_in(start, server) -> None:
    h = await start()
    server.push_text(USER, USER, "say first; sleep 30")
    await server.wait_for(containing(server, USER, "first"), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    server.push_text(GROUP, USER, "/status", chat_type="supergroup")
    status = await server.wait_for(containing(server, GROUP, "running"), 15)
    # a button in the group whose data names the private chat's turn (a forged press)
    press = server.push_callback(GROUP, USER, status.message_id, f"stop:{turn.id}")
    answer = await server.wait_for(lambda: server.callback_answer(press), 15)
    assert answer["text"] == "That turn already ended." and h.bot.running(turn.id) is not None
    live = server.bot_messages(USER)[0]
    press = server.push_callback(USER, USER, live.message_id, f"stop:{turn.id}")
    assert (await server.wait_for(lambda: server.callback_answer(press), 15))["text"] == (
        "Stopping…")
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled"


# --------------------------------------------------------------------------- bounded state


async def test_state_follows_the_chats_active_now_not_every_chat_ever_seen(
        start, server) -> None:
    h = await start(messages_per_second="100000")
    plugin = h.app.loader.instances["telegram"]
    connection = plugin.connection
    await eventually(lambda: connection.inbound)
    most = 0
    for wave in range(30):  # 3,000 chats, each told something once, 100 at a time
        chats = range(1_000_000 + wave * 100, 1_000_000 + (wave + 1) * 100)
        for chat in chats:
            await h.app.relay.call("on_notice", notice=Notice(
                ChatRef("telegram", str(chat)), f"hello {chat}"))
        most = max(most, len(connection.outboxes))
        await server.wait_for(lambda chats=chats: all(server.bot_messages(c) for c in chats), 15)
    assert len(server.calls_to("sendMessage")) == 3_000
    assert most <= 1_000 and len(connection.outboxes) <= 1_000  # not one per chat ever seen
    assert not connection.inbound.lanes._tasks and not plugin.turns


def test_refusals_are_one_per_user_an_hour_and_few_a_minute_in_all() -> None:
    clock = ManualClock()
    refusals = Refusals(clock, per_minute=20, capacity=1000)
    assert refusals.due("1") and not refusals.due("1")
    told = sum(refusals.due(str(user)) for user in range(2, 20_000))  # a flood of strangers
    assert told <= 5 and len(refusals) <= 6
    for minute in range(1, 200):  # and they keep coming, for hours
        clock.now += 60
        told = sum(refusals.due(f"{minute}-{user}") for user in range(100))
        assert 1 <= told <= 25 and len(refusals) <= 1000
    assert refusals.take_suppressed() > 0 and refusals.take_suppressed() == 0
    clock.now += 3600
    assert refusals.due("1")  # an hour later, the first one hears back again


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now
