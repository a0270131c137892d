"""Exactly once in the chat (issue 20): a write that Telegram applied but whose answer was
lost leaves neither an orphan nor a copy, and chats catch up at once when the API is back.

The fake Bot API applies a call and then drops the connection (``Fault.drop(after_processing
=True)``) for the next N calls of a method that match; the chat must end with exactly the
messages a fault-free run of the same turn leaves in another chat, in the same order, with the
same text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
import test_telegram
from cadenza.frontends.live.reachability import Reachability
from cadenza.testing import ManualClock
from test_telegram import DONE, GROUP, USER, containing

from tests.fakes.telegram_api import JSON, FakeTelegramServer, Fault

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start

OTHER = 43  # a second allowed user: the fault-free run happens in their chat
SCRIPT = "tick 3 0.2 part; big 6000; say the end"  # a live message and a continuation
SHORT = "tick 4 0.2 part"  # one message: its last edit is the final one
BIG = "big 30000"  # over max_output: the head and tail, then the whole output as a document
CAP = "[core]\nmax_output = 20000\n"
LOST = Fault.drop(after_processing=True)


def from_call(k: int) -> Callable[[JSON], bool]:
    """A ``when`` for ``fail_next``: the k-th call of the method (1-based) and those after."""
    seen = 0

    def nth(params: JSON) -> bool:
        nonlocal seen
        seen += 1
        return seen >= k

    return nth


def final(params: JSON) -> bool:
    return DONE in str(params.get("text", ""))


def shown(server: FakeTelegramServer, chat: int) -> list[str]:
    """What the chat shows now, the turn's duration left out."""
    return [re.sub(f"({DONE})[^\n]*", r"\1", message.text)
            for message in server.bot_messages(chat)]


async def settled(h: Any, server: FakeTelegramServer, chat: int, pieces: int) -> list[str]:
    """What the chat shows once the turn ended and its outbox has nothing left to do."""
    await server.wait_for(containing(server, chat, DONE), 30)
    engine = h.app.loader.instances["telegram"].connection.engine
    await server.wait_for(lambda: len(server.bot_messages(chat)) >= pieces, 30)
    await asyncio.wait_for(engine.outboxes[chat].drain(), 30)
    return shown(server, chat)


async def twice(start: Any, server: FakeTelegramServer, script: str, arm: Callable[[], None],
                tables: str = "") -> tuple[list[str], list[str]]:
    """The same turn fault-free (in OTHER's chat), then with the faults ``arm`` sets up."""
    h = await start(tables=tables, allowed_users=f"[{USER}, {OTHER}]")
    server.push_text(OTHER, OTHER, script)
    expected = await settled(h, server, OTHER, 1)
    arm()
    server.push_text(USER, USER, script)
    return expected, await settled(h, server, USER, len(expected))


@pytest.mark.parametrize(("method", "when", "times", "script"), [
    ("sendMessage", None, 1, SCRIPT),  # the live message's first send
    ("sendMessage", None, 3, SCRIPT),  # three sends in a row applied, none answered
    ("sendMessage", from_call(2), 1, SCRIPT),  # the continuation message
    ("editMessageText", from_call(2), 1, SCRIPT),  # an edit while the answer streams
    ("editMessageText", final, 1, SHORT),  # the final edit
    ("sendDocument", None, 1, BIG),  # the whole output as a document
], ids=["first-send", "first-send-x3", "continuation", "edit", "final-edit", "document"])
async def test_a_lost_answer_leaves_no_orphan_and_no_copy(
        start, server, method: str, when: Any, times: int, script: str) -> None:
    expected, got = await twice(
        start, server, script, lambda: server.fail_next(method, LOST, times, when=when),
        tables=CAP if script == BIG else "")
    assert got == expected
    dropped = [call for call in server.calls_to(method) if call.outcome == "dropped"]
    assert 1 <= len(dropped) <= times  # applied, its answer lost (found: no resend to lose)
    # found right after the newest known id before any resend: no copy, not even for a while
    assert len(server.bot_messages(USER, include_deleted=True)) == len(expected)
    if method == "sendDocument":
        assert len(server.documents(USER)) == 1


