"""An answer over ``[core] max_output`` (issue 13): the chat gets its head and tail as text,
and the whole output as a document (sendDocument, a multipart upload); when the document
cannot be sent, the chat is told so, clearly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_telegram
from cadenza.frontends.live.transport import Outgoing, Rejected
from cadenza.frontends.telegram.egress import Api
from cadenza.testing.fake_agent import big_text
from test_telegram import DONE, USER, containing

from tests.fakes.telegram_api import Fault

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start
CAP = "[core]\nmax_output = 20000\n"


async def test_the_whole_output_of_a_capped_turn_arrives_as_a_document(start, server) -> None:
    h = await start(tables=CAP)
    server.push_text(USER, USER, "big 100000")
    (document,) = await server.wait_for(lambda: server.documents(USER), 20)
    (end,) = h.recorder.terminals()
    assert end.data["output_omitted"] > 70_000
    assert document.data.decode() == big_text(100_000)
    assert document.document["file_name"] == f"output-{end.turn.id}.txt"
    assert document.text.startswith("📄 The whole output of this turn (100 KB); ")
    assert document.text.endswith("KB of it was not shown above.")
    texts = server.texts(USER)
    assert any("KB omitted" in text for text in texts) and DONE in texts[-2]
    assert sum(len(text) for text in texts) < 25_000  # the chat got the head and the tail only
    assert len(server.bot_messages(USER)) <= 8


@pytest.mark.parametrize("fault", [
    Fault.error(413, "Request Entity Too Large"),
    Fault.bad_request("Bad Request: file is too big"),
])
async def test_a_document_that_cannot_be_sent_is_a_clear_message(start, server, fault) -> None:
    h = await start(tables=CAP)
    server.fail_next("sendDocument", fault)
    server.push_text(USER, USER, "big 100000")
    told = await server.wait_for(containing(server, USER, "could not be sent as a file"), 20)
    (end,) = h.recorder.terminals()
    assert end.data["output_file"] in told.text and server.documents(USER) == []
    # the chat goes on as usual
    server.push_text(USER, USER, "say still here")
    await server.wait_for(containing(server, USER, "still here"), 15)


async def test_a_missing_or_oversized_file_is_refused_before_any_upload(
        server, tmp_path: Path) -> None:
    client = server.make_bot()
    try:
        with pytest.raises(Rejected, match="cannot read the file"):
            await Api(client).send_document(1, None, Outgoing("c", "c", document=(
                str(tmp_path / "gone.txt"), "gone.txt")))
        big = tmp_path / "big.txt"
        big.write_bytes(b"x" * 2048)
        with pytest.raises(Rejected, match="more than the 0 MB Telegram lets a bot upload"):
            await Api(client, max_upload=1024).send_document(1, None, Outgoing(
                "c", "c", document=(str(big), "big.txt")))
        assert not server.calls_to("sendDocument")
    finally:
        await client.session.close()
