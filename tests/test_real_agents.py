"""Real agents end to end: Cadenza → real CLI → fake model API → real CLI → Cadenza.

Each test runs ``cadenza run`` as a real process with the console frontend (prompts on its
stdin, the stream on its stdout), configured for Claude Code or Codex CLI (the pinned npm
installs of tests/fakes/agent_clis.py), whose model API is ``FakeModelAPI``. The script the
fake model follows is the prompt (see tests/fakes/model_api.py).

Containment: ``cadenza run`` gets an environment built from nothing (scratch HOME, PATH, the
proxy variables pointing at the fake, no credentials), and the agent-specific variables come
through ``[agent.NAME] env`` in plugins.toml, the way a user configures them. Every test
asserts that the fake refused no request meant for another host.

While a test waits for output it records every process below ``cadenza run`` from /proc
(pid, start time, argv), so "no process of the agent's tree is left" covers what left the
agent's process group too: Claude's Bash tool runs in a session of its own, Codex's commands
run under bwrap in theirs, and npm's ``codex`` launcher does its work in a native child.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_clis import (
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
from tests.fakes.model_api import FakeModelAPI, _anthropic_prompt, _responses_prompt, big_text

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ["claude", "codex"]
PINS = {"claude": CLAUDE, "codex": CODEX}

pytestmark = pytest.mark.agent_cli


def _plugin_missing(name: str) -> str | None:
    """Why the built-in plugin ``name`` cannot run here, or None when it can."""
    if importlib.util.find_spec(f"plugins.{name}") is None:
        return f"plugins/{name}.py does not exist yet"
    from cadenza.loader import discover

    if name not in discover():
        return f"the {name!r} entry point is not installed (pip install -e . after pyproject)"
    return None


def needs_plugin(name: str) -> pytest.MarkDecorator:
    reason = _plugin_missing(name)
    return pytest.mark.skipif(reason is not None, reason=f"needs the {name} plugin: {reason}")


# --- the fake model API -------------------------------------------------------------------


class ModelAPI(FakeModelAPI):
    """The fake, whose shutdown does not wait for answers nobody will read.

    A script's ``sleep 30`` keeps its handler sleeping after the CLI that asked was killed,
    and aiohttp's graceful shutdown would wait for it (60 s): cancel what still runs on the
    fake's own loop first.
    """

    async def stop(self) -> None:
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
        await super().stop()


@pytest.fixture
def fake() -> Iterator[ModelAPI]:
    with ModelAPI().in_thread() as api:
        yield api


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """Filled on first use, so a claude-only run does not install codex."""
    return {}


def binary(binaries: dict[str, Path], agent: str) -> Path:
    if agent not in binaries:
        try:
            binaries[agent] = ensure_installed(PINS[agent])
        except NpmMissingError as error:
            pytest.skip(f"{error} (agent_cli tests need npm to install the pinned CLIs)")
    return binaries[agent]


# --- processes from /proc -----------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks after boot: tells a reused pid from the process we saw
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """Still running; a zombie waiting for its reaper counts as gone."""
        stat = _stat(self.pid)
        return stat is not None and int(stat[19]) == self.start and stat[0] != "Z"

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def descendants(root: int) -> list[Proc]:
    """Every process below ``root``, whatever session or process group it moved to."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
            starts[int(entry.name)] = int(stat[19])
    found: list[Proc] = []
    pending = list(children.get(root, ()))
    while pending:
        pid = pending.pop()
        pending += children.get(pid, ())
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = tuple(part.decode(errors="replace")
                             for part in handle.read().split(b"\0") if part)
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append(Proc(pid, starts[pid], argv))
    return found


# --- one `cadenza run` --------------------------------------------------------------------


