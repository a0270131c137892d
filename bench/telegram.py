"""Benchmark: many chats streaming at once through the Telegram frontend, Telegram's limits on.

Runs the real App (real aiogram over real sockets, the fake agent as real subprocesses)
against ``tests/fakes/telegram_api.py`` with flood limits enforced: the fake answers 429 like
Telegram when a chat gets more than about one message a second, a group more than 20 a
minute, or the bot more than 30 a second. Each chat's agent prints a chunk every
``--interval`` seconds for ``--seconds``, the chats' phases spread over one interval
(``bench/live_streams.py`` runs it). Printed, all measured in this run, for one chat alone
(the baseline) and then for all of them, with the ratios:

- 429s received (target 0);
- delay from the agent's output (the text event reaching the frontend) to the first edit
  showing it, p50 and p99 overall, and the worst chat's p99 (target under 1.5 s);
- Bot API calls per turn, by method, and text chunks per edit (the coalescing ratio);
- whether every final message holds every chunk.

    python bench/telegram.py [--chats 50] [--seconds 60] [--interval 1.0]
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the repository root first (tests.fakes, bench.live_streams), this directory off the path
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from bench.live_streams import Platform, Shown, main  # noqa: E402
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer  # noqa: E402

FIRST_CHAT = 100_001
SETUP_METHODS = ("getUpdates", "getMe", "deleteWebhook", "setMyCommands")
KINDS = {"sendMessage": "send", "editMessageText": "edit"}


class Telegram(Platform):
    name = "telegram"
    chat_word = "chat"
    token_env = "TELEGRAM_BOT_TOKEN"
    token = DEFAULT_TOKEN

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeTelegramServer]:
        async with FakeTelegramServer(enforce_limits=True, max_poll_wait=1.0) as server:
            self.server = server
            yield server

    def settings(self, chats: int) -> str:
        users = ", ".join(str(FIRST_CHAT + i) for i in range(chats))
        return (f'api_base = "{self.server.base_url}"\nallowed_users = [{users}]\n'
                "poll_timeout = 1\n")

    def prepare(self, chats: int) -> list[int]:
        return [FIRST_CHAT + i for i in range(chats)]  # private chats: a chat is its user

    def push(self, index: int, chat: int, prompt: str) -> None:
        self.server.push_text(chat, chat, prompt)

    def final_text(self, chat: int) -> str:
        return "\n".join(m.text for m in self.server.bot_messages(chat))

    def shown(self) -> Shown:
        shown: Shown = defaultdict(list)
        for call in self.server.calls:
            if call.method in KINDS and call.ok:
                result = (call.response or {}).get("result") or {}
                shown[int(call.params["chat_id"])].append((call.finished_at or call.at,
                                                           result.get("text", "")))
        return shown

    def calls(self) -> Counter[str]:
        return Counter(KINDS.get(call.method, call.method) for call in self.server.calls
                       if call.method not in SETUP_METHODS)

    def rate_limited(self) -> list[tuple[float, str]]:
        return [(call.at, KINDS.get(call.method, call.method))
                for call in self.server.calls if call.status == 429]

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        await self.server.wait_for(predicate, timeout)


if __name__ == "__main__":
    main(Telegram(), __doc__, interval=1.0)
