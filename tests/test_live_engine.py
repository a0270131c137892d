"""The live-message engine (``cadenza.frontends.live``): what every chat frontend gets from it.

The two engine features are tested through Telegram, the real aiogram client against the fake
Bot API: a short new message when a long turn ends or a turn waits for the user
(``notify_after``), and a long paste the client split into several messages run as one prompt
(``merge_pastes``). Then the engine alone, on a transport of another platform's shape (2,000
characters counted as code points, Markdown): long answers, a refused edit, a 429 and the
clean-up after a crash, with nothing of Telegram involved.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import test_telegram
from cadenza.api import ChatRef, StreamEvent, Turn
from cadenza.clock import SystemClock
from cadenza.frontends.live import Engine, Limits, Outgoing, Rate, RetryPolicy
from cadenza.frontends.live import engine as engine_module
from cadenza.frontends.live.notices import AWAITS_USER
from cadenza.frontends.live.pacing import Pacing
from cadenza.frontends.live.split import CODEPOINTS
from cadenza.frontends.live.transport import Gone, Retry
from cadenza.frontends.live.views import TurnView
from cadenza.state import Store
from cadenza.testing import ManualClock
from cadenza.testing.fake_agent import big_text
from test_telegram import DONE, GROUP, USER, containing

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start
LIMIT = 4096  # Telegram's, in UTF-16 code units: what its clients cut a long paste at


def piece(mark: str, size: int = LIMIT, head: str = "") -> str:
    """One message of a split paste: ``size`` characters, starting with ``head``."""
    return head + mark * (size - len(head))


# --------------------------------------------------------------------------- notify_after


async def test_a_long_turn_ends_with_a_new_message_a_short_one_does_not(start, server) -> None:
    h = await start(notify_after="1")
    server.push_text(USER, USER, "say quick")
    await server.wait_for(containing(server, USER, DONE), 15)
    server.push_text(USER, USER, "say working; sleep 1.5; say finished")
    ping = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(USER) if m.text.startswith(DONE) and "say working"
         in m.text), None), 15)
    short, long, last = server.bot_messages(USER)  # the short turn got no message of its own
    assert DONE in short.text and short.text.startswith("quick")
    assert long.text.startswith("working\n\nfinished\n\n" + DONE)
    assert last is ping and ping.message_id > long.message_id  # new, so the phone notifies
    assert ping.text.endswith(" — say working; sleep 1.5; say finished") and len(ping.text) < 100
    assert [e.kind for e in h.recorder.terminals()] == ["completed", "completed"]


async def test_notify_after_0_switches_it_off(start, server) -> None:
    h = await start(notify_after="0")
    server.push_text(USER, USER, "say working; sleep 1.2; say finished")
    await h.recorder.finished(1)
    server.push_text(USER, USER, "say next")  # behind where a notice would have gone
    await h.recorder.finished(2)
    last = await server.wait_for(containing(server, USER, "next"), 15)
    await server.wait_for(lambda: DONE in last.text, 15)
    assert [m.text.split("\n")[0] for m in server.bot_messages(USER)] == ["working", "next"]


async def test_a_turn_waiting_for_the_user_sends_a_new_message_at_once(start, server) -> None:
    h = await start(notify_after="3600")
    turn = Turn("t-ask", ChatRef("telegram", str(USER)), "clean up /tmp", "claude")
    await h.app.relay.call("on_stream_event", event=StreamEvent(turn, 0, "started"))
    await h.app.relay.call("on_stream_event", event=StreamEvent(
        turn, 1, "notice", "Allow Bash: rm -rf /tmp/build?", {AWAITS_USER: True}))
    asked = await server.wait_for(containing(server, USER, "waiting for your answer"), 15)
    live = server.bot_messages(USER)[0]
    assert asked is not live and asked.text == (
        "❓ the agent is waiting for your answer: Allow Bash: rm -rf /tmp/build?")
    await h.app.relay.call("on_stream_event", event=StreamEvent(
        turn, 2, "completed", "", {"elapsed": 2.0}))
    await server.wait_for(lambda: DONE in live.text, 15)


# --------------------------------------------------------------------------- one paste, one prompt


async def test_three_full_messages_within_a_second_are_one_prompt(start, server) -> None:
    h = await start()
    parts = [piece("a", head="say "), piece("b"), piece("c")]
    for part in parts:
        server.push_text(USER, USER, part)
    (end,) = await h.recorder.finished(1, timeout=20)
    assert end.turn.prompt == "".join(parts)
    await server.wait_for(containing(server, USER, DONE), 15)
    shown = "".join(m.text for m in server.bot_messages(USER))
    assert shown.count("a") >= LIMIT - 5 and shown.count("c") == LIMIT
    await asyncio.sleep(1.2)  # past the merge window: nothing else was run
    assert len(h.recorder.terminals()) == 1


async def test_a_short_message_right_after_a_long_one_is_its_own_prompt(start, server) -> None:
    h = await start()
    long = piece("x", head="say ")
    server.push_text(USER, USER, long)
    server.push_text(USER, USER, "say short")
    ends = await h.recorder.finished(2, timeout=20)
    assert [e.turn.prompt for e in ends] == [long, "say short"]


async def test_pieces_of_a_paste_in_a_group_need_only_the_first_addressed(start, server) -> None:
    h = await start()
    first = piece("g", head="@cadenza_test_bot say ")
    server.push_text(GROUP, USER, first, chat_type="supergroup")
    server.push_text(GROUP, USER, piece("h"), chat_type="supergroup")  # no mention: continues
    (end,) = await h.recorder.finished(1, timeout=20)
    assert end.turn.prompt == first.removeprefix("@cadenza_test_bot ") + piece("h")


async def test_merge_pastes_false_runs_each_message(start, server) -> None:
    h = await start(merge_pastes="false")
    parts = [piece("a", head="say "), piece("b", head="say ")]
    for part in parts:
        server.push_text(USER, USER, part)
    ends = await h.recorder.finished(2, timeout=20)
    assert [e.turn.prompt for e in ends] == parts


# --------------------------------------------------------------------------- the engine alone


class Markdown:
    def escape(self, text: str) -> str:
        return text

    def render(self, source: str, code: str | None) -> tuple[str, str | None]:
        return source, code

    def bold(self, markup: str) -> str:
        return f"**{markup}**"

    def italic(self, markup: str) -> str:
        return f"_{markup}_"


class Channels:
    """A transport of another platform's shape, in memory: channels, 2,000 code points."""

    name = "fakechat"
    markup = Markdown()
    limits = Limits(message_length=2000, units=CODEPOINTS, chat=Rate(0.01),
                    overall=Rate(0.001, 50), typing_lasts=10.0)

    def __init__(self) -> None:
        self.messages: dict[int, tuple[str, tuple[tuple[str, str], ...]]] = {}
        self.calls: list[tuple[str, int]] = []
        self.faults: list[tuple[str, Exception]] = []  # (method, what it raises next)

    def locate(self, chat: ChatRef) -> tuple[int, int | None]:
        return int(chat.chat_id), None

    def is_group(self, room: int) -> bool:
        return False

    def _fault(self, method: str) -> None:
        for index, (name, exc) in enumerate(self.faults):
            if name == method:
                del self.faults[index]
                raise exc

    async def send(self, room: int, thread: int | None, out: Outgoing, plain: bool = False,
                   key: str = "") -> int:
        self._fault("send")
        message_id = len(self.calls) + 1
        self.calls.append(("send", message_id))
        self.messages[message_id] = (out.markup, out.buttons)
        return message_id

    async def send_document(self, room: int, thread: int | None, out: Outgoing,
                            plain: bool = False, key: str = "") -> int:
        return await self.send(room, thread, out, plain, key)

    async def edit(self, room: int, message_id: int, out: Outgoing, plain: bool = False) -> None:
        self._fault("edit")
        self.calls.append(("edit", message_id))
        self.messages[message_id] = (out.markup, out.buttons)

    async def delete(self, room: int, message_id: int) -> None:
        self.messages.pop(message_id, None)

    async def clear_buttons(self, room: int, message_id: int) -> None:
        self.messages[message_id] = (self.messages[message_id][0], ())

    async def typing(self, room: int, thread: int | None) -> None:
        self.calls.append(("typing", room))