@dataclass
class Cadenza:
    """A running ``cadenza run``: its stdin, its stdout so far, and the agent processes
    seen below it while a test waited."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    out: str = ""
    tree: dict[tuple[int, int], Proc] = field(default_factory=dict)
    argvs: set[tuple[str, ...]] = field(default_factory=set)  # a pid's argv changes at exec

    def __post_init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        os.set_blocking(self.proc.stdout.fileno(), False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> int:
        """Type one line; returns the output position before it, for ``since``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return len(self.out)

    def processes(self) -> list[Proc]:
        return list(self.tree.values())

    def _look(self) -> None:
        for proc in descendants(self.pid):
            self.tree[proc.pid, proc.start] = proc
            self.argvs.add(proc.argv)

    def _read_some(self, timeout: float) -> bool:
        """Read what stdout has within ``timeout``; False at its end."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        self.out += self._decode(chunk)
        return bool(chunk)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Read stdout and record the process tree until ``condition()`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self._look()
            result = condition()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s\n{self.transcript()}")
            if not self._read_some(min(left, 0.02)):
                raise AssertionError(f"output ended before {what}\n{self.transcript()}")

    def read_until(self, needle: str, timeout: float = 30, since: int = 0) -> str:
        """Wait for ``needle`` in the output after position ``since``; the output after it."""
        self.wait(lambda: needle in self.out[since:], repr(needle), timeout)
        return self.out[since:]

    def line_with(self, needle: str, since: int = 0) -> str:
        """The whole output line holding ``needle``, once it is complete."""
        def line() -> str | None:
            text = self.out[since:]
            at = text.find(needle)
            end = text.find("\n", at)
            return text[text.rfind("\n", 0, at) + 1: end] if at >= 0 and end >= 0 else None

        return self.wait(line, f"a line with {needle!r}")

    def close(self, timeout: float = 20) -> int:
        """End of input: Cadenza finishes what runs and exits; the rest of its output is read."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while self._read_some(0.02):
            self._look()
            if time.monotonic() > deadline:
                raise AssertionError(f"cadenza did not exit\n{self.transcript()}")
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def transcript(self) -> str:
        seen = "\n".join(f"{proc.pid} {' '.join(proc.argv)[:200]!r}" for proc in self.processes())
        return (f"--- stdout:\n{self.out[-4000:]}\n--- stderr:\n{self.stderr()[-4000:]}\n"
                f"--- agent processes seen:\n{seen}")


@dataclass
class Rig:
    """One agent CLI, its fake model, a scratch home and project, and the Cadenzas started."""

    agent: str
    binary: Path
    api: ModelAPI
    root: Path
    runs: list[Cadenza] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def config(self) -> Path:
        return self.root / "plugins.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def process_env(self) -> dict[str, str]:
        """Cadenza's own environment, from nothing: the agent's settings come from the config."""
        return {**base_env(self.home), **proxy_env(self.api.base_url), "PYTHONPATH": str(ROOT)}

    def agent_env(self) -> dict[str, str]:
        make = claude_env if self.agent == "claude" else codex_env
        contained = make(self.api.base_url, self.home)
        process = self.process_env()
        return {key: value for key, value in contained.items() if key not in process}

    def agent_args(self) -> list[str]:
        return claude_args() if self.agent == "claude" else codex_config_args(self.api.base_url)

    def configure(self, timeout: str = "kill_grace = 2", args: tuple[str, ...] = ()) -> None:
        self.config.write_text(
            # files off: these tests check the prompt the model gets, byte for byte (no preamble)
            f'[plugins]\nconsole = true\nfiles = false\n\n'
            f'[agent]\ndefault = "{self.agent}"\nworkdir = {json.dumps(str(self.project))}\n\n'
            f'[agent.{self.agent}]\nbinary = {json.dumps(str(self.binary))}\n'
            f'args = {json.dumps([*self.agent_args(), *args])}\n'
            f'env = {_inline_table(self.agent_env())}\n\n'
            f'[timeout]\n{timeout}\n'
        )

    def start(self) -> Cadenza:
        if not self.config.exists():
            self.configure()
        stderr_path = self.root / f"cadenza-{len(self.runs) + 1}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cadenza.cli", "run", "--config", str(self.config),
                 "--state-dir", str(self.state)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                cwd=self.root, env=self.process_env(),
            )
        run = Cadenza(proc, stderr_path)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        for run in self.runs:
            if os.environ.get("CADENZA_SHOW_TRANSCRIPTS"):  # with -s: what each run printed
                print(f"\n=== {self.agent}: cadenza run #{self.runs.index(run) + 1}\n"
                      f"{run.transcript()}")
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=10)
            for proc in run.processes():
                proc.kill()
            for stream in (run.proc.stdin, run.proc.stdout):
                with contextlib.suppress(OSError, ValueError):
                    stream.close()


