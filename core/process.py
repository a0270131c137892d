"""Agent subprocesses: own session and process group, the prompt on stdin, signalled as a group.

An agent's stdin is never Cadenza's own and never left open: the prompt is written to it from
a task (the agent may print before it reads) and it is closed, or it is ``/dev/null`` (the
real Codex CLI waits for its stdin to close). npm's ``codex`` is a launcher whose child does
the work, so the whole group is signalled. Some tools leave the group (Claude's Bash tool
starts its own session), so every agent also carries ``CADENZA_TURN=<turn id>`` in its
environment, which its descendants inherit: stopping a turn signals the marked processes
too, and after a crash the journal finds and stops what the dead run left behind. On Linux
the agent also gets SIGTERM if Cadenza dies, and is contained (``cadenza.containment``): what
it starts is killed with its turn even when it left the group and dropped the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from asyncio.subprocess import DEVNULL, PIPE
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza import containment
from cadenza.containment import MARKER, SETPRIV, AgentUser, Jail, descendants, kill

# Cadenza's own secrets (a bot token) are not the agents' business: an agent, every tool it
# runs and the model it talks to would otherwise see them.
_withheld: set[str] = set()


def withhold_from_agents(*names: str) -> None:
    """Keep these environment variables out of every agent started from now on (unless an
    agent's own ``[agent.NAME] env`` sets them)."""
    _withheld.update(names)


def agent_environment(
    extra: Mapping[str, str], marker: str, user: AgentUser | None = None
) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if key not in _withheld}
    identity = user.environment() if user is not None else {}
    return {**inherited, **identity, **extra, MARKER: marker}


NUL_PROBLEM = "The prompt contains a NUL character, which no program can receive; remove it."


@dataclass(frozen=True, slots=True)
class Launch:
    """How one turn's agent starts."""

    argv: list[str]
    stdin: str | None = None  # the prompt, written to stdin, which is then closed; else /dev/null
    contain: bool = True  # False: what the agent starts may outlive the turn
    # True: stdin stays open after ``stdin`` as the agent's control channel (Claude's answers
    # to permission prompts); the runner's ``send`` writes to it, and it closes with the turn
    control: bool = False


def stdin_problem(launch: Launch) -> str | None:
    """Why this prompt cannot go to the agent's stdin; None when it can."""
    return NUL_PROBLEM if launch.stdin is not None and "\0" in launch.stdin else None


CHUNK = 1 << 16
MAX_LINE = 64 << 20  # a longer line is cut here rather than held in memory without bound
STDERR_LINES = 40


