"""Many chats streaming at once through a chat frontend, under the platform's limits: what
bench/telegram.py and bench/discord.py share.

A platform (``Platform``) is the fake server of its API with the limits enforced, the
``[plugins]`` table and the settings that switch its frontend on, how a user's message is
pushed and what the bot showed. ``measure`` runs the real App (the real client library over
real sockets, the scripted agent as real subprocesses) against it: each chat's agent prints
a chunk every ``interval`` seconds for ``seconds``, the chats' phases spread over one
interval, and ``Probe`` notes when each chunk reaches the frontends (the ``on_stream_event``
dispatch). The output-to-edit delay of a chunk is the time from there to the end of the
first successful send or edit whose text shows it.

``main`` measures the baseline first, in the same run: the same stream in one chat alone,
where nothing else competes for the platform's limits or the machine; then the chats all at
once, and prints both with the ratios. ``LoopStalls`` notes how late the event loop ran
meanwhile (all the agents spawn in the first second): what the client paced apart then
reaches the API together.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.api import StreamEvent, hookimpl
from cadenza.app import App
from cadenza.config import Config
from cadenza.testing.agents import write_launchers

WARM_UP = 5.0  # seconds of start-up burst left out of the steady-state figures
DONE = "✅ done"

Shown = dict[int, list[tuple[float, str]]]  # per chat: when a send/edit finished, its text


class Probe:
    """Notes when each text chunk reaches the frontends (the on_stream_event dispatch)."""

    def __init__(self, expected: int) -> None:
        self.chunks: list[tuple[int, float, str]] = []  # chat, loop time, marker
        self.ended = 0
        self.expected = expected
        self.finished = asyncio.Event()

    @hookimpl(tryfirst=True)
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.kind == "text":
            marker = event.text.strip()
            self.chunks.append((int(event.turn.chat.chat_id), loop_time(), marker))
        elif event.terminal:
            self.ended += 1
            if self.ended >= self.expected:
                self.finished.set()


class LoopStalls:
    """How late the event loop wakes a 10 ms sleep: while it is busy (50 agents spawning at
    once), calls paced to go apart go together."""

    TICK = 0.01

    def __init__(self) -> None:
        self.lateness: list[tuple[float, float]] = []  # loop time, seconds late

    async def watch(self) -> None:
        while True:
            before = loop_time()
            await asyncio.sleep(self.TICK)
            self.lateness.append((before, loop_time() - before - self.TICK))

    def worst(self, start: float, end: float) -> float:
        return max((late for at, late in self.lateness if start <= at < end), default=0.0)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block, and as it was after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fake_agent_path(directory: Path) -> str:
    bin_dir = write_launchers(directory / "bin")  # the scripted agent, as claude and codex
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def agent_config(chats: int) -> str:
    """The scripted claude for every chat, all of them running at once."""
    return f"""
[agent]
default = "claude"

[timeout]
seconds = 3600

[core]
hook_timeout = 30
max_running = {chats}  # every chat's agent at once (the default runs 10)
"""


class Platform(ABC):
    """One chat platform's side of the benchmark."""

    name: str  # the frontend plugin, and [name] its settings table
    chat_word: str  # "chat", "channel": how the platform calls a conversation
    token_env: str  # the variable the frontend reads its bot token from
    token: str

    @abstractmethod
    def serve(self) -> AbstractAsyncContextManager[Any]:
        """The fake API, limits enforced, running for the block."""

    @abstractmethod
    def settings(self, chats: int) -> str:
        """The frontend's settings table for ``chats`` chats (without its header)."""

    @abstractmethod
    def prepare(self, chats: int) -> list[int]:
        """The chats (their ids, as the frontend's ChatRef.chat_id) with an allowed user."""

    @abstractmethod
    def push(self, index: int, chat: int, prompt: str) -> None:
        """The chat's user sends ``prompt``."""

    @abstractmethod
    def final_text(self, chat: int) -> str:
        """Everything the bot's messages in the chat show now."""

    @abstractmethod
    def shown(self) -> Shown:
        """Every successful send and edit of a text, per chat."""

    @abstractmethod
    def calls(self) -> Counter[str]:
        """API calls made for the chats (sends, edits, typing, ...), by kind."""

    @abstractmethod
    def rate_limited(self) -> list[tuple[float, str]]:
        """The 429s the fake answered: when (loop time), and to what (call kind, scope)."""

    @abstractmethod
    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None: ...


