"""Nothing an agent starts outlives its turn, unless the agent is not contained; run_as."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cadenza import containment
from cadenza.api import ChatRef
from cadenza.config import Config, ConfigError
from cadenza.process import stop_marked
from conftest import CHAT, agent_config, alive, gone

BACKENDS = ["cgroup2", "cgroup1", "subreaper"]


def backend_or_skip(kind: str) -> containment.Containment:
    found = containment.pick((kind,))
    if found is None:
        pytest.skip(f"{kind} is not available here")
    return found


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Agents contained the way ``request.param`` says (skipped where it is not available)."""
    backend_or_skip(request.param)
    monkeypatch.setattr(containment, "BACKENDS", (request.param,))
    yield request.param
    if request.param == "subreaper":  # the test process adopts no one after this test
        ctypes.CDLL(None).prctl(containment.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        containment._picked.pop(("subreaper",), None)


@pytest.fixture
def pidfiles(tmp_path: Path) -> Iterator[list[Path]]:
    """Where escapees write their pid; whatever is still running at the end is killed."""
    files: list[Path] = []
    yield files
    for path in files:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(path.read_text()), signal.SIGKILL)


def escape(pidfile: Path) -> str:
    """A shell command that double-forks ``sleep 1000`` into a session of its own, without
    CADENZA_TURN, and waits until the sleeper wrote its pid to ``pidfile``."""
    return (f"(env -u CADENZA_TURN setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' "
            f"</dev/null >/dev/null 2>&1 &); "
            f"for i in $(seq 1000); do [ -s {pidfile} ] && break; sleep 0.01; done; "
            f"echo escaped")


def escapee(pidfile: Path) -> int:
    """The sleeper's pid, after checking it really left: no marker, another session."""
    pid = int(pidfile.read_text())
    assert alive(pid) or gone(pid, within=0)
    with contextlib.suppress(OSError):
        assert b"CADENZA_TURN" not in Path(f"/proc/{pid}/environ").read_bytes()
    return pid


def said(h, text: str) -> bool:
    return any(text in event.text for event in h.recorder.events if event.kind == "text")


def config(extra: str = "") -> str:
    return agent_config("command", 'command = ["sh", "-c", "{prompt}"]\n' + extra)


async def test_what_an_agent_starts_dies_with_its_turn(start_app, backend, pidfiles,
                                                       tmp_path: Path) -> None:
    pidfiles.append(tmp_path / "sleeper.pid")
    h = await start_app(config())
    await h.say(escape(pidfiles[0]))
    (end,) = await h.recorder.finished()
    assert end.kind == "completed" and h.recorder.text_of(end.turn.id) == "escaped\n"
    assert gone(escapee(pidfiles[0]))


async def test_an_uncontained_agents_background_process_survives(start_app, pidfiles,
                                                                  tmp_path: Path) -> None:
    pidfiles.append(tmp_path / "server.pid")
    h = await start_app(config("contain = false"))
    await h.say(escape(pidfiles[0]))
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    assert alive(escapee(pidfiles[0]))  # the turn is over, and its cleanup with it


async def test_stop_kills_what_the_agent_started(start_app, backend, pidfiles,
                                                 tmp_path: Path) -> None:
    pidfiles.append(tmp_path / "sleeper.pid")
    h = await start_app(config() + "[timeout]\nkill_grace = 0.5\n")
    await h.say(escape(pidfiles[0]) + "; sleep 30")
    await h.recorder.wait_for(lambda: said(h, "escaped"))
    await h.say("/stop")
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled"
    assert gone(escapee(pidfiles[0]))


