"""Handling a chat's updates in order: one job at a time per chat, chats concurrently.

A frontend's ingress hands each update to ``Lanes.put(chat key, job)`` and returns at once,
so a slow chat holds up no other and the chat API's connection is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

Job = Callable[[], Awaitable[None]]


class Lanes:
    """Runs jobs one after another per key; keys run concurrently."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def put(self, key: str, job: Job) -> None:
        self._queues.setdefault(key, deque()).append(job)
        if key not in self._tasks:
            self._tasks[key] = asyncio.ensure_future(self._drain(key))

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except Exception:
                    self.log.exception("handling an update from %s failed", key)
        finally:
            del self._tasks[key]
            if not queue:
                del self._queues[key]

    async def join(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
