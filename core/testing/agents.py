"""Agents for tests: the scripted agent program and the recorded streams of the real CLIs.

Both run as real subprocesses through the real adapters and parsers; nothing reaches a model.
"""

from __future__ import annotations

import atexit
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROGRAM = HERE / "fake_agent.py"
STREAMS_DIR = HERE / "streams"
# Every recorded stream shipped with the kit, by name: "claude-text", "codex-tool", ...
STREAMS = tuple(sorted(path.stem for path in STREAMS_DIR.glob("*.jsonl")))
AGENTS = ("claude", "codex")
REPLAY_ENV = "CADENZA_REPLAY"  # read by the program: replay this file instead of a script

_bin: Path | None = None


def write_launchers(directory: Path) -> Path:
    """Put ``claude`` and ``codex`` into ``directory``: executables that run the scripted
    agent program with this Python (isolated: the program needs only the standard library),
    as that CLI. Returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for agent in AGENTS:
        launcher = directory / agent
        command = shlex.join([sys.executable, "-I", str(PROGRAM), agent])
        launcher.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        launcher.chmod(0o755)
    return directory


def launchers() -> Path:
    """This process's directory of launchers (see ``write_launchers``), made on first use and
    removed when the process exits."""
    global _bin
    if _bin is None or not (_bin / AGENTS[0]).exists():
        _bin = write_launchers(Path(tempfile.mkdtemp(prefix="cadenza-testing-")))
        atexit.register(shutil.rmtree, _bin, True)
    return _bin


def _string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def scripted_agent(agent: str = "claude") -> str:
    """A plugins.toml fragment (its ``[agent]`` and ``[agent.AGENT]`` tables) making ``agent``
    (``claude`` or ``codex``) the default agent, played by the scripted agent program.

    The agent is a real subprocess printing the real CLI's output format, and the prompt is
    its script, steps separated by ``;`` or newlines (``cadenza.testing.fake_agent`` has the
    details): ``say TEXT``, ``tick N SECS TEXT`` (N texts SECS apart), ``sleep SECS``,
    ``big N`` (a text of N characters), ``tool CMD`` (a tool call running CMD, then its
    result), ``garbage`` (lines no parser knows), ``stderr TEXT``, ``exit CODE``, ``fail
    MESSAGE`` (an API error, as the CLI reports one), ``grandchild`` (a child that ignores
    SIGTERM), ``ignore_term``. Any other prompt is answered "echo: PROMPT". Example:
    ``"say hi; sleep 0.2; tool ls; fail quota"``.
    """
    if agent not in AGENTS:
        raise ValueError(f"the scripted agent speaks {' or '.join(AGENTS)}, not {agent!r}")
    binary = launchers() / agent
    return f'\n[agent]\ndefault = "{agent}"\n\n[agent.{agent}]\nbinary = {_string(str(binary))}\n'


def recorded(name: str) -> Path:
    """The file of the recorded real stream ``name`` (``claude-tool``, ``codex-error``, ...;
    ``STREAMS`` lists them all): one JSON line per line the real CLI printed."""
    stem = name.removesuffix(".jsonl")
    if stem not in STREAMS:
        raise ValueError(f"no recorded stream {name!r}; there are: {', '.join(STREAMS)}")
    return STREAMS_DIR / f"{stem}.jsonl"


def replay_agent(name: str) -> str:
    """A plugins.toml fragment whose default agent prints the recorded stream ``name``, with
    the real CLI's exit code, whatever the prompt: ``claude-*`` through the claude adapter and
    parser, ``codex-*`` through codex's."""
    path = recorded(name)
    agent = path.stem.split("-", 1)[0]
    return (scripted_agent(agent)
            + f"env = {{ {REPLAY_ENV} = {_string(str(path))} }}\n")