async def test_subreaper_kills_an_orphan_only_when_no_turn_it_may_come_from_runs(
        start_app, monkeypatch, pidfiles, tmp_path: Path) -> None:
    """Two turns at once: an orphan without its marker may come from either, so it lives
    until both ended; and asyncio still gets every agent's own exit status."""
    backend_or_skip("subreaper")
    monkeypatch.setattr(containment, "BACKENDS", ("subreaper",))
    try:
        pidfiles.extend([tmp_path / "a.pid", tmp_path / "b.pid", tmp_path / "go"])
        h = await start_app(config())
        other = ChatRef("test", "chat-2")
        wait_for_go = f"while [ ! -e {pidfiles[2]} ]; do sleep 0.01; done"
        await h.say(f"{escape(pidfiles[1])}; {wait_for_go}; exit 0", chat=other)
        await h.recorder.wait_for(lambda: said(h, "escaped"))
        await h.say(f"{escape(pidfiles[0])}; exit 3", chat=CHAT)
        first = (await h.recorder.finished())[0]
        assert first.turn.chat == CHAT
        assert first.kind == "failed" and "exited with code 3" in first.text
        a, b = escapee(pidfiles[0]), escapee(pidfiles[1])
        assert alive(a) and alive(b)  # either may be the other turn's
        pidfiles[2].write_text("")
        ends = await h.recorder.finished(2)
        assert ends[1].kind == "completed"
        assert gone(a) and gone(b)
    finally:
        ctypes.CDLL(None).prctl(containment.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        containment._picked.pop(("subreaper",), None)


@pytest.mark.parametrize("kind", ["cgroup2", "cgroup1"])
async def test_a_crashed_runs_cgroup_is_emptied_and_removed(kind: str, monkeypatch,
                                                            tmp_path: Path) -> None:
    """What a dead Cadenza left in a turn's cgroup goes when that turn is recovered, marker
    or not; an empty one nobody asks for goes at the next start."""
    found = backend_or_skip(kind)
    monkeypatch.setattr(containment, "_current", found)
    turn = uuid.uuid4().hex[:12]
    jail = found.jail(turn)
    pidfile = tmp_path / "left.pid"
    left = subprocess.Popen([*jail.prefix, "sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"],
                            start_new_session=True)
    try:
        await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip())
        assert found.leftover(turn) is not None
        stopped = await stop_marked([turn], 0.5, asyncio.sleep)
        assert stopped == 1
        await asyncio.to_thread(left.wait, 5)
        assert found.leftover(turn) is None
    finally:
        left.kill()
    empty = found.jail(uuid.uuid4().hex[:12])
    os.utime(empty.path, (time.time() - 2 * containment.STALE,) * 2)
    found.sweep()
    assert not empty.path.exists()


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_contain_must_be_true_or_false(tmp_path: Path) -> None:
    from cadenza.app import builtin_agents

    for table in ("agent", "agent.claude"):
        path = tmp_path / "plugins.toml"
        path.write_text(f'[{table}]\ncontain = "no"\n')
        with pytest.raises(ConfigError, match=r"contain: must be true or false"):
            builtin_agents(Config.load(path))
    path.write_text("[agent]\ncontain = false\n[agent.codex]\ncontain = false\n")
    agents = builtin_agents(Config.load(path))
    assert (agents["command"].contain, agents["codex"].contain, agents["claude"].contain) == (
        False, False, True)


# --- run_as -----------------------------------------------------------------------------------


def settings(tmp_path: Path, text: str):
    path = tmp_path / "plugins.toml"
    path.write_text(text)
    return Config.load(path).settings("agent")


def test_run_as_a_user_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run_as: there is no user 'no-such-user-x'"):
        containment.AgentUser.from_settings(
            settings(tmp_path, '[agent]\nrun_as = "no-such-user-x"\n'))


def test_run_as_another_user_needs_root(tmp_path: Path, monkeypatch) -> None:
    other = next(entry for entry in pwd.getpwall() if entry.pw_uid != os.geteuid())
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(ConfigError, match=r"not as root, so it cannot start agents as"):
        containment.AgentUser.from_settings(
            settings(tmp_path, f'[agent]\nrun_as = "{other.pw_name}"\n'))


def test_cadenza_refuses_to_start_with_a_bad_run_as(run_cli, tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text(
        '[plugins]\nconsole = false\n[agent]\nrun_as = "no-such-user-x"\n')
    done = run_cli("run")
    assert done.returncode == 2
    assert "[agent] run_as: there is no user 'no-such-user-x'" in done.stderr


@pytest.fixture
def agent_user(tmp_path: Path) -> Iterator[pwd.struct_passwd]:
    """A throwaway user with a home of its own."""
    if os.geteuid() != 0:
        pytest.skip("creating a user and switching to it needs root")
    name = f"cdz{uuid.uuid4().hex[:8]}"
    home = Path("/tmp") / f"{name}-home"
    done = subprocess.run(["useradd", "--create-home", "--home-dir", str(home),
                           "--shell", "/bin/sh", name], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"useradd failed: {done.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can enter (tmp_path is root's alone)."""
    path = Path("/tmp") / f"cadenza-shared-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


async def test_run_as_runs_the_agent_as_that_user(start_app, agent_user, shared_dir) -> None:
    secret = shared_dir / "secret"
    secret.write_text("the bot token")
    secret.chmod(0o600)  # root's: the state and secrets of a Cadenza running as root
    workdir = shared_dir / "work"
    workdir.mkdir()
    os.chown(workdir, agent_user.pw_uid, agent_user.pw_gid)
    prompt = (f"echo uid=$(id -u) gid=$(id -g) home=$HOME user=$USER; "
              f"cat {secret} 2>/dev/null || echo secret: denied; "
              f"cat /proc/{os.getpid()}/environ >/dev/null 2>&1 || echo environ: denied; "
              f"touch mine && echo wrote")
    h = await start_app(config(f'run_as = "{agent_user.pw_name}"\nworkdir = "{workdir}"'))
    await h.say(prompt)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed", end.text
    assert h.recorder.text_of(end.turn.id).splitlines() == [
        f"uid={agent_user.pw_uid} gid={agent_user.pw_gid} home={agent_user.pw_dir} "
        f"user={agent_user.pw_name}",
        "secret: denied", "environ: denied", "wrote"]
    assert (workdir / "mine").stat().st_uid == agent_user.pw_uid
