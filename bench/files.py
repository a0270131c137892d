"""Benchmark: a file sent in a chat, from the upload to the start of the agent's turn.

Runs the real App (real aiogram against ``tests/fakes/telegram_api.py``, real discord.py
against ``tests/fakes/discord_api.py``, the files plugin on, the scripted agent as a real
subprocess) and, ``--runs`` times per platform, has the chat's allowed user send a
``--size`` MB file with a caption (so the turn starts as soon as the file is in). Measured:
from the push (the file is on the fake and the update/MESSAGE_CREATE is queued) to the
turn's ``on_turn_start`` (awaited just before the agent is spawned; the "started" event
follows it), noted by ``Probe``.

The baseline, in the same run and the same chat, interleaved with the uploads:

- the bare download of the same bytes from the same fake with a plain aiohttp client
  (Telegram: getFile, then the file route; Discord: a GET of the attachment's url), written
  to a file as the frontends do;
- the agent's start alone: a text prompt in the same chat, from its push to its turn's
  ``on_turn_start`` (polling/gateway, frontend, core, no file).

Printed per platform: p50 and p99 of each, and the ratio upload-to-start against
download + text-to-start (1.0×: a file costs its download and nothing else). One upload and
one prompt go first, not counted (the first connections and the first turn of the chat).

    python bench/files.py [--runs 10] [--size 10] [--platforms telegram discord]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# the repository root first (tests.fakes, bench.live_streams), this directory off the path:
# bench/discord.py would shadow discord.py's own package
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

import aiohttp  # noqa: E402
from cadenza.api import ChatMessage, StreamEvent, Turn, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402

from bench.live_streams import (  # noqa: E402
    DONE,
    connected,
    environment,
    fake_agent_path,
    loop_time,
    percentile,
    ratio,
)
from tests.fakes.discord_api import DEFAULT_TOKEN as DISCORD_TOKEN  # noqa: E402
from tests.fakes.discord_api import FakeDiscordServer  # noqa: E402
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramServer  # noqa: E402

MB = 1024 * 1024
FILE_NAME = "build.log"
CAPTION = "say read"  # the scripted agent's answer: one short text
TURN_TIMEOUT = 60.0

CONFIG = """
[plugins]
console = false
files = true
{name} = true

[agent]
default = "claude"
workdir = "workspace"

[timeout]
seconds = 600

[{name}]
{settings}"""


class Probe:
    """Notes when a message's files reach the plugins (``on_attachments``, first, leaving
    them to the files plugin), when each turn starts (``on_turn_start``, awaited just before
    the spawn) and when it ends (its terminal event)."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.starts: asyncio.Queue[tuple[float, Turn]] = asyncio.Queue()
        self.ended: dict[str, asyncio.Event] = {}

    @hookimpl(tryfirst=True)
    def on_attachments(self, message: ChatMessage) -> None:
        self.arrived.append(loop_time())

    @hookimpl(tryfirst=True)
    def on_turn_start(self, turn: Turn) -> None:
        self.starts.put_nowait((loop_time(), turn))

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.terminal:
            self.ended.setdefault(event.turn.id, asyncio.Event()).set()

    async def next_start(self) -> tuple[float, Turn]:
        return await asyncio.wait_for(self.starts.get(), TURN_TIMEOUT)

    async def end(self, turn: Turn) -> None:
        await asyncio.wait_for(self.ended.setdefault(turn.id, asyncio.Event()).wait(),
                               TURN_TIMEOUT)


class Side(ABC):
    """One chat platform: its fake, the frontend's settings, one chat with its user."""

    name: str
    token_env: str
    token: str

    @abstractmethod
    def serve(self) -> AbstractAsyncContextManager[Any]:
        """The fake API running for the block (``prepare`` then sets up the chat)."""

    @abstractmethod
    def settings(self) -> str:
        """The frontend's settings table (without its header)."""

    @abstractmethod
    def prepare(self) -> None: ...

    @abstractmethod
    def push_file(self, data: bytes, caption: str) -> str:
        """The user sends ``data`` with ``caption``; returns a handle for ``download``."""

    @abstractmethod
    def push_text(self, text: str) -> None: ...

    @abstractmethod
    async def download(self, session: aiohttp.ClientSession, handle: str) -> bytes:
        """The bare download of the pushed file, as any HTTP client would fetch it."""

    @abstractmethod
    def answers(self) -> int:
        """How many of the bot's messages in the chat show a finished turn."""

    @abstractmethod
    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None: ...


