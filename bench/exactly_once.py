"""Benchmark: exactly once in the chat (issue 20), through the Telegram frontend.

Runs the real App (real aiogram over real sockets, the scripted agent as real subprocesses)
against ``tests/fakes/telegram_api.py`` with Telegram's flood limits enforced and the
``[telegram]`` settings an operator has by default (backoff 1 s to 30 s, long polls of 25 s),
``bench/live_streams.py`` providing the agent and App plumbing ``bench/telegram.py`` uses.

1. Lost replies. ``--turns`` turns spread over ``--chats`` private chats, each chat's turns
   one after the other (the next prompt once the chat shows the answer and its outbox is
   idle, as a user who reads it first). The turns mix every kind of write: a short answer
   (first send, final edit), a streamed one (edits), a long one (a continuation message) and
   one over ``max_output`` (a document). The same turns run twice, each through a fresh App
   and fake: fault-free (the baseline), then with ``--loss`` of the replies to sendMessage,
   editMessageText and sendDocument lost after Telegram applied the call (the fake drops the
   connection; drawn from a seeded RNG). Printed: the lost replies injected, then per chat the
   messages compared with the fault-free run's (same texts in the same order, the "✅ done ·
   N s" duration left out): orphans (extra messages), duplicates (a message shown twice),
   missing and reordered messages (goal 0 for each), and the wall time against the fault-free
   run's; also what the probes found in the id gaps, and for each copy the engine deleted
   how long it showed next to its resent twin.
2. Catching up. Private chats and groups each mid-turn when the API goes away for
   ``--outage`` seconds (``take_down``); each turn ends during the outage. Printed: per chat
   the time from the API's return (``bring_up``) until it holds the whole answer (goal under
   1.5 s; a group within its 20 messages a minute), and that as a share of the outage.

    python bench/exactly_once.py [--turns 1000] [--chats 40] [--loss 0.05] [--outage 8]
                                 [--seed 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the repository root first (tests.fakes, bench.live_streams), this directory off the path
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from cadenza.api import StreamEvent, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.frontends.live.engine import Engine  # noqa: E402

from bench.live_streams import (  # noqa: E402
    DONE,
    agent_config,
    connected,
    environment,
    fake_agent_path,
    loop_time,
    percentile,
)
from tests.fakes.telegram_api import (  # noqa: E402
    DEFAULT_TOKEN,
    JSON,
    ApiCall,
    FakeTelegramServer,
    Fault,
    StoredMessage,
)

FIRST_CHAT = 200_001  # private chats: a chat is its user
FIRST_GROUP = -1_002_000_000_001
BOT = "@cadenza_test_bot"  # the fake's bot username: a group prompt addresses it
WRITES = ("sendMessage", "editMessageText", "sendDocument")  # calls whose reply may be lost
SENDS = ("sendMessage", "sendDocument")
EDITS = ("editMessageText", "editMessageCaption")  # a probe is one of them
PROBED = (  # an edit's 400, as a probe reads it: what the id held
    ("not modified", "not modified (the bot's, showing that)"),
    ("can't be edited", "can't be edited (someone else's)"),
    ("not found", "not found (no such message)"),
)
MAX_OUTPUT = 8000  # [core] max_output: a longer answer is sent whole as a document
POLL_WAIT = 25.0  # the fake holds a long poll as long as Telegram (poll_timeout's default)
KINDS = {  # turn kind → (share of the turns, script); {tag} names the turn
    "short": (0.55, "say {tag}"),  # first send, final edit
    "streamed": (0.25, "say {tag}; tick 3 0.4 {tag}."),  # edits while it streams
    "long": (0.15, "say {tag}; big 6000"),  # over 4,096 characters: a continuation message
    "file": (0.05, "say {tag}; big 9000"),  # over max_output: head and tail, then a document
}
CATCH_UP_GOAL = 1.5  # seconds from the API's return until the chat holds the whole answer
RANDOM_NAME = re.compile(r"output-[0-9a-f]+")
DURATION = re.compile(f"({re.escape(DONE)})[^\n]*")


class Ends:
    """Counts the turns that ended in each chat (the ``on_stream_event`` dispatch)."""

    def __init__(self) -> None:
        self.ended: Counter[int] = Counter()
        self.changed = asyncio.Event()

    @hookimpl(tryfirst=True)
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.terminal:
            self.ended[int(event.turn.chat.chat_id)] += 1
            self.changed.set()
            self.changed = asyncio.Event()

    async def wait(self, chat: int, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.ended[chat] < count:
                await self.changed.wait()


@dataclass
class Cadenza:
    """A running App against the fake, and what the benchmark looks at in it."""

    app: App
    server: FakeTelegramServer
    ends: Ends

    @property
    def engine(self) -> Engine:
        engine = self.app.loader.instances["telegram"].engine
        assert engine is not None
        return engine

    def idle(self, chat: int) -> bool:
        """The chat's outbox has nothing left to show, look for or delete."""
        outbox = self.engine.outboxes.get(chat)
        return outbox is None or (outbox.idle.is_set() and not outbox.unsure
                                  and not outbox.orphans and not outbox.items)


