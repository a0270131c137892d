"""Pipeline throughput: a recorded Claude stream-json transcript through the real path.

In-process (the default): 100,000 lines (the recorded streams shipped with cadenza.testing,
cycled) are written to a file; a real turn runs `cat FILE` as its agent with the Claude parser,
so the lines go through the pipe reader, the parser, typed events and hook dispatch to five
no-op plugins (sync and async) and a null frontend.

End to end (``--e2e``): one answer of N text lines (the recorded ``assistant`` text lines,
cycled, between the recorded ``init`` and ``result`` lines; with ``--shapes all``, the
in-process mode's transcript of N lines instead) is written to a file, and the real
``cadenza run`` (``python -m cadenza.cli`` of this checkout, or ``--cadenza CMD``) runs one prompt
piped on its stdin with the console frontend writing to /dev/null, the built-in plugins on and
``[agent.claude] binary`` a script that ignores its arguments and stdin and cats the file. The
time is from spawn to exit, startup included (shown on its own from a 1-line answer, never
subtracted); runs longer than ``--limit`` are killed and reported as not finished. A last run
streams one turn of ``--memory-mb`` MB of text (the recorded 6,000-character block, repeated)
and reports the process's peak RSS (``wait4``).

Either way the baseline is bare ``json.loads`` over the same lines, in this process, in the
same run, interleaved with the measured runs.

    python bench/pipeline.py [--lines 100000] [--rounds 3]
    python bench/pipeline.py --e2e [--lines 300000] [--rounds 3] [--limit 600] [--memory-mb 10]
                                   [--shapes text|all] [--cadenza CMD]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cadenza.agents.claude import ClaudeParser  # noqa: E402
from cadenza.api import ChatRef, Turn, hookimpl  # noqa: E402
from cadenza.clock import SystemClock  # noqa: E402
from cadenza.loader import new_manager  # noqa: E402
from cadenza.relay import HookRelay  # noqa: E402
from cadenza.testing import recorded  # noqa: E402
from cadenza.turns import TurnRunner  # noqa: E402

STREAMS = recorded("claude-text").parent  # the real CLIs' recordings, shipped with the kit


class SyncNoop:
    @hookimpl
    def on_stream_event(self, event):
        pass


class AsyncNoop:
    @hookimpl
    async def on_stream_event(self, event):
        pass


class NullFrontend:
    """Does what a frontend does per event, minus the I/O: keep the text of its chat."""

    def __init__(self) -> None:
        self.chars = 0
        self.events = 0

    @hookimpl
    def on_stream_event(self, event):
        self.events += 1
        if event.kind == "text" and event.turn.chat.frontend == "bench":
            self.chars += len(event.text)


class ReplayAgent:
    name = "replay"
    binary = "cat"

    def __init__(self, path: Path) -> None:
        self.path = path

    def argv(self, prompt: str, resume_id: str | None) -> list[str]:
        return ["cat", str(self.path)]

    def env(self) -> dict[str, str]:
        return {}

    def parser(self) -> ClaudeParser:
        return ClaudeParser()

    def supports_resume(self) -> bool:
        return False


def transcript(lines: int) -> list[str]:
    recorded = [line for path in sorted(STREAMS.glob("claude-*.jsonl"))
                for line in path.read_text().splitlines()]
    return list(itertools.islice(itertools.cycle(recorded), lines))


def bare_json(lines: list[str]) -> float:
    began = time.perf_counter()
    for line in lines:
        json.loads(line)
    return len(lines) / (time.perf_counter() - began)


async def pipeline(path: Path, lines: int) -> tuple[float, int]:
    pm = new_manager()
    frontend = NullFrontend()
    for number, plugin in enumerate([SyncNoop(), AsyncNoop(), SyncNoop(), AsyncNoop(),
                                     SyncNoop(), frontend]):
        pm.register(plugin, name=f"p{number}")
    relay = HookRelay(pm)
    turn = Turn("bench", ChatRef("bench", "1"), "replay", "replay")
    runner = TurnRunner(turn, ReplayAgent(path), relay, SystemClock(), workdir=ROOT,
                        kill_grace=1)
    began = time.perf_counter()
    end = await runner.run()
    elapsed = time.perf_counter() - began
    assert end.kind == "completed", end.text
    return lines / elapsed, frontend.events


# --- end to end: the real `cadenza run` -----------------------------------------------


def recorded_lines() -> list[dict]:
    return [json.loads(line) for path in sorted(STREAMS.glob("claude-*.jsonl"))
            for line in path.read_text().splitlines()]


def answer(texts: int, big: bool = False) -> list[str]:
    """One Claude answer: the recorded init line, ``texts`` recorded assistant text lines
    (cycled; with ``big``, the 6,000-character block of claude-big), the recorded result."""
    recorded = recorded_lines()
    init = next(m for m in recorded if m.get("type") == "system" and m.get("subtype") == "init")
    result = next(m for m in recorded if m.get("type") == "result" and not m.get("is_error"))
    text_lines = [json.dumps(m) for m in recorded if m.get("type") == "assistant"
                  and [b.get("type") for b in m["message"]["content"]] == ["text"]
                  and not m["message"]["content"][0]["text"].startswith("API Error")]
    if big:
        text_lines = [max(text_lines, key=len)]
    else:
        text_lines = [line for line in text_lines if len(line) < 2000]
    body = itertools.islice(itertools.cycle(text_lines), texts)
    return [json.dumps(init), *body, json.dumps(result)]


def answer_text(lines: list[str]) -> int:
    """Characters of text the answer shows."""
    return sum(len(block.get("text", "")) for line in lines
               if (message := json.loads(line)).get("type") == "assistant"
               for block in message["message"]["content"])


@dataclass
class Run:
    seconds: float | None  # None: killed at the time limit
    max_rss_mib: float
    exit_code: int | None
    log: str


class Cadenza:
    """A throwaway home for `cadenza run`: plugins.toml, state directory, the fake claude."""

    def __init__(self, home: Path, command: list[str]) -> None:
        self.home, self.command = home, command
        self.transcript = home / "answer.jsonl"
        agent = home / "fake-claude"
        # arguments and stdin are ignored: the prompt may arrive in argv or on stdin
        agent.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(self.transcript))} </dev/null\n")
        agent.chmod(0o755)
        (home / "work").mkdir()
        (home / "prompt.txt").write_text("answer at length\n")
        self.config = home / "plugins.toml"
        self.config.write_text(
            "[plugins]\nconsole = true\ntelegram = false\n\n"
            f"[agent]\ndefault = \"claude\"\nworkdir = {json.dumps(str(home / 'work'))}\n\n"
            f"[agent.claude]\nbinary = {json.dumps(str(agent))}\n")
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.runs = 0

    def write(self, lines: list[str]) -> int:
        self.transcript.write_text("\n".join(lines) + "\n")
        return self.transcript.stat().st_size

    def run(self, limit: float, stdout: int | None = subprocess.DEVNULL) -> Run:
        """One `cadenza run` with a fresh state directory, timed from spawn to exit."""
        self.runs += 1
        state = self.home / f"state{self.runs}"
        argv = [*self.command, "run", "--config", str(self.config), "--state-dir", str(state)]
        log, report = self.home / "stderr.log", self.home / "report.json"
        report.unlink(missing_ok=True)
        with open(self.home / "prompt.txt") as prompt, open(log, "w") as err:
            launcher = subprocess.Popen(
                [sys.executable, "-S", "-c", LAUNCHER, str(report), *argv], stdin=prompt,
                stdout=stdout, stderr=err, env=self.env, cwd=self.home, start_new_session=True)
            try:
                launcher.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and cadenza
                launcher.wait()
                return Run(None, 0.0, None, log.read_text())
        measured = json.loads(report.read_text())
        return Run(measured["seconds"], measured["max_rss_kib"] / 1024, measured["exit_code"],
                   log.read_text())


# Spawns and times `cadenza run`, and reports its peak RSS from wait4. Linux starts a new
# process's peak RSS at its parent's, so cadenza must not be forked by this process, which
# holds the whole transcript: this small launcher forks it.
LAUNCHER = """
import json, os, subprocess, sys, time
report, argv = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
child = subprocess.Popen(argv)
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - began
with open(report, "w") as out:
    json.dump({"seconds": seconds, "exit_code": os.waitstatus_to_exitcode(status),
               "max_rss_kib": usage.ru_maxrss}, out)
