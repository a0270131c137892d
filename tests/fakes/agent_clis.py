"""The real agent CLIs for tests: pinned npm installs, and an offline, contained setup.

Each CLI is installed once into its own npm prefix under the cache dir
(`CADENZA_NPM_CACHE`, default `~/.cache/cadenza-npm`); `.ci/install-agent-clis` does the
same from CI. The environments built here start from nothing (no real credential can leak
in), point the model API at `FakeModelAPI`, and route every other request to it as a proxy,
where it is refused and logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PinnedCLI:
    package: str
    version: str
    binary: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    def prefix(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.package.rsplit('/', 1)[-1]}-{self.version}"

    def binary_path(self, cache_dir: Path) -> Path:
        return self.prefix(cache_dir) / "node_modules" / ".bin" / self.binary


# Keep in step with .ci/install-agent-clis (a unit test checks).
CLAUDE = PinnedCLI("@anthropic-ai/claude-code", "2.1.332", "claude")
CODEX = PinnedCLI("@openai/codex", "0.171.0", "codex")

DUMMY_KEY = "sk-cadenza-test-not-a-real-key"
LOOPBACK = "127.0.0.1,localhost"


class NpmMissingError(RuntimeError):
    """npm is not on PATH, so the CLIs cannot be installed."""


def npm_cache_dir() -> Path:
    configured = os.environ.get("CADENZA_NPM_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cadenza-npm"


def npm_available() -> bool:
    return shutil.which("npm") is not None


def _reports_version(binary: Path, version: str) -> bool:
    if not binary.exists():
        return False
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ.get("PATH", os.defpath), "HOME": str(Path.home())},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return version in out.stdout


@cache
def ensure_installed(cli: PinnedCLI, cache_dir: Path | None = None) -> Path:
    """The path of the pinned CLI's binary, installing it with npm if needed."""
    cache_dir = cache_dir or npm_cache_dir()
    binary = cli.binary_path(cache_dir)
    if _reports_version(binary, cli.version):
        return binary
    if not npm_available():
        raise NpmMissingError(f"npm is not on PATH; cannot install {cli.spec}")
    prefix = cli.prefix(cache_dir)
    prefix.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may race to install the same prefix.
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _reports_version(binary, cli.version):
            _npm_install(prefix, cli.spec)
    if not _reports_version(binary, cli.version):
        raise RuntimeError(f"{binary} does not report version {cli.version} after npm install")
    return binary


def _npm_install(prefix: Path, spec: str) -> None:
    done = subprocess.run(
        ["npm", "install", "--prefix", str(prefix), spec, "--no-audit", "--no-fund"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm install {spec} failed ({done.returncode}): {done.stderr[-3000:]}")


# --- contained environments ------------------------------------------------------------


def proxy_env(base_url: str) -> dict[str, str]:
    """Send every non-loopback request to the fake, which refuses and logs it."""
    env = {"NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = base_url
    return env


def base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }


def claude_env(base_url: str, home: Path) -> dict[str, str]:
    return {
        **base_env(home),
        **proxy_env(base_url),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": DUMMY_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # As root, bypassPermissions / --dangerously-skip-permissions are refused without it.
        "IS_SANDBOX": "1",
    }


def claude_args() -> list[str]:
    """Extra flags for offline tests: let the Bash tool run without an approval prompt."""
    return ["--allowedTools", "Bash"]


def claude_argv(
    binary: Path, prompt: str, *, resume: str | None = None, extra: list[str] | None = None
) -> list[str]:
    argv = [str(binary), "-p", prompt, "--output-format", "stream-json", "--verbose"]
    argv += ["--resume", resume] if resume else []
    return argv + claude_args() + (extra or [])


def codex_home(home: Path) -> Path:
    return home / ".codex"


def codex_env(base_url: str, home: Path) -> dict[str, str]:
    """The environment for Codex; creates `home/.codex` (CODEX_HOME must exist)."""
    codex_home(home).mkdir(parents=True, exist_ok=True)
    return {
        **base_env(home),
        **proxy_env(base_url),
        "CODEX_HOME": str(codex_home(home)),
        "LOCAL_OPENAI_KEY": DUMMY_KEY,
    }


def codex_config_args(base_url: str) -> list[str]:
    """Root-level `-c` overrides (they go before `exec`). Codex ignores OPENAI_BASE_URL, and
    without the feature switches it contacts several remote hosts on every run."""
    provider = (
        f'{{name="local", base_url="{base_url}/v1", '
        'env_key="LOCAL_OPENAI_KEY", wire_api="responses"}'
    )
    overrides = [
        "model_provider=local",
        f"model_providers.local={provider}",
        "analytics.enabled=false",
        "feedback.enabled=false",
        "otel.metrics_exporter=none",
        "features.plugins=false",
        "features.remote_plugin=false",
        "features.apps=false",
        "check_for_update_on_startup=false",
    ]
    return [arg for override in overrides for arg in ("-c", override)]


def codex_argv(binary: Path, base_url: str, prompt: str, *, resume: str | None = None) -> list[str]:
    argv = [str(binary), *codex_config_args(base_url), "exec", "--json", "--skip-git-repo-check"]
    return argv + (["resume", resume] if resume else []) + [prompt]


# --- running a turn --------------------------------------------------------------------


@dataclass
class CliRun:
    """One finished CLI process: its JSON stdout lines, and when the first one came."""

    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    first_line_s: float | None
    total_s: float


def run_agent(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> CliRun:
    """Run one turn the way Cadenza does: stdin closed (Codex waits for EOF otherwise) and
    in its own session, so the whole tree (npm's launcher and its native child, commands
    the agent started) is killed with the group."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        expired = threading.Event()
        watchdog = threading.Timer(timeout, lambda: (expired.set(), _kill_group(proc.pid)))
        watchdog.start()
        try:
            first_line_s, lines = _read_lines(proc, started)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            _kill_group(proc.pid)
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if expired.is_set():
        raise TimeoutError(f"{argv[:3]} ran over {timeout} s; stderr: {errors[-2000:]}")
    events = [json.loads(line) for line in lines if line.strip()]
    return CliRun(returncode, events, errors, first_line_s, time.monotonic() - started)


def _read_lines(proc: subprocess.Popen[bytes], started: float) -> tuple[float | None, list[str]]:
    assert proc.stdout is not None
    first: float | None = None
    lines: list[str] = []
    with proc.stdout:
        for raw in proc.stdout:
            first = first if first is not None else time.monotonic() - started
            lines.append(raw.decode())
    return first, lines


def _kill_group(pgid: int) -> None:
    # The group outlives its leader when the agent left children behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