def kit_off() -> str:
    """``[plugins]`` lines switching off what the testing kit runs without: the console (no
    terminal here) and, where installed, files (its preamble would come before every first
    prompt, and the scripted agent would echo the script instead of running it)."""
    installed = {entry.name for entry in metadata.entry_points(group="cadenza")}
    return "".join(f"{name} = false\n" for name in ("console", "files") if name in installed)


@asynccontextmanager
async def cadenza(users: list[int], chats: int, *, max_output: int | None = None,
                  limits: bool = True) -> AsyncIterator[Cadenza]:
    """A fresh fake Bot API and the real App with the Telegram frontend, its settings the
    defaults but for where the API is and who may use the bot."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with environment(PATH=fake_agent_path(directory), TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN):
            async with FakeTelegramServer(enforce_limits=limits,
                                          max_poll_wait=POLL_WAIT) as server:
                core = "" if max_output is None else f"max_output = {max_output}\n"
                path = directory / "plugins.toml"
                path.write_text(f"[plugins]\n{kit_off()}telegram = true\n"
                                f"{agent_config(chats)}{core}\n[telegram]\n"
                                f'api_base = "{server.base_url}"\n'
                                f"allowed_users = [{', '.join(map(str, users))}]\n")
                app = App(Config.load(path), directory / "state")
                ends = Ends()
                app.add_plugin("ends", ends)
                await app.start()
                try:
                    await connected(app, "telegram")
                    yield Cadenza(app, server, ends)
                finally:
                    await app.stop()


# --------------------------------------------------------------------------- lost replies


def plan(turns: int, chats: int, seed: int) -> dict[int, list[tuple[str, str]]]:
    """Each chat's turns, (kind, prompt), in order: the same for both runs."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[kind][0] for kind in kinds]
    planned: dict[int, list[tuple[str, str]]] = {FIRST_CHAT + i: [] for i in range(chats)}
    for n in range(turns):
        chat = FIRST_CHAT + n % chats
        kind = rng.choices(kinds, weights)[0]
        tag = f"c{n % chats}t{len(planned[chat]) + 1}"
        planned[chat].append((kind, KINDS[kind][1].format(tag=tag)))
    return planned


def losing(share: float, seed: int) -> Callable[[JSON], bool]:
    """A ``when`` for ``fail_next``: true for about ``share`` of the calls it is asked about."""
    rng = random.Random(seed)
    return lambda params: rng.random() < share


def view(message: StoredMessage) -> str:
    """A message as the comparison sees it: who sent it, its text without the duration (and
    a document's name without the random part the core gives it)."""
    text = DURATION.sub(r"\1", message.text)
    if message.document:
        text = f"[{RANDOM_NAME.sub('output-*', message.document.get('file_name', ''))}] {text}"
    return ("bot: " if message.from_bot else "user: ") + text