class AgentProcess:
    """One running agent: its stdout as lines, its stderr tail, and a group kill."""

    def __init__(
        self, proc: asyncio.subprocess.Process, marker: str = "", jail: Jail | None = None
    ) -> None:
        self.proc = proc
        self.pgid = proc.pid  # start_new_session makes the child its own group leader
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.marker = marker
        self.jail = jail
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        self._stdin_task: asyncio.Future[None] | None = None
        # asyncio collects the agent's exit status; until it has, the subreaper keeps off it
        containment.leaders.add(proc.pid)
        self._exited = asyncio.ensure_future(proc.wait())
        self._exited.add_done_callback(lambda _: containment.leaders.discard(proc.pid))

    @classmethod
    async def spawn(
        cls, launch: Launch, *, cwd: Path, env: Mapping[str, str], marker: str
    ) -> AgentProcess:
        """Start ``launch``; raises FileNotFoundError when its program cannot be found, and
        ValueError for a prompt with a NUL character."""
        if stdin_problem(launch):
            raise ValueError(NUL_PROBLEM)
        user = containment.agent_user()
        full_env = agent_environment(env, marker, user)
        program = resolve(launch.argv[0], cwd, full_env)
        if program is None:
            raise FileNotFoundError(launch.argv[0])
        jail = _jail(marker) if launch.contain else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *(jail.prefix if jail else []), *_privileges(user), program, *launch.argv[1:],
                stdin=PIPE if launch.stdin is not None or launch.control else DEVNULL,
                stdout=PIPE,
                stderr=PIPE,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
            )
        except BaseException:
            if jail is not None:
                await jail.close()
            raise
        process = cls(proc, marker, jail)
        if launch.stdin is not None or launch.control:
            process._stdin_task = asyncio.ensure_future(
                process._feed(launch.stdin or "", close=not launch.control))
        return process

    async def _feed(self, prompt: str, *, close: bool) -> None:
        """Write the prompt, then close stdin unless it is the control channel; an agent that
        exits without reading it is no error of ours (its exit code and stderr tell)."""
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(prompt.encode("utf-8", "replace"))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            close = True
        finally:
            if close:
                await self._close_stdin()

    async def send(self, text: str) -> bool:
        """Write ``text`` to the control channel, after the prompt; False when the agent has
        none or it is closed (the agent exited or stopped reading)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self._stdin_task is None:
            return False
        await asyncio.shield(self._stdin_task)  # the prompt first
        if stdin.is_closing():
            return False
        try:
            stdin.write(text.encode("utf-8", "replace"))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self._close_stdin()
            return False
        return True

    async def close_input(self) -> None:
        """Close the control channel (after the prompt): the agent said it takes no more."""
        if self._stdin_task is not None:
            await asyncio.shield(self._stdin_task)
        await self._close_stdin()

    async def _close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            return
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()

    async def lines(self) -> AsyncIterator[str]:
        """stdout, line by line, decoded leniently; ends at EOF."""
        assert self.proc.stdout is not None
        read = self.proc.stdout.read
        pending = bytearray()  # grows in place: a huge line costs no quadratic copying
        while chunk := await read(CHUNK):
            pending += chunk
            if b"\n" not in chunk:
                if len(pending) > MAX_LINE:
                    yield pending.decode("utf-8", "replace")
                    pending.clear()
                continue
            *complete, rest = pending.split(b"\n")
            pending = rest
            for raw in complete:
                yield raw.decode("utf-8", "replace").rstrip("\r")
        if pending:
            yield pending.decode("utf-8", "replace")

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def reap(self) -> None:
        """After the leader exited: whatever it left behind in its group, or in its jail,
        goes too."""
        self._signal(signal.SIGKILL)
        if self.jail is not None:
            await self.jail.close()
        await self._close_stdin()
        if self._stdin_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stdin_task, timeout=1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stderr_task, timeout=1.0)

    def _signal(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the group, the marked processes and the jail, SIGKILL after ``grace``
        seconds to whatever is left of them."""
        # Descendants that left the group (a tool in a session of its own) are signalled by
        # pid; reading a few /proc files per stop, not scanning every process.
        strays = [pid for pid in descendants(self.proc.pid) if _group_of(pid) != self.pgid]
        self._signal(signal.SIGTERM)
        for pid in strays + (self.jail.members() if self.jail else []):
            kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
        # The leader may be gone while a grandchild that ignores SIGTERM still runs.
        self._signal(signal.SIGKILL)
        for pid in strays:
            if _carries(pid, self.marker):  # still ours, not a reused pid
                kill(pid, signal.SIGKILL)
        if self.jail is not None:
            await self.jail.kill()


def _jail(marker: str) -> Jail | None:
    """The turn's jail; an OSError (never a FileNotFoundError, which means "no such
    program") when it cannot be made: no agent runs uncontained by accident."""
    backend = containment.current()
    if backend is None:
        return None
    try:
        return backend.jail(marker)
    except OSError as exc:
        raise OSError(f"cannot contain it ({backend.name}): {exc}") from None


def _privileges(user: AgentUser | None) -> list[str]:
    """setpriv before the agent: its user (``run_as``) and its parent-death signal."""
    if SETPRIV is None:
        return []
    return [SETPRIV, *(user.setpriv_args() if user else []), "--pdeathsig", "TERM", "--"]


def resolve(program: str, cwd: Path, env: Mapping[str, str]) -> str | None:
    """The executable ``program`` names, as exec would find it from ``cwd`` with ``env``'s
    PATH; None when there is none."""
    if os.sep in program:
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _carries(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{MARKER}={marker}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def marked_processes(markers: Iterable[str]) -> list[int]:
    """Pids of this user's processes whose environment carries one of the turn markers."""
    wanted = [f"{MARKER}={marker}".encode() for marker in markers if marker]
    if not wanted:
        return []
    own = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if any(item in variables for item in wanted):
            found.append(int(entry))
    return found


def signal_marked(markers: Iterable[str], sig: signal.Signals) -> list[int]:
    """Send ``sig`` to every marked process; the pids that were signalled."""
    pids = marked_processes(markers)
    for pid in pids:
        kill(pid, sig)
    return pids


async def stop_marked(markers: Iterable[str], grace: float, sleep: Callable[[float], Any]) -> int:
    """SIGTERM the marked processes and what is left in these turns' jails, then SIGKILL the
    ones still there after ``grace``, and remove the jails."""
    markers = list(markers)
    backend = containment.current()
    jails = [jail for marker in markers
             if backend is not None and (jail := backend.leftover(marker)) is not None]
    jailed = [pid for jail in jails for pid in jail.members()]
    for pid in jailed:
        kill(pid, signal.SIGTERM)
    signalled = set(signal_marked(markers, signal.SIGTERM)) | set(jailed)
    waited = 0.0
    while signalled and waited < grace and (
            marked_processes(markers) or any(jail.members() for jail in jails)):
        await sleep(0.05)
        waited += 0.05
    if signalled:
        signal_marked(markers, signal.SIGKILL)
    for jail in jails:
        await jail.close()
    return len(signalled)
