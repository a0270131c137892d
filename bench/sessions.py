"""Named sessions at scale: memory and store size per idle session, and ``/sessions`` latency.

1. Size. The app starts once to create the tables; then N idle named sessions (10,000 by
   default, over 100 chats, each with an agent session id, a last prompt of about 200
   characters and a cost) are written to the store. The app is started again on that store,
   and on an empty copy in the same run (the baseline): the difference in memory the running
   app holds (``tracemalloc``, every allocation Python makes) divided by N is the memory per
   idle session; the database's growth divided by N is the store size per session.
   Target: under 10 KB of memory per idle session.
2. ``/sessions`` for a chat with 1,000 sessions, through ``Bot.handle`` to the notice a
   frontend receives, median of R calls, beside ``/help`` (no store access) as the baseline.

    python bench/sessions.py [--sessions 10000] [--chat-sessions 1000] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cadenza.api import ChatMessage, ChatRef, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.plugins.sessions import sessions as sessions_table  # noqa: E402
from cadenza.state import DB_NAME, Store  # noqa: E402
from sqlalchemy import insert  # noqa: E402

CONFIG = '[plugins]\nconsole = false\n[agent]\ndefault = "command"\n'
PROMPT = ("Write the changelog for the next release from the merged pull requests, group the "
          "entries by area, and link every entry to its pull request; keep it short. ")
MEMORY_TARGET = 10_000  # bytes per idle session


class Notices:
    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.last = ""

    @hookimpl
    def on_notice(self, notice):
        self.last = notice.text
        self.received.set()


async def fill(state: Path, sessions: int, chats: int, offset: int = 0) -> None:
    store = Store.in_dir(state)
    now = time.time()
    try:
        async with store.transaction():
            await store.execute(insert(sessions_table), [
                {"chat": f"bench:{n % chats}", "name": f"s{n + offset:06d}", "agent": "command",
                 "agent_session_id": f"{n:08d}-6f1e-4c1b-9d1e-2f0c3b7a5e11",
                 "last_prompt": PROMPT + str(n), "state": "idle", "created_at": now - 3600,
                 "last_used": now - 60, "turns": 3, "last_cost": 0.0421}
                for n in range(sessions)])
    finally:
        store.close()


async def started(state: Path, config: Path) -> tuple[App, Notices]:
    app = App(Config.load(config), state)
    notices = Notices()
    app.add_plugin("notices", notices)
    await app.start()
    return app, notices


async def held_memory(state: Path, config: Path) -> int:
    """Bytes Python holds for a started app on this state (tracemalloc, after a collection)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    app, _ = await started(state, config)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await app.stop()
    return held


async def command_latency(app: App, notices: Notices, chat: ChatRef, text: str,
                          calls: int) -> float:
    times = []
    for _ in range(calls):
        notices.received.clear()
        began = time.perf_counter()
        await app.bot.handle(ChatMessage(chat, "bench", text))
        await notices.received.wait()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "plugins.toml"
        config.write_text(CONFIG)
        empty, full = root / "empty", root / "full"
        for state in (empty, full):
            app, _ = await started(state, config)  # creates the tables
            await app.stop()
        size_before = (full / DB_NAME).stat().st_size
        await fill(full, args.sessions, chats=100)
        size_after = (full / DB_NAME).stat().st_size
        baseline = min([await held_memory(empty, config) for _ in range(2)])
        loaded = min([await held_memory(full, config) for _ in range(2)])
        per_session = (loaded - baseline) / args.sessions
        print(f"{args.sessions:,} idle named sessions over 100 chats")
        print(f"  app memory, no sessions      : {baseline / 1024:10,.0f} KiB")
        print(f"  app memory, with sessions    : {loaded / 1024:10,.0f} KiB")
        print(f"  memory per idle session      : {per_session:10,.0f} bytes "
              f"(target < {MEMORY_TARGET:,}: {'ok' if per_session < MEMORY_TARGET else 'MISSED'})")
        growth = (size_after - size_before) / args.sessions
        print(f"  store size per session       : {growth:10,.0f} bytes")

        busy = root / "busy"
        app, _ = await started(busy, config)
        await app.stop()
        await fill(busy, args.chat_sessions, chats=1, offset=0)
        app, notices = await started(busy, config)
        try:
            chat = ChatRef("bench", "0")
            help_time = await command_latency(app, notices, chat, "/help", args.calls)
            list_time = await command_latency(app, notices, chat, "/sessions", args.calls)
            assert notices.last.startswith("Sessions:"), notices.last[:80]
        finally:
            await app.stop()
        print(f"/sessions for a chat with {args.chat_sessions:,} sessions, median of "
              f"{args.calls} calls")
        print(f"  /help (baseline)             : {help_time * 1e3:8.3f} ms")
        print(f"  /sessions                    : {list_time * 1e3:8.3f} ms "
              f"({list_time / help_time:.1f}x /help)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--chat-sessions", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