@dataclass
class Turns:
    """What one run of the planned turns measured."""

    wall: float  # from the first prompt until every chat shows every answer, settled
    chats: dict[int, list[str]]  # every chat's messages at the end (``view``)
    calls: Counter[str]  # by method, the chats' calls (setup and polls left out)
    dropped: Counter[str]  # replies lost after the call was applied, by method
    rate_limited: int
    turn_times: list[float]  # per turn: from the prompt until shown and settled
    refused: Counter[str]  # edits answered 400, by why: the probes and the lost edits' retries
    copies: list[tuple[float, float]]  # per copy deleted: seconds shown, of them next to its twin


async def run_turns(planned: dict[int, list[tuple[str, str]]], loss: float,
                    seed: int) -> Turns:
    users = list(planned)
    turns = sum(len(prompts) for prompts in planned.values())
    async with cadenza(users, len(users), max_output=MAX_OUTPUT) as running:
        server = running.server
        if loss:
            for method in WRITES:
                # armed for more calls than the run makes; ``when`` picks the ones to lose
                server.fail_next(method, Fault.drop(after_processing=True), 100 * turns,
                                 when=losing(loss, seed + len(method)))
        turn_times: list[float] = []

        async def chat(chat: int, prompts: list[tuple[str, str]]) -> None:
            for k, (_, prompt) in enumerate(prompts, 1):
                began = loop_time()
                server.push_text(chat, chat, prompt)
                await running.ends.wait(chat, k, 120)
                async with asyncio.timeout(120):
                    while not running.idle(chat):
                        await asyncio.sleep(0.02)
                turn_times.append(loop_time() - began)

        started = loop_time()
        await asyncio.gather(*(chat(c, prompts) for c, prompts in planned.items()))
        wall = loop_time() - started
        server.clear_faults()
        chats = {c: [view(m) for m in server.messages(c) if not m.deleted] for c in planned}
        calls = Counter(call.method for call in server.calls
                        if call.method not in ("getUpdates", "getMe", "deleteWebhook",
                                               "setMyCommands"))
        dropped = Counter(call.method for call in server.calls if call.outcome == "dropped")
        refused = Counter(probed(call.description or "") for call in server.calls
                          if call.method in EDITS and call.status == 400)
        return Turns(wall, chats, calls, dropped, server.count_status(429), turn_times,
                     refused, copies(server.calls))


def probed(description: str) -> str:
    return next((meaning for words, meaning in PROBED if words in description), description)


def content(call: ApiCall) -> object:
    return call.params.get("text", call.params.get("caption"))


def copies(calls: list[ApiCall]) -> list[tuple[float, float]]:
    """For each message of a lost send that was deleted: how long it showed, and how long of
    that next to its resent twin (a message shown twice until the delete). Each delete in a
    chat goes with the oldest lost send before it not yet paired (the engine looks for them
    in the order of their ids), and that send with the first send of the same content after
    it that got its answer (its retry)."""
    lost: dict[int, list[ApiCall]] = defaultdict(list)
    sent: dict[int, list[ApiCall]] = defaultdict(list)
    found: list[tuple[float, float]] = []
    for call in sorted(calls, key=lambda call: call.at):
        chat = int(call.params.get("chat_id", 0))
        if call.method in SENDS and call.outcome == "dropped":
            lost[chat].append(call)
        elif call.method in SENDS and call.ok:
            sent[chat].append(call)
        elif call.method == "deleteMessage" and call.ok and lost[chat]:
            orphan = lost[chat].pop(0)
            gone = call.finished_at or call.at
            twin = next((send for send in sent[chat] if send.at > orphan.at
                         and content(send) == content(orphan)), None)
            found.append((gone - (orphan.finished_at or orphan.at),
                          0.0 if twin is None else gone - (twin.finished_at or twin.at)))
    return found


