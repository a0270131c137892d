"""Recovery journal under load: startup with many interrupted turns, and the cost per turn.

1. Startup. For each size (10, 100, 1,000, 10,000 by default) a state directory is prepared:
   the app runs once to create the schema, then the journal gets N turns left ``running`` over
   10 chats and a last run record of this boot without a clean shutdown, as a crash leaves them.
   Timed: ``Config.load``, ``App(...)`` and ``start()`` until the last ``on_recover`` call, as a
   recording plugin sees it (plus the split at ``on_startup_lifecycle``). The app is stopped
   right after, so no resumed turn runs (the agent would be ``true``, which exits at once).
   The baseline is the same start on a crashed journal with no open turn (N = 0), measured in
   the same run. Target: 1,000 interrupted turns recovered in under one second.
2. Cost per turn. The journal's hooks that write (``on_turn_accepted``, ``on_turn_start``,
   ``on_stream_event`` for the agent's session and for the terminal event) are awaited directly
   for T turns on the journal of a running app, against the same loop over a no-op plugin with
   the same (async) methods, interleaved. Target: under 1 ms per turn.

Rounds are interleaved so machine noise hits every size alike; medians are printed. The
default run takes a few seconds.

    python bench/recovery.py [--sizes 10 100 1000 10000] [--rounds 3] [--turns 5000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cadenza.api import COMPLETED, SESSION, ChatRef, StreamEvent, Turn, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.loader import discover  # noqa: E402
from cadenza.plugins.journal import BOOT_ID_FILE, read_boot_id, runs, turns  # noqa: E402
from cadenza.state import DB_NAME, Store  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

CHATS = 10
RECOVERY_TARGET = 1.0  # seconds for 1,000 interrupted turns
OVERHEAD_TARGET = 0.001  # seconds per turn
PROMPT = ("Refactor the parser module so that every line kind in the recorded streams is "
          "handled, add tests for the new cases, and run the whole suite before you finish. ")


class Recorder:
    """Takes the time of the lifecycle notice and of every recovery."""

    def __init__(self) -> None:
        self.lifecycle_at: float | None = None
        self.kind = ""
        self.interrupted = 0
        self.recovered = 0
        self.resumed = 0
        self.last_at: float | None = None

    @hookimpl
    def authorize(self, chat, user_id) -> bool:
        return True  # the frontend of the bench's own chats

    @hookimpl
    def on_startup_lifecycle(self, lifecycle) -> None:
        self.lifecycle_at = time.perf_counter()
        self.kind, self.interrupted = lifecycle.kind, lifecycle.interrupted

    @hookimpl
    def on_recover(self, recovery) -> None:
        self.last_at = time.perf_counter()
        self.recovered += 1
        self.resumed += recovery.action == "resume"


def write_config(directory: Path) -> Path:
    """The built-in plugins a bot runs with (timeout, journal); the console and any other
    installed plugin off. The command agent exits at once."""
    wanted = {"timeout", "journal"}
    switches = "\n".join(f"{name} = {str(name in wanted).lower()}"
                         for name in sorted(discover()))
    path = directory / "plugins.toml"
    path.write_text(f'[plugins]\n{switches}\n\n[agent]\ndefault = "command"\n'
                    'command = ["true", "{prompt}"]\n')
    return path


async def create_schema(config: Path, state_dir: Path) -> None:
    app = App(Config.load(config), state_dir)
    try:
        await app.start()
    finally:
        await app.stop()


async def crash_with(db_path: Path, count: int) -> None:
    """Leave the journal as a crash would: a run of this boot that never ended cleanly, and
    ``count`` turns it was running, spread over the chats, all within ``max_age``."""
    now = time.time()
    store = Store(db_path)
    try:
        async with store.transaction():
            run = await store.fetch_one(insert(runs).returning(runs.c.id), {
                "boot_id": read_boot_id(BOOT_ID_FILE), "pid": 0, "started_at": now - 900,
                "heartbeat_at": now - 5, "lifecycle": "restarted"})
            assert run is not None
            if count:
                await store.execute(insert(turns), [
                    {"id": f"bench{number:07d}", "chat": f"bench:{number % CHATS}",
                     "session": "", "prompt": f"{PROMPT}#{number}", "agent": "command",
                     "attempt": 1, "state": "running",
                     "created_at": now - 600 + 500 * number / count,
                     "started_at": now - 599 + 500 * number / count, "run_id": run["id"]}
                    for number in range(count)])
    finally:
        store.close()


async def prepare(directory: Path, count: int) -> Path:
    """A template state database for ``count`` interrupted turns; returns its path."""
    directory.mkdir(parents=True)
    config = write_config(directory)
    await create_schema(config, directory / "state")
    db_path = directory / "state" / DB_NAME
    await crash_with(db_path, count)
    return db_path


async def timed_start(template: Path, work: Path, count: int) -> tuple[float, float, float]:
    """Seconds from ``App`` construction to the lifecycle notice, to the last ``on_recover``,
    and to ``start()`` returning, on a fresh copy of ``template``."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "state").mkdir(parents=True)
    shutil.copyfile(template, work / "state" / DB_NAME)
    config = write_config(work)
    recorder = Recorder()
    began = time.perf_counter()
    app = App(Config.load(config), work / "state")
    app.add_plugin("recorder", recorder)
    try:
        await app.start()
        returned = time.perf_counter()
    finally:
        await app.stop()
    if recorder.kind != "crashed" or recorder.interrupted != count:
        raise SystemExit(f"expected a crash with {count} interrupted turns, the journal said "
                         f"{recorder.kind} with {recorder.interrupted}")
    if recorder.recovered != count or recorder.resumed != count:
        raise SystemExit(f"{count} interrupted turns: {recorder.recovered} on_recover calls, "
                         f"{recorder.resumed} resumes")
    assert recorder.lifecycle_at is not None
    store = Store(work / "state" / DB_NAME, readonly=True)
    try:
        (taken,) = store.fetch_sync(select(func.count().label("n")).where(
            turns.c.run_id == select(func.max(runs.c.id)).scalar_subquery()))
    finally:
        store.close()
    written = taken["n"]
    if written != count:
        raise SystemExit(f"{count} interrupted turns, {written} taken over by the new run")
    last = recorder.last_at if recorder.last_at is not None else recorder.lifecycle_at
    return recorder.lifecycle_at - began, last - began, returned - began