def _inline_table(values: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items()) + " }"


@pytest.fixture(params=AGENTS)
def rig(request: pytest.FixtureRequest, binaries: dict[str, Path], fake: ModelAPI,
        tmp_path: Path) -> Iterator[Rig]:
    setup = Rig(request.param, binary(binaries, request.param), fake, tmp_path)
    setup.home.mkdir()
    setup.project.mkdir()
    try:
        yield setup
    finally:
        setup.cleanup()


def no_remote_requests(rig: Rig) -> None:
    remote = [(r.method, r.host, r.path) for r in rig.api.remote_requests()]
    assert remote == [], f"the {rig.agent} CLI tried to reach other hosts: {remote}"


def agent_processes(run: Cadenza) -> list[Proc]:
    assert run.processes(), f"no agent process was seen\n{run.transcript()}"
    return run.processes()


def assert_all_gone(procs: list[Proc], within: float = 3.0) -> None:
    """Every process in ``procs`` ends within ``within`` seconds (the kernel may need a moment
    to finish a SIGKILL)."""
    deadline = time.monotonic() + within
    while (left := [proc for proc in procs if proc.alive()]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, "still running: " + "; ".join(
        f"{proc.pid} {' '.join(proc.argv)[:160]}" for proc in left)


def sleeping(run: Cadenza) -> bool:
    """The agent's shell tool is running ``sleep 30``."""
    return any(proc.argv[:2] == ("sleep", "30") for proc in run.processes())


# --- the tests ----------------------------------------------------------------------------


def test_text_answer_streams_to_the_console(rig: Rig) -> None:
    run = rig.start()
    since = run.send("say Hello from the real CLI; sleep 0.8; say a second block")
    run.read_until("Hello from the real CLI", since=since)
    first_at = time.monotonic()
    out = run.read_until("✅ done", since=since)
    assert time.monotonic() - first_at > 0.5, "the first block waited for the whole answer"
    assert "Hello from the real CLI\n\na second block\n✅ done" in out
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def test_tool_call_is_shown_compactly_then_the_final_text(rig: Rig) -> None:
    run = rig.start()
    since = run.send("say running a tool; tool echo hi from the tool; say tool done")
    out = run.read_until("✅ done", since=since)
    call = ("Bash: echo hi from the tool" if rig.agent == "claude"
            else "shell: /bin/bash -lc 'echo hi from the tool'")
    assert f"running a tool\n⚙ {call}\n  ↳ hi from the tool\ntool done\n✅ done" in out
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def test_a_20000_character_answer_arrives_complete(rig: Rig) -> None:
    run = rig.start()
    since = run.send("big 20000")
    out = run.read_until("✅ done", since=since)
    expected = big_text(20_000)
    answer = out[out.index("L00001 "): out.index("✅ done")]
    assert answer == expected + ("" if expected.endswith("\n") else "\n")
    assert out.count("L00001 ") == 1
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def test_an_api_error_is_shown_and_fails_the_turn(rig: Rig) -> None:
    run = rig.start()
    since = run.send("error 400 fake quota exceeded")
    run.read_until("❌ failed", since=since)
    assert run.close() == 0, run.transcript()
    out = run.out[since:]
    assert "✅ done" not in out
    if rig.agent == "claude":
        assert "API Error: 400 fake quota exceeded\n❌ failed" in out
    else:
        assert "! fake quota exceeded\n❌ failed" in out
    no_remote_requests(rig)


def test_the_turn_completes_while_cadenzas_stdin_stays_open(rig: Rig) -> None:
    run = rig.start()
    since = run.send("say answered with stdin open")
    out = run.read_until("✅ done", timeout=20, since=since)
    assert "answered with stdin open\n✅ done" in out
    assert run.proc.poll() is None, "Cadenza should still wait for more input"
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def model_prompts(rig: Rig) -> list[str]:
    """The prompt of each request the CLI sent the fake model (the last user text)."""
    read = _anthropic_prompt if rig.agent == "claude" else _responses_prompt
    key = "messages" if rig.agent == "claude" else "input"
    return [read(request.body[key])[0] for request in rig.api.requests(MODEL_PATHS[rig.agent])]


@pytest.mark.parametrize("prompt", ["--version -p is a prompt, not options", "-"],
                         ids=["dashes", "lone-dash"])
def test_a_prompt_starting_with_a_dash_is_a_prompt(rig: Rig, prompt: str) -> None:
    run = rig.start()
    since = run.send(prompt)
    out = run.read_until("✅ done", since=since)
    assert f"echo: {prompt}\n✅ done" in out, run.transcript()
    assert model_prompts(rig)[-1] == prompt
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def test_a_200_kb_prompt_reaches_the_model_whole(rig: Rig) -> None:
    """Past the kernel's 128 KiB limit on one argument: the prompt goes on stdin."""
    words = "w" * 200_000
    run = rig.start()
    since = run.send(f"say {words}")
    out = run.read_until("✅ done", timeout=60, since=since)
    assert f"{words}\n✅ done" in out, run.transcript()
    assert model_prompts(rig)[-1] == f"say {words}"
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


ESCAPEE = ("sleep", "1234.5678")  # an argv no other process has


def escapees() -> list[Proc]:
    """Processes running ESCAPEE, wherever they are in the process tree."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = tuple(Path(entry.path, "cmdline").read_bytes().decode().split("\0")[:-1])
                stat = _stat(int(entry.name))
                if argv == ESCAPEE and stat is not None:
                    found.append(Proc(int(entry.name), int(stat[19]), argv))
    return found


def test_what_the_agents_tool_leaves_running_ends_with_the_turn(rig: Rig) -> None:
    """A tool double-forks a sleeper into a session of its own, without CADENZA_TURN: it is
    gone when the turn ends (Cadenza puts each turn's agent in a cgroup of its own)."""
    if rig.agent == "codex":  # its sandbox's PID namespace would take the sleeper along
        rig.configure(args=("--dangerously-bypass-approvals-and-sandbox",))
    assert not escapees()
    run = rig.start()
    since = run.send(f"tool (env -u CADENZA_TURN setsid {' '.join(ESCAPEE)} </dev/null "
                     ">/dev/null 2>&1 &) && echo left; sleep 3; say done")
    (sleeper,) = run.wait(escapees, "the tool's sleeper")
    try:
        assert b"CADENZA_TURN=" not in Path(f"/proc/{sleeper.pid}/environ").read_bytes()
        run.read_until("✅ done", since=since)
        assert_all_gone([sleeper])
    finally:
        sleeper.kill()
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def stop_while_the_tool_sleeps(rig: Rig) -> tuple[Cadenza, list[Proc]]:
    run = rig.start()
    since = run.send("say working; tool echo started && sleep 30; say never")
    run.read_until("⚙ ", since=since)
    run.wait(lambda: sleeping(run), "the tool's sleep 30 among the agent's processes")
    procs = agent_processes(run)
    since = run.send("/stop")
    out = run.read_until("⏹ stopped", since=since)
    assert "never" not in out
    return run, procs


def test_stop_leaves_no_process_of_the_agents_tree(rig: Rig) -> None:
    run, procs = stop_while_the_tool_sleeps(rig)
    if rig.agent == "codex":  # npm's launcher (node) and the native binary it starts
        names = [Path(proc.argv[0]).name for proc in procs if proc.argv]
        assert "node" in names and "codex" in names, names
    assert_all_gone(procs)
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


@pytest.mark.parametrize("rig", [
    "claude",
    "codex",
], indirect=True)
def test_a_kill_without_grace_leaves_no_process_of_the_agents_tree(rig: Rig) -> None:
    rig.configure("kill_grace = 0")
    run, procs = stop_while_the_tool_sleeps(rig)
    try:
        assert_all_gone(procs, within=1.5)
    finally:
        run.close()
    no_remote_requests(rig)


@needs_plugin("timeout")
def test_a_timeout_leaves_no_process_alive(rig: Rig) -> None:
    rig.configure("seconds = 2\nwarn_before = [1]\nextend_by = 1\nmax_seconds = 2\n"
                  "activity_window = 0.5\nkill_grace = 0.5")
    run = rig.start()
    since = run.send("tool echo started && sleep 30")
    began = time.monotonic()
    run.wait(lambda: sleeping(run), "the tool's sleep 30 among the agent's processes")
    procs = agent_processes(run)
    out = run.read_until("⌛ timed out", timeout=15, since=since)
    assert time.monotonic() - began < 6, "the 2 s limit (no extension possible) was not kept"
    assert "⏳ about 1 s left" in out
    assert_all_gone(procs)
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)


def session_of(request: Any, agent: str) -> str:
    """The agent-side session id a CLI sent with a model request."""
    headers = {key.lower(): value for key, value in request.headers.items()}
    return headers["x-claude-code-session-id" if agent == "claude" else "thread-id"]


MODEL_PATHS = {"claude": "/v1/messages", "codex": "/v1/responses"}
FIRST_PROMPT = "say working on it; sleep 30; say never"


@dataclass
class Crash:
    session: str  # the agent-side session the crashed turn had started
    orphans: list[Proc]  # the crashed run's agent processes
    restarted: Cadenza  # the new run, once it ended the resumed turn
    ended: str  # its output from the recovery notice on


def crash_mid_turn_and_restart(rig: Rig) -> Crash:
    """``kill -9`` Cadenza while the agent waits for the model, then start it again."""
    first = rig.start()
    since = first.send(FIRST_PROMPT)
    first.read_until("working on it", since=since)
    request = rig.api.requests(MODEL_PATHS[rig.agent])[0]
    orphans = agent_processes(first)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)

    second = rig.start()
    second.read_until("🔄 Cadenza restarted after a crash")
    recovery = second.line_with("resuming your interrupted task")
    assert recovery.startswith("↻ ") and "say working on it" in recovery, second.transcript()
    after = second.out.index(recovery)
    second.wait(lambda: any(end in second.out[after:] for end in ("✅ done", "❌ failed")),
                "the end of the resumed turn")
    return Crash(session_of(request, rig.agent), orphans, second, second.out[after:])


