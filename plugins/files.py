"""Files both ways between the chat and the agent.

In: the files of an allowed message are checked against the size limits (before and after
the download), fetched into ``<workdir>/.cadenza-inbox/<turn>/`` under cleaned names and named
in the prompt of the turn they start: their caption; without one, the person's next prompt
(``take_prompt``), or "Look at the attached file(s)." after ``wait`` seconds.
Out: the agent leaves files for the user in ``<workdir>/.cadenza-outbox/`` (the preamble of a
new conversation says so); at the end of each turn every new regular file there is moved to
``.cadenza-outbox/sent/<turn>/`` and sent to the turn's chat. ``/get PATH`` sends a file of
the working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.api import (
    Attachment,
    Bot,
    ChatMessage,
    ChatRef,
    PluginContext,
    StreamEvent,
    hookimpl,
)
from cadenza.plugins.files_images import image_info
from cadenza.plugins.files_names import clean_name, human_size, inside, unique_path

INBOX = ".cadenza-inbox"
OUTBOX = ".cadenza-outbox"
SENT = "sent"
NO_CAPTION = "Look at the attached file(s)."
PREAMBLE = (f"To give the user a file, write it into {OUTBOX}/ in your working directory: "
            "it is sent to the chat when your turn ends.")
MB = 1024 * 1024
# agents that read their prompt as words; the command agent runs it (a shell script)
_PROMPT_AGENTS_SKIP = frozenset({"command"})
# what lets each built-in agent write its working directory (its [agent.NAME] args)
_WRITES = {
    "claude": ("--permission-mode acceptEdits", "--permission-mode bypassPermissions",
               "--permission-mode=acceptEdits", "--permission-mode=bypassPermissions",
               "--dangerously-skip-permissions"),
    "codex": ("-s workspace-write", "--sandbox workspace-write", "-s danger-full-access",
              "--sandbox danger-full-access", "--sandbox=workspace-write",
              "--sandbox=danger-full-access", "--full-auto",
              "--dangerously-bypass-approvals-and-sandbox"),
}
_HOW = {"claude": 'args = ["--permission-mode", "acceptEdits"]',
        "codex": 'args = ["-s", "workspace-write"]'}


@dataclass(frozen=True)
class FilesSettings:
    max_bytes: int = field(default=20 * MB, metadata={"minimum": 1})  # one file, each way
    max_turn_bytes: int = field(default=50 * MB, metadata={"minimum": 1})  # one message's files
    keep_days: float = field(default=7, metadata={"minimum": 0})  # inbox folders, sent files
    wait: float = field(default=60, metadata={"minimum": 0})  # for a caption-less file's prompt


class Refused(Exception):
    """A reason the chat is told, nothing kept."""


@dataclass(eq=False)
class Batch:
    """Files of one person in one chat on their way into one turn."""

    chat: ChatRef
    user_id: str
    turn_id: str
    folder: Path | None = None
    lines: list[str] = field(default_factory=list)  # one per file that arrived
    taken: set[str] = field(default_factory=set)  # file names used in the folder
    downloading: int = 0
    caption: str | None = None  # what to do with them, once known
    due: bool = False  # waited long enough for a caption
    dropped: bool = False  # one of its messages was refused: nothing of it runs
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


class FilesPlugin:
    def __init__(self, context: PluginContext) -> None:
        self.settings = context.settings.load(FilesSettings)
        self.config = context.config
        self.context = context
        self.clock = context.clock
        self.log = context.log
        self.bot: Bot | None = None
        self.workdir: Path | None = None
        self.waiting: dict[tuple[str, str], Batch] = {}  # files without a caption, by person

    # --- lifecycle ----------------------------------------------------------------------

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        self.bot = bot
        self.workdir = Path(bot.workdir).resolve()  # type: ignore[attr-defined]
        self._exclude_from_git()
        with contextlib.suppress(OSError):  # a workdir the agent cannot write: doctor says so
            (self.workdir / OUTBOX).mkdir(exist_ok=True)
        self._expire()

    def _exclude_from_git(self) -> None:
        info = self.workdir / ".git" / "info"
        if not (self.workdir / ".git").is_dir():
            return
        exclude = info / "exclude"
        try:
            info.mkdir(exist_ok=True)
            text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
            missing = [f"{name}/" for name in (INBOX, OUTBOX)
                       if f"{name}/" not in text.splitlines()]
            if missing:
                lead = "" if not text or text.endswith("\n") else "\n"
                with exclude.open("a", encoding="utf-8") as handle:
                    handle.write(lead + "".join(f"{line}\n" for line in missing))
        except OSError as exc:
            self.log.warning("cannot write %s: %s", exclude, exc)

    def _expire(self) -> None:
        """Delete the inbox folders and sent files older than ``keep_days``."""
        cutoff = self.clock.time() - self.settings.keep_days * 86400
        for parent in (self.workdir / INBOX, self.workdir / OUTBOX / SENT):
            if not parent.is_dir() or parent.is_symlink():
                continue
            for folder in parent.iterdir():
                try:
                    old = folder.lstat().st_mtime < cutoff
                    if old and folder.is_dir() and not folder.is_symlink():
                        shutil.rmtree(folder)
                except OSError as exc:
                    self.log.warning("cannot delete %s: %s", folder, exc)

    # --- in ------------------------------------------------------------------------------

    @hookimpl
    def on_attachments(self, message: ChatMessage) -> bool | None:
        if self.bot is None or self.workdir is None:
            return None
        key = (message.chat.key, message.user_id)
        batch = self.waiting.get(key)  # files sent before without a caption: this joins them
        if batch is None:
            batch = Batch(message.chat, message.user_id, uuid.uuid4().hex[:12],
                          due=self.settings.wait <= 0)
            if not message.text.strip() and not batch.due:
                self.waiting[key] = batch
                batch.timer = self.context.spawn(self._wait(key, batch), "files-wait")
        if message.text.strip():
            batch.caption = message.text
        batch.downloading += 1
        # downloads take longer than a hook may: the chat hears from the task
        self.context.spawn(self._take(self.bot, message, batch), "attachments")
        return True

    @hookimpl
    async def take_prompt(self, message: ChatMessage) -> bool | None:
        """The next prompt of someone whose files wait for a caption is that caption."""
        batch = self.waiting.get((message.chat.key, message.user_id))
        if batch is None or self.bot is None:
            return None
        batch.caption = message.text if batch.caption is None else (
            f"{batch.caption}\n\n{message.text}")
        await self._submit_when_ready(self.bot, batch)
        return True

    async def _wait(self, key: tuple[str, str], batch: Batch) -> None:
        await self.clock.sleep(self.settings.wait)
        batch.due = True
        if self.bot is not None and self.waiting.get(key) is batch:
            await self._submit_when_ready(self.bot, batch)

    async def _take(self, bot: Bot, message: ChatMessage, batch: Batch) -> None:
        try:
            try:
                self._check_announced(message.attachments)
                folder = batch.folder = batch.folder or self._turn_folder(batch.turn_id)
                lines = [await self._fetch(item, folder, batch.taken)
                         for item in message.attachments]
                self._check_total(folder)
            except Refused as refusal:
                await bot.notify(message.chat, f"📎 {refusal} Nothing was saved.",
                                 kind="error")
                self._drop(batch)
                return
            except Exception as exc:
                self.log.warning("files from %s not taken: %s", message.chat.key, exc)
                await bot.notify(message.chat, "📎 The files could not be downloaded "
                                 f"({type(exc).__name__}); send them again.", kind="error")
                self._drop(batch)
                return
            if batch.dropped:  # another message of it was refused meanwhile
                _remove(batch.folder)
                return
            batch.lines.extend(lines)
        finally:
            batch.downloading -= 1
        if batch.caption is None and not batch.due:
            await bot.notify(message.chat, "📎 Got it. Say what the agent should do with it; "
                             f"in {self.settings.wait:g} s it starts with “{NO_CAPTION}”")
        await self._submit_when_ready(bot, batch)

    async def _submit_when_ready(self, bot: Bot, batch: Batch) -> None:
        """Start the batch's turn once its files are in and what to do with them is known
        (or was waited for long enough)."""
        if batch.dropped or batch.downloading or (batch.caption is None and not batch.due):
            return
        self._forget(batch)
        if not batch.lines:  # every file was refused: the chat was told why
            _remove(batch.folder)
            return
        caption = (batch.caption or NO_CAPTION).strip()
        files = "\n".join(batch.lines)
        if caption.startswith("@") and len(words := caption[1:].split(None, 1)) == 2:
            # "@NAME PROMPT": for a named session (a Discord session's thread says so too),
            # which the core hands to the sessions plugin as it does a typed one
            session, rest = words
            await bot.handle(ChatMessage(batch.chat, batch.user_id,
                                         f"@{session} {files}\n\n{rest}"))
            return
        turn = await bot.submit(batch.chat, f"{files}\n\n{caption}", user_id=batch.user_id,
                                turn_id=batch.turn_id)
        if turn is None:  # the chat's queue is full (it was told)
            _remove(batch.folder)

    def _drop(self, batch: Batch) -> None:
        """A message of the batch was refused: nothing of it runs."""
        self._forget(batch)
        _remove(batch.folder)
        batch.dropped = True

    def _forget(self, batch: Batch) -> None:
        if self.waiting.get((batch.chat.key, batch.user_id)) is batch:
            del self.waiting[(batch.chat.key, batch.user_id)]
        if batch.timer is not None and batch.timer is not asyncio.current_task():
            batch.timer.cancel()

    def _check_announced(self, items: tuple[Attachment, ...]) -> None:
        limit = self.settings.max_bytes
        for item in items:
            if item.size is not None and item.size > limit:
                raise Refused(f"{clean_name(item.name)} is {human_size(item.size)}, over the "
                              f"limit of {human_size(limit)} per file.")
        total = sum(item.size or 0 for item in items)
        if total > self.settings.max_turn_bytes:
            raise Refused(f"These files are {human_size(total)} together, over the limit of "
                          f"{human_size(self.settings.max_turn_bytes)} per message.")

    def _turn_folder(self, turn_id: str) -> Path:
        inbox = self.workdir / INBOX
        inbox.mkdir(exist_ok=True)
        if inbox.is_symlink() or not inside(inbox, self.workdir):
            raise Refused(f"{INBOX} in the working directory is not a plain folder.")
        folder = inbox / turn_id
        folder.mkdir()
        return folder

    async def _fetch(self, item: Attachment, folder: Path, taken: set[str]) -> str:
        if item.fetch is None:
            raise Refused(f"{clean_name(item.name)} cannot be downloaded from this chat.")
        path = unique_path(folder, clean_name(item.name), taken)
        await item.fetch(path)
        size = path.lstat().st_size if path.is_file() and not path.is_symlink() else None
        if size is None:
            raise Refused(f"{path.name} did not arrive as a file.")
        if size > self.settings.max_bytes:
            raise Refused(f"{path.name} is {human_size(size)}, over the limit of "
                          f"{human_size(self.settings.max_bytes)} per file.")
        return (f"The user attached `{path.name}` ({_describe(path, size, item.mime)}) at "
                f"{path.relative_to(self.workdir)}.")

    def _check_total(self, folder: Path) -> None:
        total = sum(entry.lstat().st_size for entry in folder.iterdir())
        if total > self.settings.max_turn_bytes:
            raise Refused(f"These files are {human_size(total)} together, over the limit of "
                          f"{human_size(self.settings.max_turn_bytes)} per message.")

    # --- out -----------------------------------------------------------------------------

    @hookimpl
    def prompt_preamble(self, turn: Any) -> str | None:
        return None if turn.agent in _PROMPT_AGENTS_SKIP else PREAMBLE

    @hookimpl
    async def on_stream_event(self, event: StreamEvent) -> None:
        if event.terminal and self.bot is not None and self.workdir is not None:
            await self._send_outbox(self.bot, event.turn.chat, event.turn.id)

    async def _send_outbox(self, bot: Bot, chat: ChatRef, turn_id: str) -> None:
        outbox = self.workdir / OUTBOX
        if not outbox.is_dir():
            return
        if outbox.is_symlink() or not inside(outbox, self.workdir):
            await bot.notify(chat, f"⚠️ {OUTBOX} is not a plain folder of the working "
                             "directory: nothing in it is sent.", kind="error")
            return
        entries = sorted(e for e in outbox.iterdir() if e.name != SENT)
        if not entries:
            return
        sent = outbox / SENT / turn_id
        sent.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for entry in entries:
            problem = self._unsendable(entry)
            moved = unique_path(sent, entry.name, taken)
            try:
                os.rename(entry, moved)  # sent once: moved aside before it goes out
            except OSError as exc:
                self.log.warning("cannot move %s aside: %s", entry, exc)
                continue
            if problem:
                await bot.notify(chat, f"⚠️ {OUTBOX}/{entry.name} was not sent: {problem}.",
                                 kind="error")
            else:
                await bot.notify(chat, entry.name, kind="files", files=(moved,))

    def _unsendable(self, path: Path) -> str | None:
        """Why ``path`` may not be sent to the chat; None when it may."""
        try:
            info = path.lstat()
        except OSError as exc:
            return exc.strerror or str(exc)
        if stat.S_ISLNK(info.st_mode):
            return "it is a symbolic link (only regular files are sent)"
        if not stat.S_ISREG(info.st_mode):
            return "only regular files are sent (zip a folder first)"
        if not inside(path, self.workdir):
            return "it is outside the working directory"
        if info.st_size > self.settings.max_bytes:
            return (f"it is {human_size(info.st_size)}, over the limit of "
                    f"{human_size(self.settings.max_bytes)}")
        return None

    # --- /get ----------------------------------------------------------------------------

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("get", self.cmd_get, help="send a file of the agent's working directory",
                 usage="PATH")

    async def cmd_get(self, bot: Bot, message: ChatMessage, args: str) -> None:
        if self.workdir is None:
            return
        if not args:
            await bot.notify(message.chat, "Usage: /get PATH (a file of the agent's working "
                             "directory).", kind="error")
            return
        path = self.workdir / args
        if not inside(path, self.workdir):
            await bot.notify(message.chat, f"/get: {args} is not a file inside the agent's "
                             "working directory.", kind="refusal")
            return
        real = path.resolve()
        size = real.stat().st_size if real.is_file() else None
        if size is None:
            await bot.notify(message.chat, f"/get: {args} is not a file.", kind="error")
        elif size > self.settings.max_bytes:
            await bot.notify(message.chat, f"/get: {args} is {human_size(size)}, over the "
                             f"limit of {human_size(self.settings.max_bytes)}.", kind="error")
        else:
            await bot.notify(message.chat, real.name, kind="files", files=(real,))

    # --- doctor --------------------------------------------------------------------------

    @hookimpl
    def doctor_checks(self) -> list[tuple[bool | None, str]]:
        checks: list[tuple[bool | None, str]] = []
        default = self.config.settings("agent").values.get("default", "auto")
        for agent in ("claude", "codex"):
            table = self.config.settings(f"agent.{agent}").values
            if default != agent and (default != "auto" or not shutil.which(
                    str(table.get("binary", agent)))):
                continue
            args = " ".join(str(a) for a in table.get("args", []))
            if not any(way in args for way in _WRITES[agent]):
                checks.append((None, f"files: {agent} may not write its working directory, "
                               f"so files it makes for the chat ({OUTBOX}/) cannot arrive: set "
                               f"[agent.{agent}] {_HOW[agent]}"))
        return checks


def _describe(path: Path, size: int, mime: str) -> str:
    image = image_info(path)
    if image is not None:
        return f"{image.width}×{image.height} {image.kind} image, {human_size(size)}"
    return f"{mime}, {human_size(size)}" if mime else human_size(size)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
