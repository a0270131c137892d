"""``cadenza.testing``: test a Cadenza plugin against the real core, offline.

A pytest plugin, registered through the ``pytest11`` entry point, so installing Cadenza makes
its fixture available to any test suite without a ``conftest.py``; Cadenza's own tests use it
too. It needs pytest-asyncio (any mode: the fixture is a ``pytest_asyncio.fixture``).

- ``cadenza_app``: a fixture; ``h = await cadenza_app(toml, clock=None, **plugins)`` writes
  ``toml`` as plugins.toml in the test's ``tmp_path`` and starts the real ``App`` there with
  the recording frontend and ``plugins`` (name=object) registered. The console is off unless
  the toml switches it on, and a toml without an ``[agent]`` table gets the scripted claude.
  Every App it started is stopped at teardown, with no agent process left behind.
- ``Harness`` (what it returns): ``say(text)`` sends a chat message, ``frontend`` holds what
  came back, ``restart()`` starts a new App on the same state, ``stop()`` shuts down cleanly.
- ``RecordingFrontend``: every stream event, notice, timeout warning, lifecycle and recovery,
  in order; ``wait_for``, ``finished``, ``text_of``. It owns the chats of frontend ``test``
  (``CHAT`` is ``ChatRef("test", "chat-1")``).
- ``scripted_agent("claude" | "codex")``: a toml fragment whose agent is the scripted agent
  program (``cadenza.testing.fake_agent``), which speaks the CLI's real output format and
  does what the prompt says: ``"say hi; sleep 0.2; tool ls; fail quota"``.
- ``recorded(name)`` / ``replay_agent(name)``: the real Claude Code and Codex output shipped
  with the kit (``STREAMS`` names them), and a toml fragment whose agent replays one through
  the real adapter and parser.
- ``ManualClock``: a ``Clock`` that moves only on ``advance(seconds)``; pass it as
  ``clock=`` and a deadline of minutes passes at once.

Only this module's names are the kit's API; its submodules are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from cadenza.testing.harness import AppFactory

try:
    import pytest_asyncio
except ImportError:  # the fixture says what is missing when a test asks for it
    pytest_asyncio = None

__all__ = [
    "CHAT",
    "STREAMS",
    "Harness",
    "ManualClock",
    "RecordingFrontend",
    "cadenza_app",
    "recorded",
    "replay_agent",
    "scripted_agent",
]

# Imported on first use, so that loading this pytest plugin (every pytest run where Cadenza
# is installed) costs nothing and cannot fail on Cadenza itself.
_LAZY = {
    "CHAT": "cadenza.testing.frontend",
    "RecordingFrontend": "cadenza.testing.frontend",
    "Harness": "cadenza.testing.harness",
    "ManualClock": "cadenza.testing.clock",
    "STREAMS": "cadenza.testing.agents",
    "recorded": "cadenza.testing.agents",
    "replay_agent": "cadenza.testing.agents",
    "scripted_agent": "cadenza.testing.agents",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def cadenza_app(tmp_path: Path) -> AsyncIterator[AppFactory]:
        """``h = await cadenza_app(toml="", clock=None, **plugins)``: the real Cadenza, running
        on ``tmp_path`` (plugins.toml there, state in ``tmp_path/state``), with the recording
        frontend and ``plugins`` (name=object) registered. Stops every App at teardown."""
        from cadenza.testing.harness import AppFactory

        factory = AppFactory(tmp_path)
        try:
            yield factory
        finally:
            await factory.close()

else:

    @pytest.fixture
    def cadenza_app() -> None:
        pytest.fail("cadenza_app needs pytest-asyncio: pip install pytest-asyncio")