# --- the journal's cost per turn -----------------------------------------------------------------


class NoopJournal:
    """The journal's turn hooks, doing nothing: the loop's own cost."""

    async def on_turn_accepted(self, turn: Turn) -> None:
        pass

    async def on_turn_start(self, turn: Turn) -> None:
        pass

    async def on_stream_event(self, event: StreamEvent) -> None:
        pass


def turn_events(prefix: str, count: int) -> list[tuple[Turn, StreamEvent, StreamEvent]]:
    items = []
    for number in range(count):
        turn = Turn(id=f"{prefix}{number:07d}", chat=ChatRef("bench", str(number % CHATS)),
                    prompt=PROMPT, agent="claude", created_at=time.time())
        session = StreamEvent(turn, 1, SESSION, "", {"session_id": f"s-{prefix}{number}"})
        end = StreamEvent(turn, 9, COMPLETED, "done", {"cost_usd": 0.0123, "elapsed": 4.2})
        items.append((turn, session, end))
    return items


async def drive(plugin: object,
                items: list[tuple[Turn, StreamEvent, StreamEvent]]) -> list[float]:
    """Per turn: (accepted + start) and (session + terminal) seconds, interleaved in one list."""
    accepted, start = plugin.on_turn_accepted, plugin.on_turn_start  # type: ignore[attr-defined]
    stream = plugin.on_stream_event  # type: ignore[attr-defined]
    clock = time.perf_counter
    times = []
    for turn, session, end in items:
        t0 = clock()
        await accepted(turn)
        await start(turn)
        t1 = clock()
        await stream(session)
        await stream(end)
        times.append(t1 - t0)
        times.append(clock() - t1)
    return times


