"""Plugins asking to run before or after other named plugins.

A plugin says ``run_before = ("journal",)`` or ``run_after = ("timeout",)`` (class or module
attributes). pluggy's order — last registered first, ``tryfirst``/``trylast`` — stays the
starting point; these wishes then move implementations as little as needed. A wish naming a
plugin that is not loaded is ignored; one that closes a cycle is refused at load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class PluginOrder:
    def __init__(self) -> None:
        self._after: dict[str, set[str]] = {}  # plugin → the plugins that must run before it

    def add(self, name: str, plugin: Any) -> None:
        """Record ``plugin``'s wishes; ValueError naming the cycle when they make one."""
        edges = [(other, name) for other in _names(plugin, "run_after")]
        edges += [(name, other) for other in _names(plugin, "run_before")]
        trial = {key: set(value) for key, value in self._after.items()}
        for first, then in edges:
            trial.setdefault(then, set()).add(first)
        cycle = _cycle(trial)
        if cycle:
            raise ValueError("its run_before/run_after make a cycle: "
                             + " → ".join(cycle) + " (each runs before the next)")
        self._after = trial

    def remove(self, name: str) -> None:
        self._after.pop(name, None)
        for firsts in self._after.values():
            firsts.discard(name)

    def apply(self, items: Sequence[T], name_of: Any) -> list[T]:
        """``items`` (in pluggy's order) reordered so that every wish between two present
        plugins holds; otherwise stable."""
        if not self._after:
            return list(items)
        remaining = list(items)
        present = {name_of(item) for item in remaining}
        done: set[str] = set()
        ordered: list[T] = []
        while remaining:
            # the first in pluggy's order whose predecessors have all been placed (there is
            # one: cycles are refused at load)
            item = next((item for item in remaining
                         if self._after.get(name_of(item), set()) & present <= done),
                        remaining[0])
            remaining.remove(item)
            ordered.append(item)
            done.add(name_of(item))
        return ordered


def _names(plugin: Any, attribute: str) -> list[str]:
    value = getattr(plugin, attribute, ())
    if isinstance(value, str):
        return [value]
    return [str(name) for name in value]


def _cycle(after: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the 'runs before' graph as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for first in sorted(after.get(node, ())):
            if state.get(first) == 1:
                loop = [*path[path.index(first):], first]
                return list(reversed(loop))
            if first not in state and (found := visit(first)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(after):
        if node not in state and (found := visit(node)):
            return found
    return None
