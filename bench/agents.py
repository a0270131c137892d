"""Real agent CLIs: start-up, and what Cadenza adds to a turn over running the CLI bare.

Claude Code and Codex (the pinned npm installs of tests/fakes/agent_clis.py) answer one short
prompt from the fake model API (tests/fakes/model_api.py, run in a process of its own so it
does not share this interpreter). For each agent, ``--runs`` interleaved pairs, the order
alternating (bare first, then Cadenza first) so drift and noise fall on both sides alike:

- bare: the CLI run with ``subprocess.Popen`` exactly as Cadenza starts it (same argv and
  environment, stdin /dev/null, own session), stdout read to its end, the process reaped;
- cadenza: the same turn through Cadenza in-process: ``App.start()`` with the plugins that are
  on by default (the console off), ``Bot.submit()`` on a fresh chat (so no ``--resume``), until
  the terminal event reaches a plugin. Interpreter start-up and imports are not included (they
  are paid once per ``cadenza run``; the last line reports them separately).

Reported per agent (medians): spawn → first event (bare: the first stdout line; Cadenza: the
first agent event delivered to plugins, timed from ``on_turn_start``, which is awaited just
before the spawn), the whole turn, the time Cadenza adds (median of the paired differences)
and the ratio of the turn medians. Target: under 50 ms added per turn.

    python bench/agents.py [--runs 5] [--agents claude codex] [--core-only]

Everything runs contained: a scratch HOME, the proxy variables pointing at the fake (which
refuses and counts any request meant for another host), no credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cadenza.agents import Launch, launch  # noqa: E402
from cadenza.api import ChatRef, StreamEvent, Turn, hookimpl  # noqa: E402
from cadenza.app import App  # noqa: E402
from cadenza.config import Config  # noqa: E402
from cadenza.loader import discover  # noqa: E402

from tests.fakes.agent_clis import (  # noqa: E402
    CLAUDE,
    CODEX,
    NpmMissingError,
    base_env,
    claude_args,
    claude_env,
    codex_config_args,
    codex_env,
    ensure_installed,
    proxy_env,
)

PROMPT = "say one short answer"
TARGET_MS = 50.0


# --- the fake model, in a process of its own ---------------------------------------------


def serve_fake() -> None:
    """``--serve-fake``: print the base URL, serve until stdin closes, then print the number
    of refused remote requests."""
    from tests.fakes.model_api import FakeModelAPI

    with FakeModelAPI().in_thread() as api:
        print(api.base_url, flush=True)
        sys.stdin.read()
        print(json.dumps([f"{r.method} {r.host}{r.path}" for r in api.remote_requests()]),
              flush=True)


@contextmanager
def fake_model() -> Iterator[tuple[str, list[str]]]:
    """The fake's base URL; after the block, the list holds the refused remote requests."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fake"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    remote: list[str] = []
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), remote
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        line = proc.stdout.readline()
        remote.extend(json.loads(line) if line.strip() else ["(the fake exited early)"])
        proc.wait(timeout=30)


# --- timing one turn ------------------------------------------------------------------------


@dataclass
class Timing:
    first_event: float
    turn: float


def bare_turn(start: Launch, env: dict[str, str], cwd: Path) -> Timing:
    """The agent run by hand as Cadenza would: its argv, the prompt on stdin when it reads it
    there (then closed)."""
    started = time.perf_counter()
    proc = subprocess.Popen(start.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((start.stdin or "").encode())
    proc.stdin.close()
    argv = start.argv
    first = None
    for _ in proc.stdout:
        if first is None:
            first = time.perf_counter() - started
    proc.stdout.close()
    code = proc.wait()
    turn = time.perf_counter() - started
    if code != 0 or first is None:
        raise RuntimeError(f"the bare {argv[0]} failed with exit code {code}")
    return Timing(first, turn)


class Stopwatch:
    """A plugin timing each turn: spawn (``on_turn_start``) → first agent event → the end."""

    def __init__(self) -> None:
        self.spawned: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.ended: dict[str, asyncio.Future[StreamEvent]] = {}

    def expect(self, turn_id: str) -> asyncio.Future[StreamEvent]:
        return self.ended.setdefault(turn_id, asyncio.get_running_loop().create_future())

    @hookimpl
    def authorize(self, chat, user_id) -> bool:
        return True  # the frontend of the bench's own chats

    @hookimpl
    def on_turn_start(self, turn: Turn) -> None:
        self.spawned[turn.id] = time.perf_counter()

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        turn_id = event.turn.id
        if event.kind != "started" and turn_id not in self.first:
            self.first[turn_id] = time.perf_counter()
        if event.terminal:
            self.expect(turn_id).set_result(event)


async def cadenza_turn(app: App, watch: Stopwatch, chat: ChatRef) -> Timing:
    assert app.bot is not None
    started = time.perf_counter()
    turn = await app.bot.submit(chat, PROMPT)
    end = await asyncio.wait_for(watch.expect(turn.id), 120)
    finished = time.perf_counter()
    if end.kind != "completed":
        raise RuntimeError(f"the turn through Cadenza ended {end.kind}: {end.text}")
    return Timing(watch.first[turn.id] - watch.spawned[turn.id], finished - started)


# --- one agent --------------------------------------------------------------------------------


@dataclass
class Result:
    agent: str
    bare: list[Timing] = field(default_factory=list)
    cadenza: list[Timing] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)  # loaded in the Cadenza that ran the turns

    def median(self, side: str, what: str) -> float:
        return statistics.median(getattr(t, what) for t in getattr(self, side))

    def added(self) -> float:
        return statistics.median(c.turn - b.turn for b, c in zip(self.bare, self.cadenza,
                                                                   strict=True))