async def overhead(directory: Path, turns: int, rounds: int) -> dict[str, list[float]]:
    directory.mkdir(parents=True)
    app = App(Config.load(write_config(directory)), directory / "state")
    results: dict[str, list[float]] = {"start": [], "end": [], "turn": [], "noop": [],
                                       "all_turns": []}
    try:
        await app.start()
        assert app.loader is not None
        journal = app.loader.instances["journal"]
        noop = NoopJournal()
        for number in range(rounds):
            items = turn_events(f"r{number}-", turns)
            base = await drive(noop, items)
            real = await drive(journal, items)
            base_turn = sum(base) / turns
            starts, ends = real[0::2], real[1::2]
            per_turn = [a + b for a, b in zip(starts, ends, strict=True)]
            results["noop"].append(base_turn)
            results["start"].append(sum(starts) / turns)
            results["end"].append(sum(ends) / turns)
            results["turn"].append(sum(per_turn) / turns - base_turn)
            results["all_turns"].extend(per_turn)
    finally:
        await app.stop()
    return results


def import_time() -> float:
    """What a fresh process pays before ``App`` exists: importing the core and the plugins."""
    code = ("import time; t = time.perf_counter(); import cadenza.app, cadenza.plugins.journal, "
            "cadenza.plugins.timeout; print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return float(done.stdout)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def main_async(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="cadenza-bench-recovery-", dir=args.dir))
    sizes = [0, *args.sizes]
    timings: dict[int, list[tuple[float, float, float]]] = {size: [] for size in sizes}
    try:
        templates = {size: await prepare(base / f"template-{size}", size) for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                timings[size].append(await timed_start(templates[size], base / "run", size))
        costs = await overhead(base / "overhead", args.turns, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"state database in {args.dir or tempfile.gettempdir()}; {CHATS} chats; "
          f"median of {args.rounds} rounds; imports before App: {1000 * import_time():.0f} ms "
          "(not included below)")
    print()
    print(f"{'interrupted turns':>17}{'to lifecycle':>14}{'to last on_recover':>20}"
          f"{'start() done':>14}{'per turn':>11}")
    zero = statistics.median(t[1] for t in timings[0])
    for size in sizes:
        lifecycle, last, returned = (statistics.median(t[i] for t in timings[size])
                                     for i in range(3))
        per_turn = f"{1e6 * (last - zero) / size:8.0f} µs" if size else "  baseline"
        print(f"{size:>17,}{1000 * lifecycle:11.1f} ms{1000 * last:17.1f} ms"
              f"{1000 * returned:11.1f} ms{per_turn:>11}")
    if 1000 in timings:
        last = statistics.median(t[1] for t in timings[1000])
        verdict = "ok" if last < RECOVERY_TARGET else "MISSED"
        print(f"1,000 interrupted turns recovered in {1000 * last:.0f} ms "
              f"(target < {1000 * RECOVERY_TARGET:.0f} ms: {verdict})")
    print()
    turn = statistics.median(costs["turn"])
    spread = costs["all_turns"]
    print(f"journal per turn, {args.turns:,} turns x {args.rounds} rounds, hooks awaited "
          "directly:")
    print(f"  no-op plugin loop        : {1e6 * statistics.median(costs['noop']):8.2f} µs per "
          "turn")
    print(f"  accepted + turn start    : {1000 * statistics.median(costs['start']):8.3f} ms "
          "(2 writes)")
    print(f"  session + terminal event : {1000 * statistics.median(costs['end']):8.3f} ms "
          "(2 writes)")
    print(f"  journal - no-op          : {1000 * turn:8.3f} ms per turn (target < "
          f"{1000 * OVERHEAD_TARGET:g} ms: {'ok' if turn < OVERHEAD_TARGET else 'MISSED'})")
    print(f"  one turn's four hooks    : p50 {1000 * percentile(spread, 0.5):.3f} ms, p99 "
          f"{1000 * percentile(spread, 0.99):.3f} ms, max {1000 * max(spread):.3f} ms "
          "(each on the event loop)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000],
                        help="numbers of interrupted turns")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=5000,
                        help="turns per round for the journal's cost per turn")
    parser.add_argument("--dir", default=None,
                        help="where the state databases go (default: the system temp dir); "
                             "the disk matters, as SQLite checkpoints call fsync")
    args = parser.parse_args()
    if any(size < 1 for size in args.sizes) or args.rounds < 1 or args.turns < 1:
        parser.error("--sizes, --rounds and --turns must be positive")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