class Telegram(Side):
    name = "telegram"
    token_env = "TELEGRAM_BOT_TOKEN"
    token = TELEGRAM_TOKEN
    chat = 100_001  # a private chat: the chat is its user

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeTelegramServer]:
        async with FakeTelegramServer(max_poll_wait=1.0) as server:
            self.server = server
            yield server

    def settings(self) -> str:
        return (f'api_base = "{self.server.base_url}"\nallowed_users = [{self.chat}]\n'
                "poll_timeout = 1\n")

    def prepare(self) -> None:
        pass

    def push_file(self, data: bytes, caption: str) -> str:
        update_id = self.server.push_document(self.chat, self.chat, FILE_NAME, data,
                                              caption=caption)
        update = next(u for u in self.server.pushed_updates if u["update_id"] == update_id)
        return str(update["message"]["document"]["file_id"])

    def push_text(self, text: str) -> None:
        self.server.push_text(self.chat, self.chat, text)

    async def download(self, session: aiohttp.ClientSession, handle: str) -> bytes:
        base = self.server.base_url
        async with session.post(f"{base}/bot{self.token}/getFile",
                                json={"file_id": handle}) as response:
            response.raise_for_status()
            path = (await response.json())["result"]["file_path"]
        async with session.get(f"{base}/file/bot{self.token}/{path}") as response:
            response.raise_for_status()
            return await response.read()

    def answers(self) -> int:
        return sum(DONE in m.text for m in self.server.bot_messages(self.chat))

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        await self.server.wait_for(predicate, timeout)


class Discord(Side):
    name = "discord"
    token_env = "DISCORD_BOT_TOKEN"
    token = DISCORD_TOKEN
    guild = 900_000_000_000_000_001
    channel = 900_000_000_000_001_000
    user = 900_000_000_000_002_000

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeDiscordServer]:
        async with FakeDiscordServer() as server:
            self.server = server
            yield server

    def settings(self) -> str:
        return f'api_base = "{self.server.api_base}"\nallowed_users = ["{self.user}"]\n'

    def prepare(self) -> None:
        self.server.add_guild(self.guild, "Cadenza bench", channels={self.channel: "files"},
                              members=[self.user])

    def push_file(self, data: bytes, caption: str) -> str:
        message = self.server.push_message(self.channel, self.user, caption, mention_bot=True,
                                           attachments=[(FILE_NAME, data, "text/plain")])
        return message.attachments[0].url

    def push_text(self, text: str) -> None:
        self.server.push_message(self.channel, self.user, text, mention_bot=True)

    async def download(self, session: aiohttp.ClientSession, handle: str) -> bytes:
        async with session.get(handle) as response:
            response.raise_for_status()
            return await response.read()

    def answers(self) -> int:
        return sum(DONE in text for text in self.server.texts(self.channel))

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        await self.server.wait_for(predicate, timeout)


@dataclass
class Figures:
    """One platform's seconds, run by run."""

    name: str
    upload: list[float] = field(default_factory=list)  # push of the file -> turn start
    download: list[float] = field(default_factory=list)  # bare getFile + download / GET
    prompt: list[float] = field(default_factory=list)  # push of a text -> turn start
    ingress: list[float] = field(default_factory=list)  # push of the file -> on_attachments
    first: tuple[float, float] = (0.0, 0.0)  # the uncounted first upload and prompt


