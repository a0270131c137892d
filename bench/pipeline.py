"""Pipeline throughput: a recorded Claude stream-json transcript through the real path.

100,000 lines (the recorded streams in tests/fixtures/streams, cycled) are written to a file;
a real turn runs `cat FILE` as its agent with the Claude parser, so the lines go through the
pipe reader, the parser, typed events and hook dispatch to five no-op plugins (sync and async)
and a null frontend. The baseline is bare ``json.loads`` over the same lines, in the same run.

    python bench/pipeline.py [--lines 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.agents.claude import ClaudeParser  # noqa: E402
from core.api import ChatRef, Turn, hookimpl  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.plugins import new_manager  # noqa: E402
from core.relay import HookRelay  # noqa: E402
from core.turns import TurnRunner  # noqa: E402

STREAMS = ROOT / "tests" / "fixtures" / "streams"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lines = transcript(args.lines)
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
