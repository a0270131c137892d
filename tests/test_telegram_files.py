"""Files both ways in Telegram (issue 19), with the real aiogram client against the fake Bot
API: a photo, a document or an album sent by an allowed person becomes one message with
attachments, each fetched only when the ``on_attachments`` plugin asks (getFile, then the
file's URL on ``api_base``); a stranger's file is never fetched; files a plugin sends go out
as photos (images) or documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import test_telegram
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, Message
from aiohttp import ClientResponseError, RequestInfo
from cadenza.api import Attachment, ChatMessage, ChatRef, hookimpl
from cadenza.frontends.live.transport import Outgoing
from cadenza.frontends.telegram.egress import Api
from cadenza.frontends.telegram.files import MAX_DOWNLOAD, DownloadError, attachments_of
from multidict import CIMultiDict, CIMultiDictProxy
from test_telegram import GROUP, STRANGER, USER, containing, eventually
from yarl import URL

from tests.fakes.telegram_api import DEFAULT_TOKEN, MAX_DOWNLOAD_BYTES, MAX_PHOTO_BYTES, Fault

pytestmark = pytest.mark.usefixtures("agent_path")
server, token, start = test_telegram.server, test_telegram.token, test_telegram.start
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CHAT = ChatRef("telegram", str(USER))


@dataclass
class Taker:
    """An ``on_attachments`` plugin that fetches every file into ``folder`` and keeps what
    it got: the bytes, or the fetch's error."""

    folder: Path
    messages: list[ChatMessage] = field(default_factory=list)
    got: list[dict[str, bytes | str]] = field(default_factory=list)

    @hookimpl
    async def on_attachments(self, message: ChatMessage) -> bool:
        into = self.folder / str(len(self.messages))
        into.mkdir(parents=True)
        got: dict[str, bytes | str] = {}
        for number, attachment in enumerate(message.attachments):
            path = into / f"{number}-{attachment.name}"
            try:
                await attachment.fetch(path)  # type: ignore[misc]
                got[attachment.name] = path.read_bytes()
            except Exception as exc:
                got[attachment.name] = f"{type(exc).__name__}: {exc}"
        self.messages.append(message)
        self.got.append(got)
        return True


async def started(start: Any, tmp_path: Path) -> tuple[Any, Taker]:
    h = await start()
    taker = Taker(tmp_path / "taken")
    h.app.loader.register("files_taker", taker)
    return h, taker


async def taken(taker: Taker, count: int = 1) -> list[ChatMessage]:
    await eventually(lambda: len(taker.messages) >= count)
    return taker.messages


def only(attachments: tuple[Attachment, ...]) -> Attachment:
    (attachment,) = attachments
    return attachment


# --------------------------------------------------------------------------- in


async def test_a_photo_with_a_caption_is_one_message_with_its_largest_size(
        start, server, tmp_path) -> None:
    h, taker = await started(start, tmp_path)
    server.push_photo(USER, USER, PNG, caption="what is wrong here?")
    (message,) = await taken(taker)
    photo = only(message.attachments)
    assert message.text == "what is wrong here?" and message.user_id == str(USER)
    assert photo.name.startswith("photo-") and photo.name.endswith(".jpg")
    assert (photo.size, photo.mime) == (len(PNG), "image/jpeg")
    assert taker.got == [{photo.name: PNG}]  # the full size, not the small one
    assert len(server.calls_to("getFile")) == 1 and len(server.downloads) == 1
    assert h.recorder.events == []  # the plugin decides whether a turn runs


