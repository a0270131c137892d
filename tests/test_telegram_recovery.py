"""A crash never leaves a Telegram chat saying "working…" for ever (issue 13): the live
message of a turn that Cadenza could not finish is edited at the next start to say the turn
was interrupted, and whether it resumes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import conftest
import pytest
import test_telegram
from test_telegram import USER, containing

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start


# --------------------------------------------------------------------------- crashes


async def test_a_live_message_left_by_kill_9_says_interrupted_at_the_next_start(
        server, token, tmp_path, start_app) -> None:
    toml = test_telegram.config(server)
    (tmp_path / "plugins.toml").write_text(toml)
    proc = conftest.start(["run", "--config", str(tmp_path / "plugins.toml"), "--state-dir",
                           str(tmp_path / "state")], {}, tmp_path)
    try:
        server.push_text(USER, USER, "say first; sleep 30; say resumed")
        live = await server.wait_for(containing(server, USER, "first"), 30)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert "⏳ working" in live.text and live.buttons  # what a crash leaves behind
    h = await start_app(toml)  # the same state directory: the journal finds the turn
    await server.wait_for(lambda: "interrupted" in live.text, 15)
    assert live.text == ("first\n\n⏸ interrupted (Cadenza crashed) — resuming it below "
                         "(attempt 2)")
    assert not live.buttons
    assert [e.turn.attempt for e in h.recorder.events if e.kind == "started"] == [2]
    edits = [c for c in server.calls_to("editMessageText")
             if c.params["message_id"] == live.message_id]
    assert edits[-1].ok and "reply_markup" not in edits[-1].params


async def test_an_abandoned_or_unjournaled_live_message_says_so(start, server) -> None:
    h = await start(tables="[journal]\nmax_attempts = 0\n", flush_timeout="0.2")
    server.push_text(USER, USER, "say first; sleep 30")
    live = await server.wait_for(containing(server, USER, "first"), 15)
    connection = h.app.loader.instances["telegram"].connection

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    connection.api.edit = stuck  # nothing reaches Telegram any more, as if killed
    await h.app.stop()
    assert "⏳ working" in live.text
    await start(tables="[journal]\nmax_attempts = 0\n")
    await server.wait_for(lambda: "interrupted" in live.text, 15)
    assert live.text.startswith("first\n\n⏸ interrupted (Cadenza restarted) — it will not be "
                                "resumed: it was interrupted")
    assert not live.buttons
