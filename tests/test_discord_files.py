"""Files both ways on Discord, through the real discord.py and the fake Discord
(``tests/fakes/discord_api.py``): a message's files become one ``ChatMessage`` with
``attachments`` (caption: its text without the bot's mention), fetched from their URL only by
the plugin taking them, never for a stranger and never merged into a paste; ``Notice.files``
reach the chat as attachments.

The plugin taking the files here is ``Taker`` (fetches each into ``tmp_path``, records the
message), so these tests pin the frontend's side alone; the last one runs the files plugin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import test_discord
from cadenza.api import ChatMessage, ChatRef, hookimpl
from test_discord import (
    CHANNEL,
    DONE,
    STRANGER,
    USER,
    config,
    containing,
    dm,
    pieces_of_a_paste,
)

from tests.fakes.discord_api import DEFAULT_TOKEN, SEND

pytestmark = pytest.mark.usefixtures("agent_path")
server = test_discord.server
start = test_discord.start
OTHER_STRANGER = 900_000_000_000_000_012
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # not a picture, but bytes to compare


class Taker:
    """Takes every message's files: fetches each into ``folder``, records the message and
    the bytes fetched."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[tuple[ChatMessage, list[bytes]]] = []

    @hookimpl
    async def on_attachments(self, message: ChatMessage) -> bool:
        fetched: list[bytes] = []
        for index, attachment in enumerate(message.attachments):
            path = self.folder / f"{len(self.taken)}-{index}"
            assert attachment.fetch is not None
            await attachment.fetch(path)
            fetched.append(path.read_bytes())
        self.taken.append((message, fetched))
        return True


@pytest.fixture
def taking(start: Any, tmp_path: Path) -> Any:
    """``h, taker = await taking(**discord)``: Cadenza on the fake with ``Taker`` on."""

    async def go(**discord: str) -> tuple[Any, Taker]:
        h = await start(**discord)
        folder = tmp_path / "taken"
        folder.mkdir()
        taker = Taker(folder)
        h.app.loader.register("taker", taker)
        return h, taker

    return go


async def test_an_image_with_a_caption_in_a_dm_is_one_message(taking, server) -> None:
    h, taker = await taking()
    sent = server.push_dm(USER, "what is wrong here?",
                          attachments=[("screen shot.png", PNG, "image/png")])
    ((message, fetched),) = await server.wait_for(lambda: taker.taken, 10)
    assert message.chat == ChatRef("discord", str(dm(server)))
    assert (message.user_id, message.text, message.message_id) == (
        str(USER), "what is wrong here?", str(sent.id))
    (attachment,) = message.attachments
    assert (attachment.name, attachment.size, attachment.mime) == (
        "screen shot.png", len(PNG), "image/png")
    assert fetched == [PNG] and server.downloads == sent.attachments
    assert h.recorder.events == []  # the plugin decides whether a turn runs


async def test_three_files_on_one_message_are_one_message_with_three(taking, server) -> None:
    _, taker = await taking()
    files = [("notes.txt", b"first\n"), ("report.pdf", b"%PDF-1.4 fake"), ("photo.jpg", PNG)]
    server.push_dm(USER, attachments=files)  # no caption
    ((message, fetched),) = await server.wait_for(lambda: taker.taken, 10)
    assert message.text == ""
    assert [(a.name, a.size, a.mime) for a in message.attachments] == [
        ("notes.txt", 6, "text/plain"), ("report.pdf", 13, "application/pdf"),
        ("photo.jpg", len(PNG), "image/jpeg")]  # types as Discord guesses them
    assert fetched == [data for _, data in files]
    assert server.bot_messages(dm(server)) == []  # not "I can only read text messages"


async def test_in_a_guild_the_mention_is_not_part_of_the_caption(taking, server) -> None:
    _, taker = await taking()
    server.push_message(CHANNEL, USER, "not for the bot", attachments=[("a.txt", b"a")])
    server.push_message(CHANNEL, USER, "see this log", mention_bot=True,
                        attachments=[("b.log", b"error: it broke\n")])
    ((message, fetched),) = await server.wait_for(lambda: taker.taken, 10)
    assert message.chat == ChatRef("discord", str(CHANNEL))
    assert message.text == "see this log" and fetched == [b"error: it broke\n"]
    assert [a.filename for a in server.downloads] == ["b.log"]  # the unaddressed one: never