def engine_on(transport: Channels, state: Path) -> Engine:
    state.mkdir(exist_ok=True)
    engine = Engine(transport, SystemClock(), logging.getLogger("test.live"),
                    Store.in_dir(state), RetryPolicy(0.01, 0.05))
    engine.ready.set()
    return engine


def stream(engine: Engine, turn: Turn, *events: tuple[str, str, dict[str, Any]]) -> TurnView:
    view = TurnView(turn, engine.style)
    engine.show(view)
    for seq, (kind, text, data) in enumerate(events):
        if view.apply(StreamEvent(turn, seq, kind, text, data)):
            engine.touch(view)
    return view


async def test_the_engine_delivers_through_any_transport(tmp_path: Path) -> None:
    channels = Channels()
    engine = engine_on(channels, tmp_path / "state")
    turn = Turn("t1", ChatRef("fakechat", "5"), "write a lot", "claude", session="docs")
    answer = big_text(5000)
    view = stream(engine, turn, ("text", answer[:1500], {}))
    await asyncio.wait_for(engine.outboxes[5].drain(), 10)
    assert channels.messages[1][1] == (("⏹ Stop", "stop:t1"),)
    del channels.messages[1]  # deleted by someone: editing it fails, it is sent anew
    channels.faults = [("edit", Gone("message to edit not found")),
                       ("send", Retry("429", 0.05, flood=True))]
    for seq, kind, text in ((1, "text", answer[1500:]), (2, "completed", "")):
        view.apply(StreamEvent(turn, seq, kind, text, {"elapsed": 3.0}))
        engine.touch(view)
    await asyncio.wait_for(engine.outboxes[5].drain(), 10)
    shown = [text for text, _ in channels.messages.values()]
    assert all(len(text) <= 2000 for text in shown)  # code points, this platform's unit
    assert all(text.startswith("**[docs]**\n") for text in shown)  # its markup
    assert "".join(text.removeprefix("**[docs]**\n") for text in shown).startswith(answer)
    assert shown[-1].endswith("✅ done · 3 s") and not any(b for _, b in channels.messages.values())
    assert engine.pacing.rate_limited == 1  # the 429 was obeyed
    assert not await engine.ledger.left_over() and not await engine.ledger.live_left_over()
    await engine.close()


