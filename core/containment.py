"""Where agents run: as which user, and what keeps what they start from outliving their turn.

``[agent] run_as = "USER"`` starts every agent as that user (util-linux's ``setpriv``, with
the user's groups and ``HOME``), so file modes can keep Cadenza's state and secrets from it.

Containment is picked once at start, best first:

- **a cgroup per turn** (cgroup v2, else v1's freezer hierarchy), ``cadenza/<turn id>`` below
  Cadenza's own cgroup. The agent joins it before it execs anything: a ``/bin/sh`` wrapper
  writes its own pid into ``cgroup.procs`` and then execs the agent, so everything the agent
  ever starts is in it, whatever session, process group or environment it moves to. At the
  turn's end everything in it is killed (``cgroup.kill``, else frozen, SIGKILLed, thawed) and
  the cgroup removed. A crashed run's cgroups are found again by turn id.
- **else a subreaper**: Cadenza adopts its agents' orphans (``PR_SET_CHILD_SUBREAPER``) and
  at a turn's end kills the adopted processes that can only come from that turn.
- else nothing beyond the process group and the ``CADENZA_TURN`` marker (not Linux).

An agent with ``contain = false`` is left out: what it starts in the background may run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cadenza.config import Settings

log = logging.getLogger("cadenza.containment")

MARKER = "CADENZA_TURN"
SH = "/bin/sh"
# Run by the agent's own process before anything else: join the cgroup, then become the agent.
JOIN = 'echo 0 >"$0" && exec "$@"'
CGROUP_DIR = "cadenza"
STALE = 60.0  # an empty turn cgroup older than this is a crashed run's leftover
SETTLE = 3.0  # seconds killed processes get to leave their cgroup
POLL = 0.005
BACKENDS = ("cgroup2", "cgroup1", "subreaper")  # tried in this order; tests narrow it

# Linux's parent-death signal and user switch, set by util-linux's setpriv just before it
# execs the agent: a preexec_fn would do the same but forces fork() in a threaded process.
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


# --- run_as --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentUser:
    """The user agents run as (``[agent] run_as``)."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentUser | None:
        name = settings.string("run_as", "")
        if not name:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise settings.error("run_as", f"there is no user {name!r} on this machine") from None
        me = os.geteuid()
        if entry.pw_uid != me and me != 0:
            raise settings.error("run_as", (
                f"Cadenza runs as uid {me}, not as root, so it cannot start agents as "
                f"{name!r} (uid {entry.pw_uid}); run Cadenza as root or remove run_as"))
        if entry.pw_uid != me and SETPRIV is None:
            raise settings.error("run_as", "needs util-linux's setpriv, which is not on PATH")
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def environment(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def setpriv_args(self) -> list[str]:
        if self.uid == os.geteuid():
            return []
        return ["--reuid", str(self.uid), "--regid", str(self.gid), "--init-groups"]


# --- one turn's containment ----------------------------------------------------------------


class Jail(Protocol):
    """What contains one turn's agent."""

    prefix: list[str]  # goes before the agent's command line

    def members(self) -> list[int]:
        """The processes in it now, to signal."""

    async def kill(self) -> None:
        """SIGKILL everything in it."""

    async def close(self) -> None:
        """At the turn's end: kill everything in it, wait until it is gone, clean up."""


class Containment(Protocol):
    name: str

    def jail(self, marker: str) -> Jail:
        """A new jail for the turn ``marker``."""

    def leftover(self, marker: str) -> Jail | None:
        """What a crashed run left of the turn ``marker``, if it can be found."""

    def sweep(self) -> None:
        """At start: remove what crashed runs left behind and nobody will ask for."""


# --- cgroups -------------------------------------------------------------------------------


@dataclass
class CgroupJail:
    path: Path
    version: int

    @property
    def prefix(self) -> list[str]:
        return [SH, "-c", JOIN, str(self.path / "cgroup.procs")]

    def members(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    async def kill(self) -> None:
        if self.version == 2 and _write(self.path / "cgroup.kill", "1"):
            return
        async with self._frozen():
            for pid in self.members():
                kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        deadline = time.monotonic() + SETTLE
        while self.path.exists():
            await self.kill()
            try:
                self.path.rmdir()
            except FileNotFoundError:
                return
            except OSError:  # busy: the killed processes have not left it yet
                if time.monotonic() > deadline:
                    log.warning("cannot remove %s: %s still in it", self.path, self.members())
                    return
                await asyncio.sleep(POLL)

    @contextlib.asynccontextmanager
    async def _frozen(self) -> AsyncIterator[None]:
        """Nothing in the cgroup can fork meanwhile (when the hierarchy can freeze)."""
        name, frozen, thawed = (("cgroup.freeze", "1", "0") if self.version == 2
                                else ("freezer.state", "FROZEN", "THAWED"))
        if not _write(self.path / name, frozen):
            yield
            return
        try:
            deadline = time.monotonic() + 1.0
            while not self._is_frozen() and time.monotonic() < deadline:
                await asyncio.sleep(POLL)
            yield
        finally:
            _write(self.path / name, thawed)

    def _is_frozen(self) -> bool:
        if self.version == 2:
            return "frozen 1" in _read(self.path / "cgroup.events")
        return _read(self.path / "freezer.state").strip() == "FROZEN"


@dataclass
class Cgroups:
    """A cgroup per turn below ``parent``, in one hierarchy (v2, or v1's freezer)."""

    parent: Path
    version: int

    @property
    def name(self) -> str:
        return f"a cgroup per turn (cgroup v{self.version}, in {self.parent})"

    def jail(self, marker: str) -> CgroupJail:
        path = self.parent / cgroup_name(marker)
        path.mkdir(parents=True, exist_ok=True)
        return CgroupJail(path, self.version)

    def leftover(self, marker: str) -> CgroupJail | None:
        path = self.parent / cgroup_name(marker)
        return CgroupJail(path, self.version) if path.is_dir() else None

    def sweep(self) -> None:
        """Remove empty turn cgroups old enough not to be another Cadenza's just made."""
        for path in self.parent.iterdir():
            if path.is_dir() and not CgroupJail(path, self.version).members():
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > STALE:
                        path.rmdir()

    @classmethod
    def probe(cls, own: Path, version: int) -> Cgroups:
        """Cgroups below this process's own cgroup ``own``; raises OSError when a child
        process cannot be put in one there."""
        parent = own / CGROUP_DIR
        parent.mkdir(exist_ok=True)
        trial = parent / f"probe-{os.getpid()}"
        trial.mkdir(exist_ok=True)
        try:
            done = subprocess.run([SH, "-c", JOIN, str(trial / "cgroup.procs"), "true"],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        finally:
            with contextlib.suppress(OSError):
                trial.rmdir()
        if done.returncode != 0:
            raise OSError(done.stderr.decode(errors="replace").strip() or "cannot join")
        return cls(parent, version)


def cgroup_name(marker: str) -> str:
    """A directory name for the turn ``marker``: the turn id itself when it is a safe name."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", marker):
        return marker
    return "turn-" + hashlib.sha256(marker.encode()).hexdigest()[:32]


def hierarchies() -> list[tuple[int, Path]]:
    """(version, this process's cgroup directory) of the cgroup2 and v1 freezer mounts."""
    own = _own_cgroups()
    found: list[tuple[int, Path]] = []
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if len(fields) < 5 or len(kind) < 3:
            continue
        key = ("" if kind[0] == "cgroup2" else
               "freezer" if kind[0] == "cgroup" and "freezer" in kind[2].split(",") else None)
        if key is None or key not in own:
            continue
        inside = _below(own[key], fields[3])
        if inside is not None:
            found.append((2 if key == "" else 1, Path(fields[4], inside)))
    return sorted(found, key=lambda item: -item[0])


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy: ``""`` for cgroup2, else the v1 controller."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                found[name] = parts[2]
    return found


def _below(path: str, root: str) -> str | None:
    """``path`` relative to a mount's ``root``; None when the mount does not show it."""
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    return path[len(root) + 1:] if path.startswith(root + "/") else None


# --- the subreaper -------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Subreaper:
    """Orphans of agents are reparented to Cadenza, which kills them at their turn's end.

    An adopted process is attributed to its turn by its ``CADENZA_TURN``, else to every
    contained turn that ran when it was first seen (Cadenza looks at each turn's start and
    end); it is killed when the last turn it may come from ends. Only adopted processes are
    reaped, each by its pid (never ``waitpid(-1)``, which would steal asyncio's statuses).
    """

    name = "a subreaper (Cadenza adopts its agents' orphans and kills them with their turn)"
    running: set[str] = field(default_factory=set)  # contained turns
    adopted: dict[tuple[int, int], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def probe(cls) -> Subreaper:
        if not sys.platform.startswith("linux"):
            raise OSError("needs Linux")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        return cls()

    def jail(self, marker: str) -> ReaperJail:
        self.adopt()  # orphans seen now come from the turns that ran before this one
        self.running.add(marker)
        return ReaperJail(self, marker)

    def leftover(self, marker: str) -> None:
        return None  # a dead Cadenza's orphans went to init: only their marker finds them

    def sweep(self) -> None:
        self.adopt()

    def adopt(self) -> None:
        """Note new orphans and the turns each may come from; reap the dead ones."""
        seen = set()
        for pid, start, state in orphans():
            key = (pid, start)
            seen.add(key)
            if state == "Z":
                reap(pid)
                self.adopted.pop(key, None)
            elif key not in self.adopted:
                marker = marker_of(pid)
                self.adopted[key] = frozenset([marker] if marker else self.running)
        for key in set(self.adopted) - seen:
            del self.adopted[key]

    def doomed(self, marker: str) -> list[int]:
        """Adopted processes that may come from turn ``marker`` and from no other running one,
        with their descendants."""
        others = self.running - {marker}
        roots = [pid for (pid, _), turns in self.adopted.items()
                 if marker in turns and not turns & others]
        return roots + [child for pid in roots for child in descendants(pid)]


@dataclass
class ReaperJail:
    reaper: Subreaper
    marker: str
    prefix: list[str] = field(default_factory=list)

    def members(self) -> list[int]:
        self.reaper.adopt()
        return self.reaper.doomed(self.marker)

    async def kill(self) -> None:
        for pid in self.members():
            kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        deadline = time.monotonic() + SETTLE
        try:
            while (left := self.members()) and time.monotonic() < deadline:
                for pid in left:
                    kill(pid, signal.SIGKILL)
                await asyncio.sleep(POLL)  # they die, become our zombies, and are reaped
        finally:
            self.reaper.running.discard(self.marker)


def orphans() -> list[tuple[int, int, str]]:
    """(pid, start time, state) of this process's children that are not its own agents:
    adopted descendants of agents. Agents and their descendants run in sessions other than
    Cadenza's; children Cadenza forks for itself stay in its session."""
    own_session = os.getsid(0)
    found = []
    for pid in children(os.getpid()):
        if pid in leaders:
            continue
        stat = proc_stat(pid)
        if stat is not None and int(stat[3]) != own_session:
            found.append((pid, int(stat[19]), stat[0]))
    return found


def reap(pid: int) -> None:
    """Collect an adopted zombie, by its pid only."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)


# Pids of the agents Cadenza started itself (asyncio waits for them): never reaped here.
leaders: set[int] = set()


# --- picking one ---------------------------------------------------------------------------


_picked: dict[tuple[str, ...], Containment | None] = {}
_current: Containment | None = None
_user: AgentUser | None = None


def configure(settings: Settings) -> None:
    """At start: ``[agent] run_as`` (a ConfigError when it cannot be honoured) and the
    containment agents get; leftovers of crashed runs that nobody asks for are removed."""
    global _current, _user
    _user = AgentUser.from_settings(settings)
    _current = pick()
    if _current is not None:
        with contextlib.suppress(OSError):
            _current.sweep()
    if _user is not None:
        log.info("agents run as %s (uid %d)", _user.name, _user.uid)


def agent_user() -> AgentUser | None:
    return _user


def current() -> Containment | None:
    return _current if _current is not None else pick()


def pick(kinds: tuple[str, ...] | None = None) -> Containment | None:
    """The best containment this system allows (probed once per process)."""
    kinds = kinds or BACKENDS
    if kinds not in _picked:
        _picked[kinds] = _probe(kinds)
    return _picked[kinds]


def _probe(kinds: tuple[str, ...]) -> Containment | None:
    problems = []
    for kind in kinds:
        try:
            found = _try(kind)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{kind}: {exc}")
            continue
        if found is not None:
            log.info("agents are contained by %s", found.name)
            return found
    log.warning("agents are not contained: what they start in the background may outlive "
                "their turn (%s)", "; ".join(problems) or "no cgroups, not Linux")
    return None


def _try(kind: str) -> Containment | None:
    if kind == "subreaper":
        return Subreaper.probe()
    problems = []
    for version, own in hierarchies():
        if kind == f"cgroup{version}":
            try:
                return Cgroups.probe(own, version)
            except OSError as exc:
                problems.append(f"{own}: {exc}")
    if problems:
        raise OSError("; ".join(problems))
    return None


# --- /proc ---------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The children of ``pid`` (every thread's), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid``, from /proc's children lists (Linux)."""
    found: list[int] = []
    parents = [pid]
    while parents:
        kids = children(parents.pop())
        found.extend(kids)
        parents.extend(kids)
    return found


def marker_of(pid: int) -> str:
    """The turn marker in a process's environment; "" when it has none (or is not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            variables = handle.read().split(b"\0")
    except OSError:
        return ""
    prefix = f"{MARKER}=".encode()
    for item in variables:
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return ""


def kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError:
        return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