@dataclass
class Difference:
    orphans: int = 0  # messages the fault-free run does not have at all
    duplicates: int = 0  # more copies of a message than the fault-free run shows
    missing: int = 0  # messages of the fault-free run not there
    reordered: int = 0  # chats with the same messages in another order
    examples: list[str] = field(default_factory=list)


def compare(expected: dict[int, list[str]], got: dict[int, list[str]]) -> Difference:
    difference = Difference()
    for chat, want in expected.items():
        have = got.get(chat, [])
        extra = Counter(have) - Counter(want)
        lacking = Counter(want) - Counter(have)
        for text, n in extra.items():
            if text in want:
                difference.duplicates += n
            else:
                difference.orphans += n
            difference.examples.append(f"chat {chat}: {n} extra × {text[:80]!r}")
        difference.missing += sum(lacking.values())
        difference.examples.extend(f"chat {chat}: {n} missing × {text[:80]!r}"
                                   for text, n in lacking.items())
        if not extra and not lacking and have != want:
            difference.reordered += 1
            difference.examples.append(f"chat {chat}: same messages, another order")
    return difference


# --------------------------------------------------------------------------- catching up


@dataclass
class CatchUp:
    chat: int
    group: bool
    seconds: float  # from the API's return until the chat holds the whole answer


async def outage(length: float, privates: int, groups: int) -> list[CatchUp]:
    """Turns mid-answer in each chat when the API goes away for ``length`` seconds; each ends
    during the outage. How long after the API's return each chat holds the whole answer."""
    users = [FIRST_CHAT + i for i in range(privates)]
    rooms = [*users, *(FIRST_GROUP - i for i in range(groups))]
    ticks = max(1, round(length))  # the answer streams on for about half the outage
    async with cadenza(users, len(rooms)) as running:
        server = running.server
        for i, room in enumerate(rooms):
            # out of step: each outbox's backoff stands elsewhere when the API comes back
            prompt = f"say first{i}; sleep {0.2 * i:.1f}; tick {ticks} 0.5 part{i}."
            if room < 0:
                server.push_text(room, users[i % len(users)], f"{BOT} {prompt}",
                                 chat_type="supergroup")
            else:
                server.push_text(room, room, prompt)

        def whole(room: int, i: int) -> bool:
            text = "\n".join(m.text for m in server.bot_messages(room))
            return DONE in text and f"part{i}. {ticks}" in text

        await server.wait_for(lambda: all(
            any(f"first{i}" in m.text for m in server.bot_messages(room))
            for i, room in enumerate(rooms)), 60)
        down = loop_time()
        await server.take_down()
        for room in rooms:  # every turn ends while the API is away
            await running.ends.wait(room, 1, length + 30)
        ended = loop_time() - down
        if ended > length:
            print(f"  (the turns outlasted the outage: {ended:.1f} s)")
        await asyncio.sleep(max(0.0, length - (loop_time() - down)))
        back = loop_time()
        await server.bring_up()
        results: list[CatchUp] = []

        async def caught_up(i: int, room: int) -> None:
            await server.wait_for(lambda: whole(room, i), 60)
            results.append(CatchUp(room, room < 0, loop_time() - back))

        await asyncio.gather(*(caught_up(i, room) for i, room in enumerate(rooms)))
        return results


# --------------------------------------------------------------------------- report


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base > 0 else "n/a"


