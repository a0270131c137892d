"""Benchmark: many channels streaming at once through the Discord frontend, Discord's limits on.

Runs the real App (real discord.py over real sockets: REST and the gateway; the fake agent as
real subprocesses) against ``tests/fakes/discord_api.py`` with Discord's rate limits enforced
(``tests/fakes/discord/limits.py``): the fake answers 429 when a channel gets more than 5
messages or 5 edits in 5 s, or the bot makes more than 50 requests in a second. Each channel
of one guild has its own allowed user, who mentions the bot there; each channel's agent
prints a chunk every ``--interval`` seconds for ``--seconds``, the channels' phases spread
over one interval (``bench/live_streams.py`` runs it). Printed, all measured in this run,
for one channel alone (the baseline) and then for all of them, with the ratios:

- 429s received (target 0; discord.py waits out a bucket it has seen empty, which shows as
  delay, not as a 429);
- delay from the agent's output (the text event reaching the frontend) to the first send or
  edit showing it, p50 and p99 overall, and the worst channel's p99 (target under 1.5 s);
- REST calls per turn for the channels (send, edit, typing, ...), and text chunks per edit;
- whether every final message holds every chunk.

    python bench/discord.py [--channels 50] [--seconds 60] [--interval 2.0]
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the repository root first (tests.fakes, bench.live_streams), this directory off the path:
# this file is discord.py and would shadow discord.py's own package
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from bench.live_streams import Platform, Shown, main  # noqa: E402
from tests.fakes.discord_api import (  # noqa: E402
    DEFAULT_TOKEN,
    EDIT,
    HISTORY,
    SEND,
    TYPING,
    FakeDiscordServer,
)

GUILD = 900_000_000_000_000_001
FIRST_CHANNEL = 900_000_000_000_001_000
FIRST_USER = 900_000_000_000_002_000
KINDS = {SEND: "send", EDIT: "edit", TYPING: "typing", HISTORY: "history"}


class Discord(Platform):
    name = "discord"
    chat_word = "channel"
    token_env = "DISCORD_BOT_TOKEN"
    token = DEFAULT_TOKEN

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeDiscordServer]:
        async with FakeDiscordServer(enforce_limits=True) as server:
            self.server = server
            yield server

    def settings(self, chats: int) -> str:
        users = ", ".join(f'"{FIRST_USER + i}"' for i in range(chats))
        return f'api_base = "{self.server.api_base}"\nallowed_users = [{users}]\n'

    def prepare(self, chats: int) -> list[int]:
        channels = {FIRST_CHANNEL + i: f"stream-{i}" for i in range(chats)}
        self.server.add_guild(GUILD, "Cadenza bench", channels=channels,
                              members=[FIRST_USER + i for i in range(chats)])
        return list(channels)

    def push(self, index: int, chat: int, prompt: str) -> None:
        self.server.push_message(chat, FIRST_USER + index, prompt, mention_bot=True)

    def final_text(self, chat: int) -> str:
        return "\n".join(self.server.texts(chat))

    def shown(self) -> Shown:
        shown: Shown = defaultdict(list)
        for call in self.server.calls:
            if call.route in (SEND, EDIT) and call.ok and call.channel_id is not None:
                shown[call.channel_id].append((call.finished_at or call.at,
                                               call.response.get("content", "")))
        return shown

    def calls(self) -> Counter[str]:
        return Counter(KINDS.get(call.route, call.route) for call in self.server.calls
                       if call.channel_id is not None)

    def rate_limited(self) -> list[tuple[float, str]]:
        return [(call.at, f"{KINDS.get(call.route, call.route)} "
                 f"({call.headers.get('X-RateLimit-Scope', 'scripted')})")
                for call in self.server.calls if call.status == 429]

    async def wait_for(self, predicate: Callable[[], object], timeout: float) -> None:
        await self.server.wait_for(predicate, timeout)


if __name__ == "__main__":
    main(Discord(), __doc__, interval=2.0)