@dataclass
class Run:
    """What one run measured."""

    chats: int
    count: int  # chunks per chat
    ran: float  # seconds from the first prompt to the last turn's end
    delays: dict[int, list[float]]  # per chat, per chunk (inf: never shown)
    steady: dict[int, list[float]]  # the same, for chunks after the first WARM_UP seconds
    calls: Counter[str]
    rate_limited: list[tuple[float, str]]  # seconds since the first prompt, to what
    chunks: int
    complete: int  # chats whose final messages hold every chunk
    stalls: tuple[float, float]  # the loop's worst lateness in the first WARM_UP s, and after
    every: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.every = [d for values in self.delays.values() for d in values]

    @property
    def sends_and_edits(self) -> int:
        return self.calls["send"] + self.calls["edit"]

    def p(self, share: float) -> float:
        return percentile(self.every, share)

    def steady_p(self, share: float) -> float:
        return percentile([d for values in self.steady.values() for d in values], share)

    def worst_chat_p99(self) -> float:
        return max((percentile(v, 0.99) for v in self.delays.values() if v), default=float("nan"))


def delays(chunks: list[tuple[int, float, str]], shown: Shown,
           since: float = float("-inf")) -> dict[int, list[float]]:
    """Per chat: for each chunk (that reached the frontend after ``since``), the time until
    a successful send/edit showed it."""
    found: dict[int, list[float]] = defaultdict(list)
    for chat, at, marker in chunks:
        if at < since:
            continue
        pattern = re.compile(re.escape(marker) + r"(?!\d)")
        for when, text in shown[chat]:
            if when >= at and pattern.search(text):
                found[chat].append(when - at)
                break
        else:
            found[chat].append(float("inf"))
    return found


async def connected(app: App, frontend: str) -> None:
    """Wait until the frontend is connected (its engine ready to send), so that its start
    (Discord's catch-up reads the channels handled before) is not measured."""
    engine = app.loader.instances[frontend].engine
    await asyncio.wait_for(engine.ready.wait(), 30)


async def measure(platform: Platform, chats: int, seconds: float, interval: float) -> Run:
    """One run: ``chats`` chats streaming at once, through a fresh App and fake."""
    count = max(1, round(seconds / interval))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with environment(PATH=fake_agent_path(directory),
                         **{platform.token_env: platform.token}):
            async with platform.serve():
                ids = platform.prepare(chats)
                path = directory / "plugins.toml"
                path.write_text(f"[plugins]\nconsole = false\n{platform.name} = true\n"
                                f"{agent_config(chats)}\n[{platform.name}]\n"
                                f"{platform.settings(chats)}")
                app = App(Config.load(path), directory / "state")
                probe = Probe(chats)
                app.add_plugin("probe", probe)
                stalls = LoopStalls()
                watching = asyncio.ensure_future(stalls.watch())
                await app.start()
                try:
                    await connected(app, platform.name)
                    started = loop_time()
                    for index, chat in enumerate(ids):
                        # agents start together but print out of step, as independent agents do
                        offset = interval * index / chats
                        platform.push(index, chat, f"sleep {offset:.3f}; "
                                      f"tick {count} {interval} c{index}")
                    await asyncio.wait_for(probe.finished.wait(), seconds * 3 + 60)
                    ran = loop_time() - started
                    await platform.wait_for(lambda: all(
                        DONE in platform.final_text(chat) for chat in ids), 60)
                finally:
                    await app.stop()
                    watching.cancel()
                shown = platform.shown()
                complete = sum(
                    all(re.search(rf"c{index} {k}(?!\d)", platform.final_text(chat))
                        for k in range(1, count + 1))
                    for index, chat in enumerate(ids))
                return Run(chats, count, ran, delays(probe.chunks, shown),
                           delays(probe.chunks, shown, started + WARM_UP), platform.calls(),
                           [(at - started, what) for at, what in platform.rate_limited()],
                           len(probe.chunks), complete,
                           (stalls.worst(started, started + WARM_UP),
                            stalls.worst(started + WARM_UP, float("inf"))))


def ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}×" if base > 0 and base != float("inf") else "n/a"


def report(platform: Platform, base: Run, run: Run) -> None:
    word = platform.chat_word
    for label, figures in (("baseline", base), ("measured", run)):
        print(f"{label}: {figures.chats} {word}(s), {figures.count} chunks per {word}, every "
              f"{figures.ran / figures.count:.2f} s; ran {figures.ran:.1f} s")
        limited = figures.rate_limited
        print(f"  429s received: {len(limited)} (of {sum(figures.calls.values())} calls for "
              f"the {word}s)" + "".join(f"; {n} × {what}" for what, n in
                                       Counter(what for _, what in limited).most_common())
              + (f"; {sum(at < WARM_UP for at, _ in limited)} in the first {WARM_UP:g} s"
                 if limited else ""))
        missing = sum(d == float("inf") for d in figures.every)
        print(f"  delay agent output -> edit: p50 {figures.p(0.5):.3f} s, p99 "
              f"{figures.p(0.99):.3f} s, max {max(figures.every):.3f} s; worst {word} p99 "
              f"{figures.worst_chat_p99():.3f} s; chunks never shown: {missing}")
        print(f"  after the first {WARM_UP:g} s: p50 {figures.steady_p(0.5):.3f} s, "
              f"p99 {figures.steady_p(0.99):.3f} s")
        print("  API calls per turn: " + ", ".join(
            f"{kind} {n / figures.chats:.1f}" for kind, n in figures.calls.most_common())
            + f"; total {sum(figures.calls.values()) / figures.chats:.1f}")
        print(f"  text chunks per send/edit: "
              f"{figures.chunks / max(figures.sends_and_edits, 1):.2f}")
        print(f"  final messages complete: {figures.complete}/{figures.chats}")
        print(f"  event loop stalled up to {figures.stalls[0]:.3f} s in the first {WARM_UP:g} s, "
              f"{figures.stalls[1]:.3f} s after")
    chat_p99 = [percentile(v, 0.99) for v in run.delays.values() if v]
    print(f"{run.chats} {word}s against 1 alone: delay p50 {ratio(run.p(0.5), base.p(0.5))}, "
          f"p99 {ratio(run.p(0.99), base.p(0.99))}; after the first {WARM_UP:g} s p50 "
          f"{ratio(run.steady_p(0.5), base.steady_p(0.5))}, p99 "
          f"{ratio(run.steady_p(0.99), base.steady_p(0.99))} (median {word} p99 "
          f"{statistics.median(chat_p99):.3f} s); API calls per turn "
          f"{ratio(sum(run.calls.values()) / run.chats, sum(base.calls.values()))}")
    met = not run.rate_limited and run.p(0.99) < 1.5 and run.complete == run.chats
    print(f"goal (0 × 429, delay p99 < 1.5 s, every answer complete): "
          f"{'met' if met else 'NOT met'}")


def arguments(platform: Platform, doc: str, interval: float) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(f"--{platform.chat_word}s", dest="chats", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long each agent streams (the baseline as long)")
    parser.add_argument("--interval", type=float, default=interval,
                        help="seconds between two chunks of one agent")
    return parser.parse_args()


def main(platform: Platform, doc: str, interval: float) -> None:
    args = arguments(platform, doc, interval)
    began = time.monotonic()

    async def both() -> tuple[Run, Run]:
        base = await measure(platform, 1, args.seconds, args.interval)
        return base, await measure(platform, args.chats, args.seconds, args.interval)

    base, run = asyncio.run(both())
    report(platform, base, run)
    print(f"wall time: {time.monotonic() - began:.1f} s")