@needs_plugin("journal")
@pytest.mark.parametrize("rig", ["claude", "codex"], indirect=True)
def test_a_crash_mid_turn_resumes_the_same_conversation(rig: Rig) -> None:
    crash = crash_mid_turn_and_restart(rig)
    second = crash.restarted
    assert "✅ done" in crash.ended, second.transcript()
    # the model's answer to the resumed prompt (which repeats the first one, with a note)
    assert "echo: say working on it" in crash.ended
    # the resumed run continued the agent's session: its argv, and what it sent the model
    resume = ["--resume", crash.session] if rig.agent == "claude" else ["resume", crash.session]
    assert any(_contains(list(argv), resume) for argv in second.argvs), second.transcript()
    resumed = rig.api.requests(MODEL_PATHS[rig.agent])[-1]
    assert session_of(resumed, rig.agent) == crash.session
    history = json.dumps(resumed.body["messages" if rig.agent == "claude" else "input"])
    assert history.count("say working on it") >= 2  # the first run's prompt, and the resume's
    assert second.close() == 0, second.transcript()
    no_remote_requests(rig)


@needs_plugin("journal")
def test_a_restart_after_a_crash_stops_the_crashed_runs_agent(rig: Rig) -> None:
    crash = crash_mid_turn_and_restart(rig)
    try:
        assert_all_gone(crash.orphans, within=1.5)
    finally:
        crash.restarted.close()
        no_remote_requests(rig)


def _contains(argv: list[str], part: list[str]) -> bool:
    return any(argv[i: i + len(part)] == part for i in range(len(argv)))
