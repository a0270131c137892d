"""Shared fixtures: the scripted agent on PATH, configs in tmp dirs, an in-process app (the
``cadenza.testing`` kit's), the CLI."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import backends
import pytest
from cadenza.testing import CHAT as CHAT  # the tests import it from here
from cadenza.testing import Harness, RecordingFrontend
from cadenza.testing.agents import write_launchers
from cadenza.testing.harness import AppFactory

TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture
def agent_bin(tmp_path: Path) -> Path:
    """A directory holding ``claude`` and ``codex`` that are the kit's scripted agent."""
    return write_launchers(tmp_path / "bin")


@pytest.fixture
def agent_path(agent_bin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scripted agents first on PATH for this test."""
    monkeypatch.setenv("PATH", f"{agent_bin}{os.pathsep}{os.environ['PATH']}")
    return agent_bin


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie waiting for an absent reaper counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def gone(pid: int, within: float = 3.0) -> bool:
    """Whether ``pid`` is gone, allowing the kernel ``within`` seconds to finish a SIGKILL."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Recorder(RecordingFrontend):
    """The kit's recording frontend, plus ``other``: what is not an event or a notice."""

    @property
    def other(self) -> list[tuple[str, Any]]:
        return [(kind, item) for kind, item in self.log if kind not in ("event", "notice")]


class TestHarness(Harness):
    __test__ = False

    @property
    def recorder(self) -> Recorder:
        return self.frontend  # type: ignore[return-value]


StartApp = Callable[..., Any]


@pytest.fixture
async def start_app(tmp_path: Path) -> AsyncIterator[StartApp]:
    """``await start_app(toml_text, extra_plugin=..., ...)`` → a running harness: the kit's
    ``cadenza_app`` with ``h.recorder`` for its frontend."""
    factory = AppFactory(tmp_path, frontend=Recorder, harness=TestHarness)
    yield factory
    await factory.close()


def agent_config(agent: str = "claude", extra: str = "") -> str:
    """A plugins.toml using the fake agent, the console off (tests have no stdin)."""
    return f'[plugins]\nconsole = false\n\n[agent]\ndefault = "{agent}"\n{extra}\n'


@pytest.fixture
def run_cli(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cadenza.cli", *args], input=input, capture_output=True,
            text=True, env={**os.environ, **(env or {})}, cwd=cwd or tmp_path, timeout=timeout,
        )

    yield run


THIRD_PARTY_MODULES = {
    "sample_plugin.py": '''
from cadenza.api import hookimpl

SEEN = []


class SamplePlugin:
    """A well-behaved third-party plugin: remembers every event kind it sees."""

    def __init__(self, context):
        self.greeting = context.settings.string("greeting", "hi")

    @hookimpl
    def on_stream_event(self, event):
        SEEN.append(event.kind)

    @hookimpl
    def report_status(self):
        return {"sample": {"greeting": self.greeting}}

    @hookimpl
    def doctor_checks(self):
        return [(self.greeting != "rude", f"sample: greeting is {self.greeting}")]
''',
    "raising_plugin.py": '''
from cadenza.api import hookimpl


class RaisingPlugin:
    def __init__(self, context):
        pass

    @hookimpl
    def on_stream_event(self, event):
        raise RuntimeError("boom from a plugin")
''',
    "hanging_plugin.py": '''
import asyncio

from cadenza.api import hookimpl


class HangingPlugin:
    def __init__(self, context):
        pass

    @hookimpl
    async def on_stream_event(self, event):
        await asyncio.sleep(3600)
''',
    "broken_plugin.py": '''
raise ImportError("this plugin is broken on import")
''',
}

THIRD_PARTY_ENTRY_POINTS = {
    "sample": "sample_plugin:SamplePlugin",
    "raising": "raising_plugin:RaisingPlugin",
    "hanging": "hanging_plugin:HangingPlugin",
    "broken": "broken_plugin:Plugin",
}


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A distribution ``cadenza-sample 1.2.3`` installed for real: modules plus a dist-info
    directory with entry points, on sys.path here and on PYTHONPATH for subprocesses."""
    site = tmp_path / "site"
    dist_info = site / "cadenza_sample-1.2.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cadenza-sample\nVersion: 1.2.3\n")
    lines = [f"{name} = {target}" for name, target in THIRD_PARTY_ENTRY_POINTS.items()]
    (dist_info / "entry_points.txt").write_text("[cadenza]\n" + "\n".join(lines) + "\n")
    for name, source in THIRD_PARTY_MODULES.items():
        (site / name).write_text(source)
    monkeypatch.syspath_prepend(str(site))
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath}


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``cadenza ARGS`` as a real process with pipes, for tests that signal or kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "cadenza.cli", *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    """Read stdout until ``needle`` shows up; text may arrive without a newline."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no {needle!r} within {timeout} s: {seen!r}"
        chunk = os.read(proc.stdout.fileno(), 65536).decode()
        assert chunk, f"output ended before {needle!r}: {seen!r}"
        seen += chunk
    return seen


@pytest.fixture(params=backends.NAMES)
def state_backend(request: pytest.FixtureRequest) -> Iterator[backends.Backend]:
    """Each state backend in turn: SQLite, then PostgreSQL (skipped, with the reason, when
    ``CADENZA_TEST_POSTGRES_URL`` is not set); see tests/backends.py."""
    with backends.backend(request.param) as backend:
        yield backend