def toml_config(agent: str, binary: Path, args: list[str], env: dict[str, str],
                workdir: Path, core_only: bool) -> str:
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in env.items())
    off = sorted(discover()) if core_only else ["console"]
    switches = "".join(f"{name} = false\n" for name in off)
    return (f'[plugins]\n{switches}\n[agent]\ndefault = "{agent}"\n'
            f"workdir = {json.dumps(str(workdir))}\n\n"
            f"[agent.{agent}]\nbinary = {json.dumps(str(binary))}\n"
            f"args = {json.dumps(args)}\nenv = {{ {table} }}\n")


async def bench_agent(agent: str, binary: Path, base_url: str, runs: int, scratch: Path,
                      core_only: bool) -> Result:
    home, project = scratch / agent / "home", scratch / agent / "project"
    project.mkdir(parents=True)
    home.mkdir()
    contained = (claude_env if agent == "claude" else codex_env)(base_url, home)
    process_env = {**base_env(home), **proxy_env(base_url)}
    agent_env = {key: value for key, value in contained.items() if key not in process_env}
    args = claude_args() if agent == "claude" else codex_config_args(base_url)
    # Cadenza merges the agent's env over its own: make its own the contained one.
    os.environ.clear()
    os.environ.update(process_env)

    config = scratch / agent / "plugins.toml"
    config.write_text(toml_config(agent, binary, args, agent_env, project, core_only))
    app = App(Config.load(config), scratch / agent / "state")
    watch = Stopwatch()
    app.add_plugin("stopwatch", watch)
    bot = await app.start()
    argv = launch(bot._agents[agent], PROMPT, None)  # the very adapter Cadenza runs
    env = {**os.environ, **agent_env}
    assert app.loader is not None
    result = Result(agent, plugins=sorted(
        name for name, record in app.loader.records.items() if record.loaded))
    try:
        bare_turn(argv, env, project)  # warm-up: first-run files, page cache
        await cadenza_turn(app, watch, ChatRef("bench", "warm-up"))
        for i in range(runs):
            pair = ("bare", "cadenza") if i % 2 == 0 else ("cadenza", "bare")
            for side in pair:
                if side == "bare":
                    result.bare.append(bare_turn(argv, env, project))
                else:
                    result.cadenza.append(
                        await cadenza_turn(app, watch, ChatRef("bench", f"chat-{i}")))
    finally:
        await app.stop()
    return result


def startup_seconds(runs: int, scratch: Path) -> float:
    """``cadenza run`` on an empty pipe: interpreter, imports, plugins, state, exit."""
    config = scratch / "startup.toml"
    config.write_text('[agent]\ndefault = "command"\n')
    times = []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cadenza.cli", "run", "--config", str(config),
                        "--state-dir", str(scratch / f"startup-state-{i}")],
                       input="", capture_output=True, check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def main_async(args: argparse.Namespace) -> int:
    results: list[Result] = []
    # before the environment is replaced by the contained one (the npm cache is under HOME)
    binaries = {agent: ensure_installed(CLAUDE if agent == "claude" else CODEX)
                for agent in args.agents}
    saved_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        scratch = Path(tmp)
        with fake_model() as (base_url, remote):
            try:
                for agent in args.agents:
                    results.append(
                        await bench_agent(agent, binaries[agent], base_url, args.runs, scratch,
                                          args.core_only))
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
        startup = startup_seconds(args.runs, scratch)

    print(f"{args.runs} interleaved runs per agent (medians); Cadenza in-process with the "
          f"plugins {', '.join(results[0].plugins or ['(none)']) if results else '-'} "
          "(and a stopwatch), "
          "interpreter start-up excluded")
    print(f"{'agent':<8}{'first event bare / cadenza':>30}{'turn bare / cadenza':>24}"
          f"{'added per turn':>17}{'ratio':>8}")
    worst = 0.0
    for r in results:
        added = r.added()
        worst = max(worst, added)
        first = f"{ms(r.median('bare', 'first_event'))} / {ms(r.median('cadenza', 'first_event'))}"
        turn = f"{ms(r.median('bare', 'turn'))} / {ms(r.median('cadenza', 'turn'))}"
        ratio = r.median("cadenza", "turn") / r.median("bare", "turn")
        print(f"{r.agent:<8}{first:>30}{turn:>24}{added * 1000:>+14.1f} ms{ratio:>8.3f}")
    verdict = "within" if worst < TARGET_MS / 1000 else "OVER"
    print(f"target: < {TARGET_MS:.0f} ms added per turn: {verdict} (worst {worst * 1000:+.1f} ms)")
    print(f"cadenza run start-up to exit on an empty pipe (once per process): {ms(startup)}")
    if remote:
        print(f"the CLIs tried to reach other hosts (refused): {remote}")
        return 1
    return 0


def main() -> int:
    if sys.argv[1:] == ["--serve-fake"]:
        serve_fake()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved pairs per agent")
    parser.add_argument("--agents", nargs="+", default=["claude", "codex"],
                        choices=["claude", "codex"])
    parser.add_argument("--core-only", action="store_true",
                        help="switch every plugin off (journal, timeout, ...): the core alone")
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except NpmMissingError as error:
        print(f"bench/agents.py: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
