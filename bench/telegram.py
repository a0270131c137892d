"""Benchmark: many chats streaming at once through the Telegram frontend, Telegram's limits on.

Runs the real App (real aiogram over real sockets, the fake agent as real subprocesses)
against ``tests/fakes/telegram_api.py`` with flood limits enforced: the fake answers 429 like
Telegram when a chat gets more than about one message a second, a group more than 20 a
minute, or the bot more than 30 a second. Each chat's agent prints a chunk every
``--interval`` seconds for ``--seconds``, the chats' phases spread over one interval. Printed,
all measured in this run:

- 429s received (target 0);
- delay from the agent's output (the text event reaching the frontend) to the first edit
  showing it, p50 and p99 overall, and the worst chat's p99 (target under 1.5 s);
- Bot API calls per turn, by method, and text chunks per edit (the coalescing ratio);
- whether every final message holds every chunk.

    python bench/telegram.py [--chats 50] [--seconds 60] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fakes: the fake Bot API

from cadenza.api import StreamEvent, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.testing.agents import write_launchers  # noqa: E402

from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer  # noqa: E402

FIRST_CHAT = 100_001
WARM_UP = 5.0  # seconds of start-up burst left out of the steady-state figures
DONE = "✅ done"


class Probe:
    """Notes when each text chunk reaches the frontends (the on_stream_event dispatch)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, float, str]] = []  # chat, loop time, marker
        self.ended = 0
        self.finished = asyncio.Event()
        self.expected = 0
        self.started = 0.0

    @hookimpl(tryfirst=True)
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.kind == "text":
            marker = event.text.strip()
            self.chunks.append((int(event.turn.chat.chat_id), loop_time(), marker))
        elif event.terminal:
            self.ended += 1
            if self.ended >= self.expected:
                self.finished.set()


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def config(base_url: str, chats: int) -> str:
    users = ", ".join(str(FIRST_CHAT + i) for i in range(chats))
    return f"""
[plugins]
console = false
telegram = true

[agent]
default = "claude"

[timeout]
seconds = 3600

[core]
hook_timeout = 30
max_running = {chats}  # every chat's agent at once (the default runs 10)

[telegram]
api_base = "{base_url}"
allowed_users = [{users}]
poll_timeout = 1
"""


def fake_agent_path(directory: Path) -> str:
    bin_dir = write_launchers(directory / "bin")  # the scripted agent, as claude and codex
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def delays(probe: Probe, server: FakeTelegramServer,
           since: float = float("-inf")) -> dict[int, list[float]]:
    """Per chat: for each chunk (that reached the frontend after ``since``), the time until
    a successful send/edit showed it."""
    shown: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for call in server.calls:
        if call.method in ("sendMessage", "editMessageText") and call.ok:
            result = (call.response or {}).get("result") or {}
            shown[int(call.params["chat_id"])].append((call.finished_at or call.at,
                                                       result.get("text", "")))
    found: dict[int, list[float]] = defaultdict(list)
    for chat, at, marker in probe.chunks:
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


async def bench(chats: int, seconds: float, interval: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        os.environ["PATH"] = fake_agent_path(directory)
        os.environ["TELEGRAM_BOT_TOKEN"] = DEFAULT_TOKEN
        async with FakeTelegramServer(enforce_limits=True, max_poll_wait=1.0) as server:
            path = directory / "plugins.toml"
            path.write_text(config(server.base_url, chats))
            app = App(Config.load(path), directory / "state")
            probe = Probe()
            probe.expected = chats
            app.add_plugin("probe", probe)
            await app.start()
            count = max(1, round(seconds / interval))
            started = loop_time()
            for i in range(chats):
                chat = FIRST_CHAT + i
                # agents start together but print out of step, as independent agents do
                offset = interval * i / chats
                server.push_text(chat, chat, f"sleep {offset:.3f}; tick {count} {interval} c{i}")
            await asyncio.wait_for(probe.finished.wait(), seconds * 3 + 60)
            ran = loop_time() - started
            probe.started = started
            await server.wait_for(lambda: all(
                any(DONE in m.text for m in server.bot_messages(FIRST_CHAT + i))
                for i in range(chats)), 60)
            await app.stop()
            report(server, probe, chats, count, ran)


def report(server: FakeTelegramServer, probe: Probe, chats: int, count: int,
           ran: float) -> None:
    per_chat = delays(probe, server)
    everything = [d for values in per_chat.values() for d in values]
    missing = sum(d == float("inf") for d in everything)
    chat_p99 = [percentile(values, 0.99) for values in per_chat.values()]
    steady = delays(probe, server, probe.started + WARM_UP)
    steady_all = [d for values in steady.values() for d in values]
    steady_p99 = [percentile(values, 0.99) for values in steady.values() if values]
    methods = Counter(call.method for call in server.calls
                      if call.method not in ("getUpdates", "getMe", "deleteWebhook",
                                             "setMyCommands"))
    complete = 0
    for i in range(chats):
        text = "\n".join(m.text for m in server.bot_messages(FIRST_CHAT + i))
        complete += all(re.search(rf"c{i} {k}(?!\d)", text) for k in range(1, count + 1))
    edits = methods["editMessageText"] + methods["sendMessage"]
    print(f"chats: {chats}, chunks per chat: {count}, every {ran / count:.2f} s; "
          f"ran {ran:.1f} s")
    print(f"429s received: {server.count_status(429)} "
          f"(of {sum(methods.values())} send/edit/typing calls)")
    print(f"delay agent output -> edit: p50 {percentile(everything, 0.5):.3f} s, "
          f"p99 {percentile(everything, 0.99):.3f} s, max {max(everything):.3f} s; "
          f"worst chat p99 {max(chat_p99):.3f} s, median chat p99 "
          f"{statistics.median(chat_p99):.3f} s; chunks never shown: {missing}")
    print(f"  after the first {WARM_UP:g} s (all {chats} turns starting at once): p50 "
          f"{percentile(steady_all, 0.5):.3f} s, p99 {percentile(steady_all, 0.99):.3f} s; "
          f"worst chat p99 {max(steady_p99, default=float('nan')):.3f} s")
    print("API calls per turn: " + ", ".join(
        f"{method} {n / chats:.1f}" for method, n in methods.most_common())
        + f"; total {sum(methods.values()) / chats:.1f}")
    print(f"text chunks per send/edit: {len(probe.chunks) / max(edits, 1):.2f}")
    print(f"final messages complete: {complete}/{chats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two chunks of one agent")
    args = parser.parse_args()
    started = time.monotonic()
    asyncio.run(bench(args.chats, args.seconds, args.interval))
    print(f"wall time: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
