"""Timeout controller under load: 1,000 silent turns, deadlines spread over a minute.

Everything is the real path: ``App`` with the timeout plugin loaded from its entry point by
plugins.toml, the bot, one ``TurnRunner`` per turn, and a real agent subprocess per turn (the
``command`` agent running ``sleep 3600``: cheap, and silent). Every turn has its own chat, so all
run at once. Turn i starts at ``i * spread / turns`` seconds, so with one base ``seconds`` for all
turns the warnings and the kills are due uniformly over ``spread`` seconds; ``seconds`` is chosen
so the first warning is due only after the ramp and an idle window.

Two figures, each with its baseline measured in the same run:

- idle CPU: process CPU time (``time.process_time``: every thread of this process) over a window
  of ``--idle`` seconds in which every turn runs and is armed and nothing is due, against the
  same window with the same turns and the timeout plugin switched off. The difference is the
  controller's; target: under 2% of one core for 1,000 armed turns.
- lateness: the plugin puts ``due`` and ``at`` (monotonic seconds) into the data of its
  ``timeout_warn_*`` events and of the ``timed_out`` terminal event; a recording plugin collects
  them, with the time it received each event. Target: p99 of ``at - due`` under 50 ms for
  warnings and for kills.

The default run takes about 2 min 40 s: a 60 s ramp, the idle window, the minute in which
everything fires, and the baseline (which starts its turns all at once).

    python bench/timeouts.py [--turns 1000] [--spread 60] [--idle 10] [--warn-before 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cadenza.api import TIMED_OUT, ChatRef, StreamEvent, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.loader import discover  # noqa: E402

IDLE_TARGET = 0.02  # of one core
LATENESS_TARGET = 0.050  # seconds, p99


class Recorder:
    """Notes when turns start and what the timeout plugin reports, with the receiving time."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started: list[float] = []
        self.warnings: list[tuple[float, float, float]] = []  # (due, at, received)
        self.kills: list[tuple[float, float, float]] = []
        self.ends: Counter[str] = Counter()
        self.extended = 0
        self.all_started = asyncio.Event()
        self.all_ended = asyncio.Event()

    @hookimpl
    def authorize(self, chat, user_id) -> bool:
        return True  # the frontend of the bench's own chats

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        received = time.monotonic()
        kind = event.kind
        if kind == "started":
            self.started.append(received)
            if len(self.started) >= self.expected:
                self.all_started.set()
        elif kind.startswith("timeout_warn_"):
            self.warnings.append((event.data["due"], event.data["at"], received))
        elif kind == "timeout_extended":
            self.extended += 1
        elif event.terminal:
            if kind == TIMED_OUT:
                self.kills.append((event.data["due"], event.data["at"], received))
            self.ends[kind] += 1
            if sum(self.ends.values()) >= self.expected:
                self.all_ended.set()


# --- the machine ------------------------------------------------------------------------------


def raise_fd_limit(turns: int) -> str:
    """Each turn holds two pipes (stdout, stderr) and spawning briefly needs more."""
    need = 4 * turns + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below the {need} descriptors "
                     f"{turns} turns need; lower --turns or raise the limit")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY
                                                    else hard, hard))
    procs, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if procs != resource.RLIM_INFINITY and procs < 2 * turns + 64:
        # Python 3.11's child watcher runs one thread per child: both count here.
        sys.exit(f"RLIMIT_NPROC {procs} is below the {2 * turns + 64} processes and threads "
                 f"{turns} turns need; lower --turns")
    return f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"