async def measure(side: Side, runs: int, data: bytes) -> Figures:
    figures = Figures(side.name)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with environment(PATH=fake_agent_path(directory), **{side.token_env: side.token}):
            async with side.serve(), aiohttp.ClientSession() as session:
                side.prepare()
                path = directory / "plugins.toml"
                path.write_text(CONFIG.format(name=side.name, settings=side.settings()))
                app = App(Config.load(path), directory / "state")
                probe = Probe()
                app.add_plugin("probe", probe)
                await app.start()
                try:
                    await connected(app, side.name)
                    turns = 0

                    async def turn(push: Callable[[], None]) -> tuple[float, float, Turn]:
                        """Push, then wait for the turn's start and end and the bot's last
                        edit (so that it does not overlap the next); when it was pushed, and
                        when it started."""
                        nonlocal turns
                        push()
                        pushed = loop_time()
                        started, started_turn = await probe.next_start()
                        await probe.end(started_turn)
                        turns += 1
                        await side.wait_for(lambda: side.answers() >= turns, TURN_TIMEOUT)
                        return pushed, started, started_turn

                    handle = ""

                    def upload() -> None:
                        nonlocal handle
                        handle = side.push_file(data, CAPTION)

                    for run in range(runs + 1):
                        pushed, started, started_turn = await turn(upload)
                        if FILE_NAME not in started_turn.prompt:
                            raise RuntimeError(f"the turn after the upload is not its own: "
                                               f"{started_turn.prompt[:200]!r}")
                        saved = app.settings.workdir / ".cadenza-inbox" / started_turn.id
                        if (saved / FILE_NAME).stat().st_size != len(data):
                            raise RuntimeError(f"{saved / FILE_NAME} is not the whole file")
                        began = loop_time()
                        body = await side.download(session, handle)
                        (directory / "bare").write_bytes(body)
                        fetched = loop_time() - began
                        if len(body) != len(data):
                            raise RuntimeError(f"the bare download got {len(body)} bytes")
                        text_pushed, text_started, _ = await turn(
                            partial(side.push_text, f"say prompt {run}"))
                        if run == 0:
                            figures.first = (started - pushed, text_started - text_pushed)
                            continue
                        figures.upload.append(started - pushed)
                        figures.ingress.append(probe.arrived[-1] - pushed)
                        figures.download.append(fetched)
                        figures.prompt.append(text_started - text_pushed)
                finally:
                    await app.stop()
    return figures


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def report(figures: Figures, size: int) -> None:
    runs = len(figures.upload)
    print(f"{figures.name}: {runs} runs, {size / MB:g} MB file with a caption")
    rows = (("upload -> turn start", figures.upload),
            ("bare download (baseline)", figures.download),
            ("text prompt -> turn start (baseline)", figures.prompt))
    for label, values in rows:
        print(f"  {label:<38} p50 {ms(percentile(values, 0.5))}   "
              f"p99 {ms(percentile(values, 0.99))}   max {ms(max(values))}")
    base = [d + p for d, p in zip(figures.download, figures.prompt, strict=True)]
    added = [u - b for u, b in zip(figures.upload, base, strict=True)]
    print(f"  {'download + prompt (baseline sum)':<38} p50 {ms(percentile(base, 0.5))}   "
          f"p99 {ms(percentile(base, 0.99))}")
    print(f"  upload-to-start against download + prompt: p50 "
          f"{ratio(percentile(figures.upload, 0.5), percentile(base, 0.5))}, p99 "
          f"{ratio(percentile(figures.upload, 0.99), percentile(base, 0.99))}; added by the "
          f"file path beyond them: p50 {ms(percentile(added, 0.5)).strip()}")
    taking = [u - i for u, i in zip(figures.upload, figures.ingress, strict=True)]
    print(f"  of which push -> files reach the plugins p50 "
          f"{ms(percentile(figures.ingress, 0.5)).strip()}, then download, save, submit -> "
          f"turn start p50 {ms(percentile(taking, 0.5)).strip()}")
    print(f"  first (not counted): upload {ms(figures.first[0]).strip()}, "
          f"prompt {ms(figures.first[1]).strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size", type=float, default=10.0, help="the file's size in MB")
    parser.add_argument("--platforms", nargs="+", choices=("telegram", "discord"),
                        default=["telegram", "discord"])
    args = parser.parse_args()
    sides: dict[str, Side] = {"telegram": Telegram(), "discord": Discord()}
    data = bytes(range(256)) * (int(args.size * MB) // 256) + b"\n" * (int(args.size * MB) % 256)
    began = time.monotonic()
    for name in args.platforms:
        figures = asyncio.run(measure(sides[name], args.runs, data))
        report(figures, len(data))
    print(f"wall time: {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