async def test_a_document_without_a_caption(start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_document(USER, USER, "notes.txt", b"line one\nline two\n")
    (message,) = await taken(taker)
    document = only(message.attachments)
    assert message.text == ""
    assert (document.name, document.size, document.mime) == ("notes.txt", 18, "text/plain")
    assert taker.got == [{"notes.txt": b"line one\nline two\n"}]


async def test_an_album_is_one_message_with_all_its_files(start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_photo(USER, USER, PNG, media_group_id="album-1")
    server.push_document(USER, USER, "b.log", b"bbb", caption="compare these",
                         media_group_id="album-1")
    server.push_photo(USER, USER, PNG[::-1], media_group_id="album-1")
    (message,) = await taken(taker)
    first, _, third = message.attachments
    assert message.text == "compare these"
    assert taker.got[0] == {first.name: PNG, "b.log": b"bbb", third.name: PNG[::-1]}
    # the next message is a message of its own
    server.push_document(USER, USER, "c.txt", b"c")
    _, later = await taken(taker, 2)
    assert [a.name for a in later.attachments] == ["c.txt"]


async def test_an_album_in_a_group_counts_when_its_caption_addresses_the_bot(
        start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_photo(GROUP, USER, PNG, caption="@cadenza_test_bot look", media_group_id="g",
                      chat_type="supergroup")
    server.push_photo(GROUP, USER, PNG, media_group_id="g", chat_type="supergroup")
    server.push_photo(GROUP, USER, PNG, caption="not for the bot", chat_type="supergroup")
    (message,) = await taken(taker)
    assert message.text == "look" and len(message.attachments) == 2
    server.push_text(GROUP, USER, "@cadenza_test_bot say after", chat_type="supergroup")
    await server.wait_for(containing(server, GROUP, "after"), 15)
    assert len(taker.messages) == 1


async def test_a_file_without_a_caption_in_a_group_counts_as_a_reply_to_the_bot(
        start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_text(GROUP, USER, "@cadenza_test_bot say hi", chat_type="supergroup")
    answer = await server.wait_for(containing(server, GROUP, "hi"), 15)
    server.push_photo(GROUP, USER, PNG, chat_type="supergroup")  # among the group's own talk
    server.push_document(GROUP, USER, "trace.txt", b"t", chat_type="supergroup",
                         reply_to=answer.message_id)
    (message,) = await taken(taker)
    assert message.text == "" and [a.name for a in message.attachments] == ["trace.txt"]
    assert taker.got == [{"trace.txt": b"t"}] and len(server.calls_to("getFile")) == 1


async def test_a_strangers_file_is_never_fetched(start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_photo(STRANGER, STRANGER, PNG, caption="run this")
    server.push_document(STRANGER, STRANGER, "x.sh", b"rm -rf /")
    server.push_photo(STRANGER, STRANGER, PNG, media_group_id="s")
    await server.wait_for(containing(server, STRANGER, "allowed_users"), 15)
    server.push_document(USER, USER, "mine.txt", b"mine")  # after the stranger's, in order
    (message,) = await taken(taker)
    assert [a.name for a in message.attachments] == ["mine.txt"]
    assert len(server.calls_to("getFile")) == 1 and len(server.downloads) == 1
    assert len(server.bot_messages(STRANGER)) == 1  # refused once


async def test_a_forwarded_file_is_quoted_like_any_forward_not_taken(
        start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_document(USER, USER, "log.txt", b"x", caption="error: disk full",
                         forward_origin={"type": "hidden_user", "sender_user_name": "Mallory",
                                         "date": 1})
    await server.wait_for(containing(server, USER, "Got the forwarded message"), 15)
    assert taker.messages == [] and not server.calls_to("getFile")


async def test_a_file_over_20_mb_is_a_clear_error_when_fetched(start, server, tmp_path) -> None:
    _, taker = await started(start, tmp_path)
    server.push_document(USER, USER, "huge.bin", b"\0" * (MAX_DOWNLOAD_BYTES + 1))
    await taken(taker)
    (error,) = taker.got[0].values()
    assert isinstance(error, str) and error.startswith("DownloadError: huge.bin (20 MB)")
    assert "up to 20 MB" in error and server.downloads == []
    assert not list((tmp_path / "taken").rglob("huge.bin"))  # nothing half-written is left


async def test_a_failed_download_names_the_file_never_the_token(
        start, server, tmp_path, monkeypatch) -> None:
    _, taker = await started(start, tmp_path)
    url = URL(f"{server.base_url}/file/bot{DEFAULT_TOKEN}/files/d1")

    async def refused(*args: Any, **kwargs: Any) -> None:
        raise ClientResponseError(RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url),
                                  (), status=502, message="Bad Gateway")

    monkeypatch.setattr(Bot, "download_file", refused)
    server.push_document(USER, USER, "a.txt", b"a")
    await taken(taker)
    assert taker.got == [{"a.txt": "DownloadError: could not download a.txt from Telegram: "
                                   "HTTP 502"}]
    assert not list((tmp_path / "taken").rglob("a.txt"))


async def test_a_voice_note_or_a_video_gets_a_name_and_a_type(server, tmp_path) -> None:
    base = {"message_id": 1, "date": 1, "chat": {"id": USER, "type": "private"}}
    voice = Message.model_validate({**base, "voice": {
        "file_id": "v", "file_unique_id": "AbC", "duration": 3, "file_size": 10}})
    video = Message.model_validate({**base, "video": {
        "file_id": "m", "file_unique_id": "XyZ", "width": 1, "height": 1, "duration": 1,
        "file_name": "clip.mov", "mime_type": "video/quicktime"}})
    client = server.make_bot()
    try:
        (note,) = attachments_of(voice, client, None)
        (clip,) = attachments_of(video, client, None)
        assert (note.name, note.size, note.mime) == ("voice-AbC.ogg", 10, "audio/ogg")
        assert (clip.name, clip.size, clip.mime) == ("clip.mov", None, "video/quicktime")
        # the cloud API's 20 MB: a bigger file is refused before any call
        big = Message.model_validate({**base, "document": {
            "file_id": "d", "file_unique_id": "D", "file_name": "big.iso",
            "file_size": MAX_DOWNLOAD + 1}})
        (iso,) = attachments_of(big, client, MAX_DOWNLOAD)
        assert iso.fetch is not None
        with pytest.raises(DownloadError, match=r"big\.iso is 20 MB; Telegram lets a bot "
                           "download files of up to 20 MB"):
            await iso.fetch(tmp_path / "big.iso")
        assert not server.calls_to("getFile")
    finally:
        await client.session.close()


# --------------------------------------------------------------------------- out


async def test_images_go_as_photos_and_other_files_as_documents(start, server, tmp_path) -> None:
    h = await start()
    picture, notes = tmp_path / "chart.png", tmp_path / "notes.txt"
    picture.write_bytes(PNG)
    notes.write_text("hello")
    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * (10 * 1024 * 1024 + 1))
    await h.bot.notify(CHAT, "the chart", kind="files", files=(picture,))
    await h.bot.notify(CHAT, "the notes", kind="files", files=(notes, big))
    await server.wait_for(lambda: len(server.documents(USER)) == 2, 15)
    (photo,) = server.photos(USER)
    assert photo.data == PNG and photo.text == "the chart"
    sent_notes, sent_big = server.documents(USER)
    assert (sent_notes.document["file_name"], sent_notes.text) == ("notes.txt", "the notes")
    assert sent_big.document["file_name"] == "huge.png"  # over 10 MB: a document
    assert len(server.calls_to("sendPhoto")) == 1


async def test_a_group_that_takes_no_photos_or_no_files_is_told_in_text(
        start, server, tmp_path) -> None:
    h = await start()
    group = ChatRef("telegram", str(GROUP))
    picture = tmp_path / "chart.png"
    picture.write_bytes(PNG)
    server.fail_next("sendPhoto", Fault.bad_request(
        "Bad Request: not enough rights to send photos to the chat"))
    await h.bot.notify(group, "the chart", kind="files", files=(picture,))
    (document,) = await server.wait_for(lambda: server.documents(GROUP), 15)
    assert document.data == PNG and document.document["file_name"] == "chart.png"
    server.fail_next("sendPhoto", Fault.bad_request(
        "Bad Request: not enough rights to send photos to the chat"))
    server.fail_next("sendDocument", Fault.bad_request(
        "Bad Request: not enough rights to send documents to the chat"))
    await h.bot.notify(group, "again", kind="files", files=(picture,))
    told = await server.wait_for(containing(server, GROUP, "chart.png could not be sent"), 15)
    assert "does not let the bot send documents" in told.text and str(picture) in told.text
    await h.bot.notify(group, "texts still arrive")
    await server.wait_for(containing(server, GROUP, "texts still arrive"), 15)


async def test_a_sent_photo_is_probed_by_its_caption(server, tmp_path) -> None:
    picture = tmp_path / "p.jpg"
    picture.write_bytes(PNG)
    client = server.make_bot()
    try:
        api = Api(client)
        out = Outgoing("<b>a</b>", "a", document=(str(picture), "p.jpg"))
        sent = await api.send_document(USER, None, out)
        assert server.message(USER, sent).photo is not None
        assert await api.probe(USER, sent, out, plain=False)  # "not modified": it is ours
        assert not await api.probe(USER, sent + 1, out, plain=False)
    finally:
        await client.session.close()



async def test_the_fake_keeps_telegrams_file_limits(server) -> None:
    client = server.make_bot()
    try:
        with pytest.raises(TelegramBadRequest, match="file is too big"):
            await client.send_photo(USER, BufferedInputFile(b"\0" * (MAX_PHOTO_BYTES + 1),
                                                            "big.png"))
        with pytest.raises(TelegramBadRequest, match="invalid file_id"):
            await client.get_file("no-such-file")
        sent = await client.send_photo(USER, BufferedInputFile(PNG, "p.png"), caption="c")
        assert sent.photo is not None and sent.caption == "c"
        assert (await client.download(sent.photo[-1].file_id)).read() == PNG  # type: ignore[union-attr]
    finally:
        await client.session.close()


# --------------------------------------------------------------------------- end to end


async def test_with_the_files_plugin_a_photo_reaches_the_agent_and_one_comes_back(
        server, token, start_app) -> None:
    toml = test_telegram.config(server).replace("telegram = true", "telegram = true\nfiles = true")
    h = await start_app(toml)
    outbox = h.bot.workdir / ".cadenza-outbox"
    outbox.mkdir(exist_ok=True)
    (outbox / "fixed.png").write_bytes(PNG[::-1])  # as an agent would, for the way back
    server.push_photo(USER, USER, PNG, caption="what is wrong here?")
    (end,) = await h.recorder.finished()
    name = f"photo-{server.messages(USER)[0].photo[-1]['file_unique_id']}.jpg"
    where = f".cadenza-inbox/{end.turn.id}/{name}"
    assert (h.bot.workdir / where).read_bytes() == PNG
    assert where in end.turn.prompt and end.turn.prompt.endswith("\n\nwhat is wrong here?")
    received = h.recorder.text_of(end.turn.id)  # the scripted agent echoes its prompt
    assert received.startswith("echo: ") and where in received
    await server.wait_for(containing(server, USER, where), 15)  # and the chat sees the answer
    (back,) = await server.wait_for(lambda: server.photos(USER), 15)
    assert back.data == PNG[::-1]  # shown inline