"""


def checked(run: Run, what: str, must_finish: bool = True) -> Run:
    if run.seconds is None and must_finish:
        sys.exit(f"{what}: cadenza run did not finish:\n{run.log[-3000:]}")
    if run.seconds is not None and run.exit_code != 0:
        sys.exit(f"{what}: cadenza run exited with {run.exit_code}:\n{run.log[-3000:]}")
    return run


def seconds_text(run: Run, limit: float) -> str:
    return f"{run.seconds:.2f} s" if run.seconds is not None else f"did not finish in {limit:g} s"


def e2e(args: argparse.Namespace) -> None:
    command = (shlex.split(args.cadenza) if args.cadenza
               else [sys.executable, "-m", "cadenza.cli"])
    lines = answer(args.lines) if args.shapes == "text" else transcript(args.lines)
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        cadenza = Cadenza(Path(tmp), command)
        # the set-up works: a short answer, shown in full on a real stdout
        check = answer(3)
        cadenza.write(check)
        with open(Path(tmp) / "shown.txt", "w+") as shown:
            checked(cadenza.run(args.limit, stdout=shown.fileno()), "check run")
            shown.seek(0)
            seen = shown.read()
        expected = json.loads(check[-2])["message"]["content"][0]["text"]
        if expected not in seen:
            sys.exit(f"check run: the answer was not shown; stdout was:\n{seen[-2000:]}")

        startups, baseline, full = [], [], []
        size, failed, peak = 0, None, 0.0
        for _ in range(args.rounds):  # interleaved, so machine noise hits all alike
            cadenza.write(answer(1))
            startups.append(checked(cadenza.run(args.limit), "1-line run"))
            size = cadenza.write(lines)
            baseline.append(bare_json(lines))
            run = checked(cadenza.run(args.limit), f"{len(lines)}-line run", must_finish=False)
            if run.seconds is None:
                failed = run
                break
            full.append(len(lines) / run.seconds)
            peak = max(peak, run.max_rss_mib)
        memory = None
        if args.memory_mb > 0:
            big = answer(1, big=True)
            big = answer(round(args.memory_mb * 1e6 / answer_text(big)), big=True)
            cadenza.write(big)
            memory = (checked(cadenza.run(args.limit), "memory run", must_finish=False),
                      answer_text(big), len(big))

    base = statistics.median(baseline)
    startup = statistics.median(run.seconds for run in startups)
    startup_rss = statistics.median(run.max_rss_mib for run in startups)
    print(f"cadenza run: {shlex.join(command)} (PYTHONPATH={ROOT}), console to /dev/null, "
          f"{os.cpu_count()} cores")
    what = (f"one answer of {args.lines:,} text lines" if args.shapes == "text"
            else "every recorded Claude line, cycled")
    print(f"transcript: {len(lines):,} lines ({what}), {size / 1e6:.1f} MB")
    print(f"bare json.loads (this process): {base:12,.0f} lines/s "
          f"({len(lines) / base:.2f} s)")
    if failed is None:
        pipe = statistics.median(full)
        print(f"cadenza run, spawn to exit   : {pipe:12,.0f} lines/s "
              f"({len(lines) / pipe:.2f} s), max RSS {peak:.0f} MiB")
        print(f"ratio cadenza run/json.loads : {pipe / base:.2f} (target >= 0.25; startup "
              "not subtracted)")
    else:
        bound = len(lines) / args.limit
        print(f"cadenza run, spawn to exit   : did not finish in {args.limit:g} s "
              f"(< {bound:,.0f} lines/s)")
        print(f"ratio cadenza run/json.loads : < {bound / base:.3f} (target >= 0.25)")
    print(f"startup (1-line answer)      : {startup:.2f} s, max RSS {startup_rss:.0f} MiB")
    if memory is not None:
        run, chars, count = memory
        print(f"one turn of {chars / 1e6:.0f} MB of text ({count - 2:,} lines): "
              f"{seconds_text(run, args.limit)}, max RSS {run.max_rss_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=None,
                        help="text lines (default: 100,000; 300,000 with --e2e)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--e2e", action="store_true", help="through the real `cadenza run`")
    parser.add_argument("--cadenza", help="--e2e: the command to run instead of "
                        "`python -m cadenza.cli` of this checkout, e.g. cadenza")
    parser.add_argument("--limit", type=float, default=600,
                        help="--e2e: seconds before a run is killed and reported unfinished")
    parser.add_argument("--shapes", choices=["text", "all"], default="text",
                        help="--e2e: one answer of recorded text lines (default), or the "
                        "in-process mode's transcript (every recorded line, tools and "
                        "6,000-character blocks included)")
    parser.add_argument("--memory-mb", type=float, default=10,
                        help="--e2e: text of the memory run, MB (0: none)")
    args = parser.parse_args()
    if args.e2e:
        args.lines = 300_000 if args.lines is None else args.lines
        e2e(args)
        return
    lines = transcript(args.lines or 100_000)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
    path = Path(handle.name)
    size = path.stat().st_size
    baseline, full, events = [], [], 0
    try:
        for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
            baseline.append(bare_json(lines))
            rate, events = asyncio.run(pipeline(path, len(lines)))
            full.append(rate)
    finally:
        path.unlink()
    base, pipe = statistics.median(baseline), statistics.median(full)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transcript: {len(lines):,} lines, {size / 1e6:.1f} MB, {events:,} events per run")
    print(f"bare json.loads      : {base:12,.0f} lines/s")
    print(f"full pipeline        : {pipe:12,.0f} lines/s ({pipe * events / len(lines):,.0f} "
          "events/s)")
    print(f"ratio pipeline/json  : {pipe / base:.2f} (target >= 0.33)")
    print(f"peak RSS             : {rss:.0f} MiB")


if __name__ == "__main__":
    main()
