"""Agent subprocesses: own session and process group, stdin from /dev/null, signalled as a group.

The real Codex CLI waits for its stdin to close, and npm's ``codex`` is a launcher whose child
does the work: so every agent gets ``/dev/null`` as stdin and its whole group is signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

CHUNK = 1 << 16
MAX_LINE = 64 << 20  # a longer line is cut here rather than held in memory without bound
STDERR_LINES = 40


class AgentProcess:
    """One running agent: its stdout as lines, its stderr tail, and a group kill."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pgid = proc.pid  # start_new_session makes the child its own group leader
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    @classmethod
    async def spawn(
        cls, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
    ) -> AgentProcess:
        """Start ``argv``; raises FileNotFoundError / PermissionError when it cannot run."""
        full_env = {**os.environ, **env} if env else None
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
        return cls(proc)

    async def lines(self) -> AsyncIterator[str]:
        """stdout, line by line, decoded leniently; ends at EOF."""
        assert self.proc.stdout is not None
        read = self.proc.stdout.read
        pending = b""
        while chunk := await read(CHUNK):
            pending += chunk
            if b"\n" not in chunk:
                if len(pending) > MAX_LINE:
                    yield pending.decode("utf-8", "replace")
                    pending = b""
                continue
            *complete, pending = pending.split(b"\n")
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
        """After the leader exited: whatever it left behind in its group goes too."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stderr_task, timeout=1.0)

    def _signal(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds if anything is left."""
        if not self._signal(signal.SIGTERM):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
        # The leader may be gone while a grandchild that ignores SIGTERM still runs.
        self._signal(signal.SIGKILL)