async def test_a_crash_leaves_nothing_saying_working(tmp_path: Path) -> None:
    channels = Channels()
    engine = engine_on(channels, tmp_path / "state")
    turn = Turn("t2", ChatRef("fakechat", "7"), "p", "claude")
    stream(engine, turn, ("text", "half an answer", {}))
    await asyncio.wait_for(engine.outboxes[7].drain(), 10)
    ((live, buttons),) = channels.messages.values()
    assert live.endswith("_⏳ working…_") and buttons == (("⏹ Stop", "stop:t2"),)
    await engine.close()  # as if killed: the view never ended
    after = engine_on(channels, tmp_path / "state")  # the next start, same store
    await after.load()
    after.recovered.set()
    await asyncio.wait_for(after.finish_left_over(), 10)
    assert list(channels.messages.values()) == [(
        "half an answer\n\n_⏸ interrupted: Cadenza stopped before this turn ended_", ())]
    assert not await after.ledger.left_over()
    await after.close()


async def test_calls_due_during_a_stall_still_go_one_interval_apart() -> None:
    clock = ManualClock()
    pacing = Pacing(clock, Limits(message_length=100, chat=Rate(1.0), overall=Rate(1.0)))
    went: list[float] = []

    async def call() -> None:
        await pacing.slot(pacing.for_room())
        went.append(clock.monotonic())

    tasks = [asyncio.ensure_future(call()) for _ in range(3)]
    await clock.advance(0)
    assert went == [0.0]
    await clock.advance(5)  # the event loop was blocked for 5 s: the others came due meanwhile
    assert went == [0.0, 5.0]  # not both at once
    await clock.advance(1)
    assert went == [0.0, 5.0, 6.0]
    await asyncio.gather(*tasks)


async def test_the_newest_ids_kept_follow_the_active_rooms(tmp_path: Path, monkeypatch) -> None:
    class Counting(Channels):  # a platform whose ids count up: the engine keeps them
        async def probe(self, room: int, message_id: int, out: Outgoing, plain: bool) -> bool:
            return False

    monkeypatch.setattr(engine_module, "ROOMS_KEPT", 5)
    engine = engine_on(Counting(), tmp_path / "state")
    for chat in range(20):
        engine.saw(ChatRef("fakechat", str(chat)), 100 + chat)
    assert list(engine.rooms) == [15, 16, 17, 18, 19]
    assert engine.outbox(19).last_id == 119  # a new outbox starts from what was seen
    plain = engine_on(Channels(), tmp_path / "plain")  # ids that do not count up: nothing kept
    plain.saw(ChatRef("fakechat", "1"), 7)
    assert not plain.rooms
    await engine.close()
    await plain.close()
