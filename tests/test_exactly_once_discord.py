"""Exactly once in the chat on Discord (issue 20): a message create that Discord applied but
whose answer was lost is retried with the same nonce, so Discord answers with the first
message instead of making a copy. Real discord.py against the fake Discord, which applies the
call and then drops the connection.
"""

from __future__ import annotations

import re

import pytest
import test_discord
from test_discord import DONE, USER, containing, dm

from tests.fakes.discord.limits import SEND, Fault
from tests.fakes.discord_api import FakeDiscordServer

pytestmark = pytest.mark.usefixtures("agent_path")
server, start = test_discord.server, test_discord.start

OTHER = 900_000_000_000_000_020  # a second allowed user: the fault-free run is in their DM
SCRIPT = "say hi; sleep 0.5; big 3000; say the end"  # a live message, then a continuation
LOST = Fault.drop(after_processing=True)


def shown(server: FakeDiscordServer, channel: int) -> list[str]:
    return [re.sub(f"({DONE})[^\n]*", r"\1", message.content)
            for message in server.bot_messages(channel)]


async def settled(h: object, server: FakeDiscordServer, channel: int) -> list[str]:
    await server.wait_for(containing(server, channel, DONE), 30)
    engine = h.app.loader.instances["discord"].connection.engine  # type: ignore[attr-defined]
    await server.wait_for(lambda: not engine.outboxes[channel].items, 30)
    return shown(server, channel)


@pytest.mark.parametrize("position", ["first", "continuation"])
async def test_a_lost_answer_to_a_message_create_makes_no_copy(start, server,
                                                               position: str) -> None:
    h = await start(allowed_users=f'["{USER}", "{OTHER}"]')
    server.push_dm(OTHER, SCRIPT)
    expected = await settled(h, server, dm(server, OTHER))
    assert len(expected) >= 2
    channel = dm(server)
    if position == "first":
        server.fail_next(SEND, LOST, times=2)
    server.push_dm(USER, SCRIPT)
    if position == "continuation":
        await server.wait_for(containing(server, channel, "hi"), 15)
        server.fail_next(SEND, LOST, times=2)
    assert await settled(h, server, channel) == expected
    creates = server.calls_to(SEND)
    assert sum(call.outcome == "dropped" for call in creates) == 2
    nonces = [call.body.get("nonce") for call in creates if call.outcome == "dropped"]
    assert nonces[0] == nonces[1]  # the retry carried the first attempt's nonce