def children() -> list[int]:
    """Live (not zombie) child processes of this process, from /proc."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(name))
    return found


async def wait_for_children(count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(children()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(children())} of {count} agents running after "
                             f"{timeout:g} s")
        await asyncio.sleep(0.25)


def kill_leftovers() -> int:
    """No agent may outlive the benchmark: each is its own process group leader."""
    left = children()
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return len(left)


# --- one app ----------------------------------------------------------------------------------


def write_config(directory: Path, *, timeout: bool, journal: bool, seconds: float,
                 warn_before: list[float], kill_grace: float) -> Path:
    """Only the plugins measured are on: every other installed plugin is switched off."""
    wanted = {"timeout": timeout, "journal": journal}
    switches = "\n".join(f"{name} = {str(wanted.get(name, False)).lower()}"
                         for name in sorted(discover()))
    stages = ", ".join(f"{stage:g}" for stage in warn_before)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "plugins.toml"
    path.write_text(
        f"[plugins]\n{switches}\n\n"
        "[core]\nmax_running = 100000\n\n"  # every turn armed at once, none waiting
        '[agent]\ndefault = "command"\ncommand = ["sleep", "{prompt}"]\n\n'
        # activity_window 1: a silent turn is never extended (the runner counts its start as
        # output, so a window longer than `seconds` would extend it).
        f"[timeout]\nseconds = {seconds:g}\nwarn_before = [{stages}]\n"
        f"max_seconds = {max(seconds, 7200):g}\nactivity_window = 1\n"
        f"kill_grace = {kill_grace:g}\n")
    return path


def chat(number: int) -> ChatRef:
    return ChatRef("bench", f"c{number}")


async def idle_cpu(window: float) -> float:
    """CPU seconds this process spends while the event loop waits ``window`` seconds."""
    began = time.process_time()
    await asyncio.sleep(window)
    return time.process_time() - began


async def baseline(directory: Path, args: argparse.Namespace) -> float:
    """The same silent turns with the timeout plugin off: CPU over the idle window."""
    config = write_config(directory, timeout=False, journal=args.journal, seconds=3600,
                          warn_before=[], kill_grace=args.kill_grace)
    app = App(Config.load(config), directory / "state")
    recorder = Recorder(args.turns)
    app.add_plugin("recorder", recorder)
    try:
        bot = await app.start()
        for number in range(args.turns):
            await bot.submit(chat(number), "3600")
        await asyncio.wait_for(recorder.all_started.wait(), args.spawn_timeout)
        await wait_for_children(args.turns, args.spawn_timeout)
        await asyncio.sleep(args.settle)
        return await idle_cpu(args.idle)
    finally:
        await app.stop()


@dataclass
class ArmedRun:
    """What the run with the timeout plugin on measured."""

    seconds: float
    stages: list[float]
    recorder: Recorder
    ramp: float = 0.0  # seconds the ramp took
    threads: int = 0  # threads while every turn runs
    cpu: float = 0.0  # CPU seconds over the idle window
    early: int = 0  # warnings or kills before the idle window ended (should be none)
    fire_cpu: float = 0.0  # CPU seconds from the first due time to the last terminal event
    fire_wall: float = 0.0
    leftover: int = 0  # agents still running after every turn ended


async def armed(directory: Path, args: argparse.Namespace) -> ArmedRun:
    """The timeout plugin on: ramp the turns up, measure the idle window, let everything fire."""
    stages = sorted(set(args.warn_before), reverse=True)
    seconds = args.spread + args.lead + args.idle + (stages[0] if stages else 0)
    config = write_config(directory, timeout=True, journal=args.journal, seconds=seconds,
                          warn_before=stages, kill_grace=args.kill_grace)
    app = App(Config.load(config), directory / "state")
    recorder = Recorder(args.turns)
    app.add_plugin("recorder", recorder)
    run = ArmedRun(seconds, stages, recorder)
    try:
        bot = await app.start()
        began = time.monotonic()
        for number in range(args.turns):
            delay = began + number * args.spread / args.turns - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await bot.submit(chat(number), "3600")
        run.ramp = time.monotonic() - began
        await asyncio.wait_for(recorder.all_started.wait(), args.spawn_timeout)
        await wait_for_children(args.turns, args.spawn_timeout)
        await asyncio.sleep(args.settle)
        first_due = min(recorder.started) + seconds - (stages[0] if stages else 0)
        room = first_due - time.monotonic() - 0.5
        if room < args.idle:
            raise SystemExit(f"only {room:.1f} s left before the first warning is due, the "
                             f"idle window needs {args.idle:g} s: raise --lead")
        run.threads = threading.active_count()
        run.cpu = await idle_cpu(args.idle)
        run.early = len(recorder.warnings) + len(recorder.kills)
        cpu_before = time.process_time()
        last_due = max(recorder.started) + seconds
        await asyncio.wait_for(recorder.all_ended.wait(),
                               last_due - time.monotonic() + args.kill_grace + 30)
        run.fire_cpu = time.process_time() - cpu_before
        run.fire_wall = time.monotonic() - first_due
        run.leftover = len(children())
    finally:
        await app.stop()
    return run


# --- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def lateness_row(label: str, values: list[float]) -> tuple[str, float]:
    if not values:
        return f"  {label:<28}  (none)", float("nan")
    p99 = percentile(values, 0.99)
    ms = [1000 * percentile(values, 0.50), 1000 * p99, 1000 * max(values)]
    return (f"  {label:<28}{ms[0]:9.2f}{ms[1]:9.2f}{ms[2]:9.2f}{len(values):8,}", p99)


def report(args: argparse.Namespace, base_cpu: float, run: ArmedRun) -> None:
    recorder, stages = run.recorder, run.stages
    turns, idle = args.turns, args.idle
    on_cpu = run.cpu
    added = on_cpu - base_cpu
    print(f"turns: {turns:,} silent agents (`sleep 3600`), one chat each, started over "
          f"{args.spread:g} s (ramp took {run.ramp:.1f} s); journal "
          f"{'on' if args.journal else 'off'}")
    print(f"timeout: seconds = {run.seconds:g}, warn_before = {stages}, so "
          f"{turns * len(stages):,} warnings and {turns:,} kills due over {args.spread:g} s")
    print(f"threads while armed: {run.threads} (the child watcher's, one per agent, "
          "included)")
    print()
    print(f"idle window: {idle:g} s, every turn running, nothing due")
    print(f"  baseline (timeout off)    : {1000 * base_cpu:8.1f} ms CPU = "
          f"{100 * base_cpu / idle:6.3f}% of one core")
    print(f"  {f'timeout on, {turns:,} armed':<26}: {1000 * on_cpu:8.1f} ms CPU = "
          f"{100 * on_cpu / idle:6.3f}% of one core")
    print(f"  controller (on - off)     : {1000 * added:8.1f} ms CPU = "
          f"{100 * added / idle:6.3f}% of one core (target < {100 * IDLE_TARGET:g}%: "
          f"{'ok' if added / idle < IDLE_TARGET else 'MISSED'})")
    print(f"  per armed turn            : {1e6 * added / idle * 60 / turns:8.2f} µs CPU per "
          "minute")
    if run.early:
        print(f"  note: {run.early} warnings or kills fired before the window ended")
    print()
    warn_at = [at - due for due, at, _ in recorder.warnings]
    warn_rx = [rx - due for due, _, rx in recorder.warnings]
    kill_at = [at - due for due, at, _ in recorder.kills]
    kill_rx = [rx - due for due, _, rx in recorder.kills]
    print(f"lateness against the due time (ms){'p50':>8}{'p99':>9}{'max':>9}{'count':>8}")
    rows = [lateness_row("warning fired (at - due)", warn_at),
            lateness_row("warning event received", warn_rx),
            lateness_row("kill fired (at - due)", kill_at),
            lateness_row("timed_out event received", kill_rx)]
    for line, _ in rows:
        print(line)
    for name, (_, p99) in (("warnings", rows[0]), ("kills", rows[2])):
        verdict = "ok" if p99 < LATENESS_TARGET else "MISSED"
        print(f"  {name}: p99 {1000 * p99:.2f} ms (target < {1000 * LATENESS_TARGET:g} ms: "
              f"{verdict})")
    print()
    fire_cpu, fire_wall = run.fire_cpu, run.fire_wall
    print(f"firing phase: {fire_cpu:.2f} s CPU over {fire_wall:.1f} s = "
          f"{100 * fire_cpu / fire_wall:.1f}% of one core; {1000 * fire_cpu / turns:.2f} ms per "
          "turn (its warnings, kill, reap and terminal event)")
    expected_warnings = turns * len(stages)
    ends = ", ".join(f"{count:,} {kind}" for kind, count in sorted(recorder.ends.items()))
    checks = [f"{len(recorder.warnings):,}/{expected_warnings:,} warnings",
              ends, f"{recorder.extended} extensions",
              f"{run.leftover} agents left running"]
    print(f"outcomes: {'; '.join(checks)}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


async def main_async(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="cadenza-bench-timeouts-"))
    try:
        base_cpu = await baseline(directory / "off", args)
        run = await armed(directory / "on", args)
    finally:
        left = kill_leftovers()
        if left:
            print(f"killed {left} agent process group(s) left behind", file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)
    report(args, base_cpu, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000, help="concurrent silent turns")
    parser.add_argument("--spread", type=float, default=60.0,
                        help="seconds over which turns start, and so warnings and kills are due")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of the idle CPU window (each of the two)")
    parser.add_argument("--warn-before", type=float, nargs="+", default=[10.0],
                        help="the timeout plugin's warning stages, in seconds")
    parser.add_argument("--lead", type=float, default=5.0,
                        help="seconds between the ramp's end and the idle window's latest start")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait after every agent runs, before measuring")
    parser.add_argument("--kill-grace", type=float, default=5.0)
    parser.add_argument("--spawn-timeout", type=float, default=120.0)
    parser.add_argument("--no-journal", dest="journal", action="store_false",
                        help="switch the recovery journal off (it is on by default, as in use)")
    args = parser.parse_args()
    if args.turns < 1 or args.spread <= 0 or args.idle <= 0:
        parser.error("--turns, --spread and --idle must be positive")
    limits = raise_fd_limit(args.turns)
    print(f"{limits}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