async def test_a_strangers_files_are_never_downloaded(taking, server) -> None:
    h, taker = await taking()
    server.push_dm(STRANGER, "run this", attachments=[("evil.sh", b"rm -rf ~\n")])
    server.push_message(CHANNEL, OTHER_STRANGER, "and this", mention_bot=True,
                        attachments=[("evil.py", b"import os\n"), ("x.png", PNG)])
    await server.wait_for(containing(server, dm(server, STRANGER), "only works for"), 10)
    await server.wait_for(containing(server, CHANNEL, "only works for"), 10)
    assert server.downloads == [] and taker.taken == [] and h.recorder.events == []


async def test_a_message_with_files_is_never_part_of_a_paste(taking, server) -> None:
    h, taker = await taking()
    piece = pieces_of_a_paste("say first")[0]  # long: held a second for the next piece
    caption = "z" * len(piece)
    server.push_dm(USER, piece)
    server.push_dm(USER, caption, attachments=[("c.txt", b"c")])
    ((message, _),) = await server.wait_for(lambda: taker.taken, 10)
    assert message.text == caption  # not the paste's next piece, nor held with it
    await server.wait_for(containing(server, dm(server), DONE), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.prompt == piece  # the held piece ran alone


async def test_a_notices_files_reach_the_chat_as_attachments(start, server, tmp_path) -> None:
    h = await start()
    channel = dm(server)
    picture, notes = tmp_path / "chart.png", tmp_path / "notes.md"
    picture.write_bytes(PNG)
    notes.write_text("# Notes\n")
    await h.bot.notify(ChatRef("discord", str(channel)), "here is the chart", kind="files",
                       files=(picture, notes))

    def shown() -> list[tuple[str, bytes]]:
        return [(a.filename, a.data) for m in server.bot_messages(channel)
                for a in m.attachments]

    await server.wait_for(lambda: len(shown()) == 2, 10)
    assert shown() == [("chart.png", PNG), ("notes.md", b"# Notes\n")]
    assert "here is the chart" in server.bot_messages(channel)[0].content



async def test_a_file_discord_will_not_take_is_named_in_the_chat(start, server,
                                                                 tmp_path) -> None:
    h = await start()
    channel = dm(server)
    chat = ChatRef("discord", str(channel))
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(b"x" * (10 * 1024 * 1024 + 1))  # over a bot's 10 MiB: never uploaded
    small.write_bytes(b"y" * 2000)
    await h.bot.notify(chat, "", kind="files", files=(big,))
    said = await server.wait_for(containing(server, channel, "big.bin could not be sent"), 10)
    assert "(10.0 MB, more than the 10 MB Discord takes). It is kept on" in said.content
    assert server.calls_to(SEND)[-1].files == []
    server.max_upload_bytes = 1000  # a server whose limit is lower: Discord answers 413
    await h.bot.notify(chat, "", kind="files", files=(small,))
    said = await server.wait_for(containing(server, channel, "small.bin could not be sent"), 10)
    assert server.count_status(413) == 1 and server.downloads == []


async def test_with_the_files_plugin_files_go_both_ways(server, start_app, monkeypatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)
    h = await start_app(config(server).replace("discord = true", "discord = true\nfiles = true"))
    async with asyncio.timeout(15):
        await h.plugin("discord").engine.ready.wait()
    workdir = Path(h.bot.workdir)
    (workdir / ".cadenza-outbox" / "answer.txt").write_text("42\n")  # as an agent would
    server.push_dm(USER, "what is in it?", attachments=[("notes.txt", b"the notes\n")])
    channel = dm(server)
    await server.wait_for(containing(server, channel, DONE), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    (inbox,) = (workdir / ".cadenza-inbox").iterdir()
    assert (inbox / "notes.txt").read_bytes() == b"the notes\n"
    assert turn.id == inbox.name and "notes.txt" in turn.prompt
    assert turn.prompt.endswith("what is in it?")
    sent = await server.wait_for(lambda: [a for m in server.bot_messages(channel)
                                          for a in m.attachments], 10)
    assert [(a.filename, a.data) for a in sent] == [("answer.txt", b"42\n")]
