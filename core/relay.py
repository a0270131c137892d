"""Calling hooks safely: every implementation isolated, awaited if async, bounded in time.

pluggy registers plugins and validates their implementations against ``cadenza.hookspecs``;
calling is done here instead of through ``pm.hook``, because pluggy stops at the first
implementation that raises and hands coroutines back un-awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

import pluggy
from cadenza.ordering import PluginOrder
from cadenza.secrets import redact

log = logging.getLogger("cadenza.hooks")
_FAILED: Any = object()  # what ``_call_one`` returns for an implementation that failed


@dataclass(frozen=True, slots=True)
class _Impl:
    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


class HookRelay:
    """Calls hook implementations one by one, in pluggy's order (LIFO, tryfirst/trylast).

    A failure (exception or timeout) is logged with the plugin's name; ``max_failures`` in a
    row switch the plugin off for the rest of the run, and ``health`` says why.
    """

    def __init__(
        self, pm: pluggy.PluginManager, *, timeout: float = 10.0, max_failures: int = 5
    ) -> None:
        self.pm = pm
        self.timeout = timeout
        self.max_failures = max_failures
        self.health: dict[str, str] = {}  # plugin name → problem, for `cadenza plugins list`
        self.on_health_change: Callable[[str, str], None] | None = None
        self._failures: dict[str, int] = {}
        self._disabled: set[str] = set()
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spawned: set[asyncio.Task[Any]] = set()
        self.order = PluginOrder()  # plugins' run_before / run_after wishes

    def invalidate(self) -> None:
        """Forget cached implementations (after registering or unregistering a plugin)."""
        self._impls.clear()

    def implementations(self, hook: str) -> tuple[_Impl, ...]:
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self.pm.hook, hook)
            impls = tuple(self.order.apply([
                _Impl(impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
                if impl.plugin_name not in self._disabled
            ], lambda impl: impl.plugin))
            self._impls[hook] = impls
        return impls

    async def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every implementation; return the non-None results of those that succeeded."""
        results = []
        for impl in self.implementations(hook):
            value = await self._call_one(hook, impl, kwargs)
            if value is not None and value is not _FAILED:
                results.append(value)
        return results

    async def first(self, hook: str, **kwargs: Any) -> Any:
        """Call implementations until one returns something other than None (``firstresult``)."""
        for impl in self.implementations(hook):
            value = await self._call_one(hook, impl, kwargs)
            if value is not None and value is not _FAILED:
                return value
        return None

    async def veto(self, hook: str, **kwargs: Any) -> str | None:
        """A firstresult veto that fails closed: the first reason given, or a refusal naming
        the plugin whose implementation raised or timed out; None lets it through."""
        for impl in self.implementations(hook):
            value = await self._call_one(hook, impl, kwargs)
            if value is _FAILED:
                return f"refused because plugin {impl.plugin} failed to check it"
            if value is not None:
                return str(value)
        return None

    async def allowed(self, hook: str, **kwargs: Any) -> bool:
        """A firstresult permission that fails closed: True only when the first answer is
        exactly True; no answer, False, an exception or a time-out all refuse."""
        for impl in self.implementations(hook):
            value = await self._call_one(hook, impl, kwargs)
            if value is _FAILED:
                return False
            if value is not None:
                return value is True
        return False

    def disabled(self, plugin: str) -> bool:
        """Whether ``plugin`` was switched off for failing too often."""
        return plugin in self._disabled

    def fire(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation in the background, each in its own task: for callers
        that must not wait for plugins, and so that one slow plugin delays no other."""
        for impl in self.implementations(hook):
            task = asyncio.ensure_future(self._call_one(hook, impl, kwargs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def spawn(
        self, plugin: str, coro: Coroutine[Any, Any, Any], name: str = ""
    ) -> asyncio.Task[Any]:
        """A background task owned by ``plugin`` (``PluginContext.spawn``): its exception is
        logged and counted as the plugin's failure; ``cancel_spawned`` ends it at shutdown."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{plugin}:{name or getattr(coro, '__name__', 'task')}")
        self._spawned.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._spawned.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                self._failed(f"task {task.get_name()}", plugin, exc)

        task.add_done_callback(done)
        return task

    async def cancel_spawned(self) -> None:
        """Cancel the plugins' background tasks and wait for them to end."""
        tasks = list(self._spawned)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self, grace: float = 2.0) -> None:
        """Give hooks started with ``fire`` up to ``grace`` seconds, then cancel the rest."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:
                task.cancel()

    async def _call_one(self, hook: str, impl: _Impl, kwargs: dict[str, Any]) -> Any:
        try:
            if len(impl.argnames) == len(kwargs):
                value = impl.function(**kwargs)
            else:
                value = impl.function(**{name: kwargs[name] for name in impl.argnames})
            if value is not None and inspect.isawaitable(value):
                value = await self._bounded(value)
        except (Exception, TimeoutError) as exc:
            self._failed(hook, impl.plugin, exc)
            return _FAILED
        if impl.plugin in self._failures:
            del self._failures[impl.plugin]
        return value

    async def _bounded(self, awaitable: Awaitable[Any]) -> Any:
        """Await with the time limit. Most async implementations finish without ever
        suspending; they are run to completion here without paying for a timer."""
        if not isinstance(awaitable, Coroutine):
            async with asyncio.timeout(self.timeout):
                return await awaitable
        try:
            yielded = awaitable.send(None)
        except StopIteration as done:
            return done.value
        async with asyncio.timeout(self.timeout):
            return await _resume(awaitable, yielded)

    def _failed(self, hook: str, plugin: str, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            problem = f"{hook} took longer than {self.timeout:g} s"
            log.error("plugin %s: %s", plugin, problem)
        else:
            problem = f"{hook} raised {type(exc).__name__}: {exc}"
            log.error("plugin %s: %s", plugin, problem, exc_info=exc)
        count = self._failures.get(plugin, 0) + 1
        self._failures[plugin] = count
        if count >= self.max_failures:
            self._disabled.add(plugin)
            self.invalidate()
            problem = f"switched off after {count} failures in a row; last: {problem}"
            log.error("plugin %s %s", plugin, problem)
        self.health[plugin] = problem = redact(problem)
        if self.on_health_change:
            self.on_health_change(plugin, problem)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Go on driving a coroutine that was started by hand: hand what it yields to the running
    task, and what the task sends or throws back to it (cancellation included)."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return done.value
