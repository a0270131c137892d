"""What the fake chat APIs (``telegram_api``, ``discord``) share as servers: one fixed port on
127.0.0.1 that can be taken down and brought up again (an outage, a restart), waiting on any
change of the server's state, calls that hang until released or until the server goes down,
and scripted faults queued per method.

A fake subclasses ``LocalServer``, builds its aiohttp application in ``_application`` and
calls ``_notify`` whenever its state changes; its request handler takes the next fault with
``_take_fault``, hangs with ``_hang`` and drops a connection by raising ``Dropped``.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

T = TypeVar("T")
FaultT = TypeVar("FaultT")
JSON = dict[str, Any]


class Dropped(Exception):
    """Raised inside a request to close its connection without an answer."""


class HasOutcome(Protocol):
    outcome: Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer(Generic[FaultT]):
    def __init__(self) -> None:
        self.base_url = ""
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._epoch = 0  # bumped at each take-down: a call hung before it is dropped
        self._hangs: set[asyncio.Event] = set()
        self._changed: asyncio.Event | None = None
        self._faults: dict[str, deque[tuple[FaultT, Callable[[JSON], bool] | None]]] = {}

    def _application(self) -> web.Application:
        raise NotImplementedError

    def _closing(self) -> None:
        """Called as the server goes down, before hung calls are let go."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self, *, listening: bool = True) -> str:
        """Pick a port and return the base URL; ``listening=False`` simulates the API being
        unreachable until ``bring_up()``."""
        if self._port is None:
            self._port = free_port()
            self.base_url = f"http://127.0.0.1:{self._port}"
        if listening:
            await self.bring_up()
        return self.base_url

    async def stop(self) -> None:
        await self.take_down()

    async def restart(self) -> None:
        """Drop every connection and listen again on the same port; state is kept."""
        await self.take_down()
        await self.bring_up()

    async def bring_up(self) -> None:
        if self._runner is not None:
            return
        if self._port is None:
            raise RuntimeError("call start() first")
        runner = web.AppRunner(self._application(), access_log=None,
                               handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True).start()
        self._runner = runner

    async def take_down(self) -> None:
        """Stop listening; in-flight requests (long polls, hangs) lose their connection."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        self._epoch += 1
        self._closing()
        for hang in self._hangs:
            hang.set()
        self._notify()
        await runner.cleanup()

    @property
    def listening(self) -> bool:
        return self._runner is not None

    # ----------------------------------------------------------------- waiting

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy, re-checking on every change of the server's
        state; returns that value or raises TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while not (value := predicate()):
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout}s") from None
        return value

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    # ----------------------------------------------------------------- faults and hangs

    def _queue_fault(self, key: str, fault: FaultT, times: int,
                     when: Callable[[JSON], bool] | None = None) -> None:
        self._faults.setdefault(key, deque()).extend([(fault, when)] * times)

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, key: str, params: JSON | None = None) -> FaultT | None:
        """The fault scripted for this call of ``key`` (or of any method, "*"), if any; one
        with a ``when`` applies only to a call whose parameters it accepts."""
        for name in (key, "*"):
            if queue := self._faults.get(name):
                fault, when = queue[0]
                if when is None or when(params or {}):
                    queue.popleft()
                    return fault
        return None

    def release_hangs(self) -> None:
        """Let every hung call proceed and be answered normally."""
        for hang in self._hangs:
            hang.set()

    async def _hang(self, call: HasOutcome) -> None:
        """Hold ``call`` until ``release_hangs``; dropped if the server went down meanwhile."""
        epoch, release = self._epoch, asyncio.Event()
        call.outcome = "hanging"
        self._hangs.add(release)
        self._notify()
        try:
            await release.wait()
        finally:
            self._hangs.discard(release)
        if self._epoch != epoch:
            raise Dropped
        call.outcome = "pending"