async def test_in_a_group_other_members_messages_in_the_gap_are_never_touched(
        start, server) -> None:
    h = await start(allowed_users=f"[{USER}, {OTHER}]")
    server.push_text(OTHER, OTHER, SCRIPT)
    expected = await settled(h, server, OTHER, 1)
    server.fail_next("sendMessage", LOST, 2, when=lambda params: params["chat_id"] == GROUP)
    server.push_text(GROUP, USER, f"@cadenza_test_bot {SCRIPT}", chat_type="supergroup")
    await server.wait_for(lambda: any(c.outcome == "dropped"
                                      for c in server.calls_to("sendMessage")), 15)
    server.push_text(GROUP, 555, "a member's message between the lost sends",
                     chat_type="supergroup")
    theirs = server.messages(GROUP)[-1]
    assert await settled(h, server, GROUP, len(expected)) == expected
    assert not theirs.deleted and theirs.text == "a member's message between the lost sends"
    assert theirs.edit_date is None  # never edited: the probe cannot change it


async def test_a_send_cut_short_by_a_crash_is_finished_at_the_next_start(
        start, server) -> None:
    h = await start()
    server.push_text(USER, USER, "say hello")
    await server.wait_for(containing(server, USER, DONE), 15)  # the chat's newest id is known
    connection = h.app.loader.instances["telegram"].connection
    send, sent = connection.api.send, 0

    async def killed_after_one_send(*args: Any) -> int:
        nonlocal sent
        sent += 1
        if sent == 1:
            return await send(*args)
        await asyncio.Event().wait()  # as if killed right after the first send
        raise AssertionError("unreachable")

    async def stuck(*args: Any) -> Any:
        await asyncio.Event().wait()

    connection.api.send = killed_after_one_send
    connection.api.edit = connection.engine.outboxes[USER].probe = stuck
    server.fail_next("sendMessage", LOST)
    server.push_text(USER, USER, "say first; sleep 30")
    await server.wait_for(lambda: any(c.outcome == "dropped"
                                      for c in server.calls_to("sendMessage")), 15)
    await h.app.stop()
    orphan = server.bot_messages(USER)[-1]
    assert orphan.text == "⏳ working…" and orphan.buttons
    await start()
    await server.wait_for(lambda: "interrupted" in orphan.text and not orphan.buttons, 15)


async def test_after_an_outage_the_chat_catches_up_at_once(start, server) -> None:
    """Backoff up to 30 s: only the shared reachability explains a catch-up within seconds."""
    h = await start(backoff_min="2", backoff_max="30")
    server.push_text(USER, USER, "say first; sleep 1; tick 4 0.1 part")
    await server.wait_for(containing(server, USER, "first"), 15)
    await server.take_down()
    await h.recorder.finished(1)  # it ended while Telegram was down
    await asyncio.sleep(4)  # an outage long enough for the backoff to grow past 4 s
    back = asyncio.get_running_loop().time()
    await server.bring_up()
    await server.wait_for(containing(server, USER, DONE), 30)
    assert asyncio.get_running_loop().time() - back < 3.0


async def test_one_answer_wakes_every_waiter_and_one_caller_probes_at_a_time() -> None:
    clock = ManualClock()
    reach = Reachability(clock, probe_every=0.5)
    reach.failed()
    woken: list[tuple[str, float]] = []

    async def waiter(name: str, delay: float) -> None:
        await reach.wait(delay)
        woken.append((name, clock.monotonic()))

    tasks = [asyncio.ensure_future(waiter(name, 20.0)) for name in "abc"]
    await clock.advance(0)
    assert clock.sleepers.count(0.5) == 1  # one of them tries again in 0.5 s, not all three
    await clock.advance(0.5)
    assert len(woken) == 1 and woken[0][1] == 0.5
    reach.answered()
    await asyncio.gather(*tasks)
    assert len(woken) == 3 and {at for _, at in woken[1:]} == {0.5}  # at once, not after 20 s
