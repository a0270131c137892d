"""The files plugin through the running app and the scripted agent: attachments saved in the
turn's inbox folder and named in the prompt, limits, hostile names, the outbox sent once,
symlinks and /get refused outside the working directory, the preamble once."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

from cadenza.api import Attachment, ChatMessage, Notice
from cadenza.plugins.files import NO_CAPTION, PREAMBLE
from cadenza.plugins.files_images import parse
from cadenza.plugins.files_names import clean_name
from conftest import CHAT


def files_config(extra: str = "") -> str:
    """plugins.toml with the files plugin on (the kit runs without it) and the scripted claude."""
    return f"[plugins]\nfiles = true\n\n{extra}\n"


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + b"\0" * 40


def attachment(name: str, data: bytes, *, size: int | None = -1, mime: str = "",
               fetched: list[str] | None = None) -> Attachment:
    async def fetch(path: Path) -> None:
        if fetched is not None:
            fetched.append(name)
        path.write_bytes(data)

    return Attachment(name, len(data) if size == -1 else size, mime, fetch)


def file_notices(h) -> list[Notice]:
    return [n for n in h.recorder.notices if n.files]


def error_notices(h) -> list[Notice]:
    return [n for n in h.recorder.notices if n.kind in ("error", "refusal")]


def inbox_files(h) -> list[Path]:
    inbox = h.bot.workdir / ".cadenza-inbox"
    return sorted(p for p in inbox.rglob("*") if p.is_file()) if inbox.exists() else []


async def send(h, *items: Attachment, caption: str = "") -> None:
    await h.bot.handle(ChatMessage(CHAT, "u1", caption, attachments=items))


async def test_an_attachment_is_saved_in_its_turn_folder_and_named_in_the_prompt(
        start_app, tmp_path: Path) -> None:
    (tmp_path / "workspace" / ".git" / "info").mkdir(parents=True)  # a git repository
    h = await start_app(files_config())
    await send(h, attachment("screenshot.png", png(1280, 720), mime="image/png"),
               caption="what is wrong here?")
    (end,) = await h.recorder.finished()
    turn = end.turn
    saved = h.bot.workdir / ".cadenza-inbox" / turn.id / "screenshot.png"
    assert saved.read_bytes() == png(1280, 720)
    named = (f"The user attached `screenshot.png` (1280×720 PNG image, 69 bytes) at "
             f".cadenza-inbox/{turn.id}/screenshot.png.\n\nwhat is wrong here?")
    assert turn.prompt == named and turn.user_id == "u1"  # the journal never sees the preamble
    assert h.recorder.text_of(turn.id) == f"echo: {PREAMBLE}\n\n{named}"
    exclude = (h.bot.workdir / ".git" / "info" / "exclude").read_text()
    assert exclude.splitlines() == [".cadenza-inbox/", ".cadenza-outbox/"]


async def test_files_without_a_caption_are_looked_at_and_an_album_is_one_turn(
        start_app) -> None:
    h = await start_app(files_config("[files]\nwait = 0.2"))
    await send(h, attachment("log.txt", b"x" * 3000, mime="text/plain"),
               attachment("log.txt", b"second"))
    (end,) = await h.recorder.finished()  # nobody said what to do: after ``wait``
    folder = f".cadenza-inbox/{end.turn.id}"
    assert end.turn.prompt == (
        f"The user attached `log.txt` (text/plain, 2.9 KB) at {folder}/log.txt.\n"
        f"The user attached `log-2.txt` (6 bytes) at {folder}/log-2.txt.\n\n{NO_CAPTION}")


async def test_the_next_prompt_after_files_without_a_caption_is_their_caption(
        start_app) -> None:
    h = await start_app(files_config())  # wait: 60 s
    await send(h, attachment("shot.png", png(10, 10), mime="image/png"))
    await send(h, attachment("trace.txt", b"boom"))
    await h.recorder.wait_for(lambda: [n for n in h.recorder.notices if "Got it" in n.text])
    await h.say("/status")  # a command is not a caption
    await h.say("why does it crash?")
    (end,) = await h.recorder.finished()
    folder = f".cadenza-inbox/{end.turn.id}"
    assert end.turn.prompt == (
        f"The user attached `shot.png` (10×10 PNG image, 69 bytes) at {folder}/shot.png.\n"
        f"The user attached `trace.txt` (4 bytes) at {folder}/trace.txt.\n\n"
        "why does it crash?")
    await h.say("say and then")  # the files are taken: the next prompt is a turn of its own
    _, after = await h.recorder.finished(2)
    assert after.turn.prompt == "say and then"


async def test_oversized_files_are_refused_before_the_download_with_nothing_written(
        start_app) -> None:
    h = await start_app(files_config("[files]\nmax_bytes = 1000\nmax_turn_bytes = 1500"))
    fetched: list[str] = []
    await send(h, attachment("big.bin", b"x" * 1001, fetched=fetched), caption="look")
    await send(h, attachment("a.bin", b"x" * 800, fetched=fetched),
               attachment("b.bin", b"x" * 800, fetched=fetched))
    refusals = await h.recorder.wait_for(lambda: len(error_notices(h)) == 2
                                         and error_notices(h))
    assert "big.bin is 1001 bytes, over the limit of 1000 bytes per file" in refusals[0].text
    assert "1.6 KB together, over the limit of 1.5 KB" in refusals[1].text
    assert all("Nothing was saved" in n.text for n in refusals)
    assert fetched == [] and inbox_files(h) == [] and h.recorder.events == []


async def test_a_file_larger_than_announced_is_deleted_after_the_download(start_app) -> None:
    h = await start_app(files_config("[files]\nmax_bytes = 1000"))
    await send(h, attachment("ok.txt", b"fine"),
               attachment("liar.bin", b"x" * 5000, size=None), caption="look")
    (refusal,) = await h.recorder.wait_for(lambda: error_notices(h))
    assert "liar.bin is 4.9 KB, over the limit" in refusal.text
    assert inbox_files(h) == [] and h.recorder.events == []  # the whole message is dropped


async def test_hostile_names_are_cleaned(start_app) -> None:
    h = await start_app(files_config())
    long = "a" * 300 + ".txt"
    await send(h, *(attachment(name, b"data") for name in
                    ("../../etc/passwd", ".bashrc", long, "bad\x00na\nme.txt", "..", "")),
               caption="look")
    (end,) = await h.recorder.finished()
    folder = h.bot.workdir / ".cadenza-inbox" / end.turn.id
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["passwd", "bashrc", "a" * 96 + ".txt", "badname.txt", "file",
                            "file-2"])
    assert inbox_files(h) == sorted(folder / name for name in names)  # nothing elsewhere
    assert clean_name("C:\\Users\\x\\..\\evil.exe") == "evil.exe"
    assert clean_name("é" * 150 + ".png").encode().__len__() <= 200


def test_image_headers() -> None:
    gif = b"GIF89a" + struct.pack("<HH", 640, 480)
    webp = b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (99).to_bytes(3, "little") + \
        (49).to_bytes(3, "little")
    jpeg = (b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"\0" * 14
            + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 600, 800) + b"\0" * 12)
    assert parse(png(1280, 720)) == (1280, 720, "PNG")
    assert parse(gif) == (640, 480, "GIF")
    assert parse(webp) == (100, 50, "WebP")
    assert parse(jpeg) == (800, 600, "JPEG")
    assert parse(b"\xff\xd8\xff") is None and parse(b"plain text") is None


async def test_an_outbox_file_is_sent_once(start_app) -> None:
    h = await start_app(files_config())
    await h.say("tool printf 'the report' > .cadenza-outbox/report.txt")  # after the preamble
    (end,) = await h.recorder.finished()
    (notice,) = await h.recorder.wait_for(lambda: file_notices(h))
    sent = h.bot.workdir / ".cadenza-outbox" / "sent" / end.turn.id / "report.txt"
    assert notice.files == (sent,) and notice.kind == "files" and notice.chat == CHAT
    assert sent.read_text() == "the report"
    await h.say("say again")
    await h.recorder.finished(2)
    assert len(file_notices(h)) == 1 and not error_notices(h)


async def test_a_symlink_out_of_the_outbox_is_refused(start_app, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("token")
    h = await start_app(files_config())
    await h.say(f"tool ln -s {tmp_path / 'secret'} .cadenza-outbox/innocent.txt")
    await h.recorder.finished()
    (refusal,) = await h.recorder.wait_for(lambda: error_notices(h))
    assert "innocent.txt was not sent: it is a symbolic link" in refusal.text
    assert file_notices(h) == []


async def test_get_sends_a_file_of_the_workdir_and_nothing_outside(
        start_app, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("token")
    h = await start_app(files_config())
    (h.bot.workdir / "notes.txt").write_text("notes")
    (h.bot.workdir / "link").symlink_to(tmp_path / "secret")
    for path in ("../secret", "link", str(tmp_path / "secret"), "missing.txt", "a\x00b"):
        await h.say(f"/get {path}")
    await h.say("/get notes.txt")
    (notice,) = await h.recorder.wait_for(lambda: file_notices(h))
    assert notice.files == (h.bot.workdir / "notes.txt",)
    refusals = [n.text for n in error_notices(h)]
    assert len(refusals) == 5 and all("not a file inside the agent's working directory" in t
                                      for t in refusals)


async def test_the_preamble_comes_on_a_conversations_first_turn_only(start_app) -> None:
    h = await start_app(files_config())
    await h.say("hello")
    (first,) = await h.recorder.finished()
    await h.say("hello again")
    _, second = await h.recorder.finished(2)
    assert h.recorder.text_of(first.turn.id) == f"echo: {PREAMBLE}\n\nhello"
    assert h.recorder.text_of(second.turn.id) == "echo: hello again"


async def test_doctor_warns_when_the_agent_may_not_write(start_app) -> None:
    h = await start_app(files_config('[agent]\ndefault = "claude"'))  # runs no turn
    ((ok, text),) = h.plugin("files").doctor_checks()
    assert ok is None and "[agent.claude] args" in text
    h = await h.restart(files_config('[agent]\ndefault = "claude"\n[agent.claude]\n'
                                     'args = ["--permission-mode", "acceptEdits"]'))
    assert h.plugin("files").doctor_checks() == []


def test_the_console_prints_the_path_of_a_file(run_cli, tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "notes.txt").write_text("notes")
    done = run_cli("run", input="/get notes.txt\n", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert f"notes.txt\n📎 {tmp_path / 'workspace' / 'notes.txt'}\n" in done.stdout


async def test_old_inbox_folders_are_deleted_at_startup(start_app, tmp_path: Path) -> None:
    inbox = tmp_path / "workspace" / ".cadenza-inbox"
    for name, age_days in (("old", 8), ("recent", 6)):
        (inbox / name).mkdir(parents=True)
        (inbox / name / "f.txt").write_text("x")
        when = time.time() - age_days * 86400
        os.utime(inbox / name, (when, when))
    await start_app(files_config())
    assert sorted(p.name for p in inbox.iterdir()) == ["recent"]


async def test_outbox_entries_too_big_or_not_files_are_refused_once(start_app) -> None:
    h = await start_app(files_config("[files]\nmax_bytes = 10"))
    await h.say("tool head -c 11 /dev/zero > .cadenza-outbox/big.bin; "
                "tool mkdir .cadenza-outbox/folder")
    await h.recorder.finished()
    refusals = await h.recorder.wait_for(lambda: len(error_notices(h)) == 2 and error_notices(h))
    assert "big.bin was not sent: it is 11 bytes, over the limit of 10 bytes" in refusals[0].text
    assert "folder was not sent: only regular files are sent" in refusals[1].text
    await h.say("say again")
    await h.recorder.finished(2)
    assert len(error_notices(h)) == 2 and file_notices(h) == []


async def test_files_for_a_named_session_run_in_it(start_app) -> None:
    h = await start_app(files_config())
    await send(h, attachment("plan.md", b"# plan"), caption="@docs check this plan")
    (end,) = await h.recorder.finished()
    assert end.turn.session == "docs"
    assert end.turn.prompt.startswith("The user attached `plan.md` (6 bytes) at .cadenza-inbox/")
    assert end.turn.prompt.endswith("/plan.md.\n\ncheck this plan")