def report_turns(base: Turns, run: Turns, loss: float, turns: int, chats: int) -> bool:
    writes = sum(run.calls[method] for method in WRITES)
    lost = sum(run.dropped.values())
    print(f"lost replies: {turns} turns in {chats} private chats; {lost} replies lost after "
          f"being applied ({lost / max(writes, 1):.1%} of {writes} sendMessage/"
          f"editMessageText/sendDocument calls; asked for {loss:.0%}): "
          + ", ".join(f"{method} {n}" for method, n in run.dropped.most_common()))
    difference = compare(base.chats, run.chats)
    print(f"  orphans {difference.orphans}, duplicates {difference.duplicates} (goal 0 and 0); "
          f"missing {difference.missing}, chats reordered {difference.reordered}")
    for example in difference.examples[:10]:
        print(f"    {example}")
    for label, figures in (("fault-free", base), ("lost replies", run)):
        print(f"  {label}: wall {figures.wall:.1f} s; turn (prompt to settled answer) p50 "
              f"{percentile(figures.turn_times, 0.5):.2f} s, p99 "
              f"{percentile(figures.turn_times, 0.99):.2f} s; 429s {figures.rate_limited}; "
              "calls " + ", ".join(f"{method} {n}" for method, n in
                                   figures.calls.most_common()))
    print("  edits refused (the probes, and the retries of lost edits): "
          + (", ".join(f"{why} {n}" for why, n in run.refused.most_common()) or "none"))
    if run.copies:
        shown = [seconds for seconds, _ in run.copies]
        twice = [seconds for _, seconds in run.copies]
        sends = sum(run.dropped[method] for method in SENDS)
        print(f"  copies deleted: {len(run.copies)} of {sends} "
              f"lost sends (the others were kept as the message); a copy showed p50 "
              f"{percentile(shown, 0.5):.1f} s, max {max(shown):.1f} s, of that next to its "
              f"resent twin p50 {percentile(twice, 0.5):.1f} s, max {max(twice):.1f} s")
    extra = run.calls - base.calls
    print(f"  with lost replies against fault-free: wall time {ratio(run.wall, base.wall)}, "
          f"turn p99 {ratio(percentile(run.turn_times, 0.99), percentile(base.turn_times, 0.99))}"
          "; extra calls " + (", ".join(f"{method} +{n}" for method, n in extra.most_common())
                              or "none"))
    return difference.orphans == difference.duplicates == difference.missing == 0 == (
        difference.reordered)


def report_outage(results: list[CatchUp], length: float) -> bool:
    met = True
    for group, label in ((False, "private chat"), (True, "group")):
        seconds = [r.seconds for r in results if r.group is group]
        if not seconds:
            continue
        worst = max(seconds)
        met = met and worst < CATCH_UP_GOAL
        print(f"catch-up after a {length:g} s outage, {len(seconds)} {label}(s): median "
              f"{statistics.median(seconds):.2f} s, worst {worst:.2f} s (goal < "
              f"{CATCH_UP_GOAL:g} s); worst as a share of the outage "
              f"{worst / length:.1%}: " + ", ".join(f"{s:.2f}" for s in sorted(seconds)))
    return met


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=40, help="private chats for the turns")
    parser.add_argument("--loss", type=float, default=0.05,
                        help="share of the write calls whose reply is lost")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds the API is away")
    parser.add_argument("--outage-chats", type=int, default=5,
                        help="private chats mid-turn in the outage (and half as many groups)")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="100 turns in 10 chats and a 4 s outage")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.chats, args.outage, args.outage_chats = 100, 10, 4.0, 2
    return args


def main() -> None:
    args = arguments()
    began = time.monotonic()

    async def everything() -> bool:
        planned = plan(args.turns, args.chats, args.seed)
        base = await run_turns(planned, 0.0, args.seed)
        run = await run_turns(planned, args.loss, args.seed)
        exact = report_turns(base, run, args.loss, args.turns, args.chats)
        results = await outage(args.outage, args.outage_chats, max(1, args.outage_chats // 2))
        fast = report_outage(results, args.outage)
        return exact and fast

    logging.disable(logging.WARNING)  # the retries of every lost reply and of the outage
    met = asyncio.run(everything())
    print(f"goal (0 orphans, 0 duplicates, catch-up < {CATCH_UP_GOAL:g} s): "
          f"{'met' if met else 'NOT met'}")
    print(f"wall time: {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
