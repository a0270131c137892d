"""The real Cadenza, started in the test's event loop with a recording frontend."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadenza.api import ChatMessage, ChatRef, Clock
from cadenza.app import App
from cadenza.config import Config
from cadenza.process import marked_processes
from cadenza.protocols import Bot
from cadenza.testing.agents import scripted_agent
from cadenza.testing.frontend import CHAT, RecordingFrontend

RECORDING = "recording"  # the plugin name of the recording frontend


class Harness:
    """One running Cadenza: the ``App``, its ``bot``, the recording ``frontend``, its ``clock``,
    and the ``state_dir`` and ``config_path`` it runs on."""

    def __init__(self, factory: AppFactory, app: App, bot: Bot, frontend: RecordingFrontend,
                 plugins: dict[str, Any]) -> None:
        self.factory = factory
        self.app, self.bot, self.frontend = app, bot, frontend
        self.clock: Clock = app.clock
        self.state_dir: Path = app.state_dir
        self.config_path: Path = app.config.path
        self.plugins = plugins
        self.running = True

    async def say(self, text: str, chat: ChatRef = CHAT, user: str = "u1") -> None:
        """``user`` sends ``text`` in ``chat``, as a frontend hands it to the bot: the veto,
        commands, then a turn (or a queue notice). Returns once the bot took it."""
        await self.bot.handle(ChatMessage(chat, user, text))

    def plugin(self, name: str) -> Any:
        """The loaded plugin called ``name`` (one switched on in the toml, or passed in)."""
        if name in self.plugins:
            return self.plugins[name]
        if name == RECORDING:
            return self.frontend
        loader = self.app.loader
        if loader is None or name not in loader.instances:
            known = ", ".join(sorted(loader.instances)) if loader else "none"
            raise KeyError(f"no plugin {name!r} is loaded (loaded: {known})")
        return loader.instances[name]

    async def stop(self) -> None:
        """Shut down cleanly, as SIGTERM does: running turns are interrupted (the journal
        resumes them at the next start), the plugins get ``on_shutdown``, and no agent process
        of this run is left. Idempotent."""
        if not self.running:
            return
        self.running = False
        try:
            await self.app.stop()
        finally:
            kill_leftovers(self.frontend)

    async def restart(self, toml: str | None = None, **plugins: Any) -> Harness:
        """Stop (if running) and start a new App on the same state directory, as a restart of
        the process would: a new recording frontend, the same clock, ``toml`` as the new
        plugins.toml if given, and ``plugins`` if given, else the same plugin objects again."""
        await self.stop()
        return await self.factory.start(toml, self.clock, plugins or self.plugins)


def kill_leftovers(frontend: RecordingFrontend) -> None:
    """SIGKILL whatever still carries the marker of a turn this run saw. App.stop already
    stopped every agent; this is the kit's promise that no test leaves one behind."""
    turns = {event.turn.id for event in frontend.events}
    for pid in marked_processes(turns):
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)


class AppFactory:
    """Starts Apps in ``directory`` (``plugins.toml`` there, state in ``state/``) and stops
    them all in ``close``: what the ``cadenza_app`` fixture hands a test."""

    def __init__(self, directory: Path,
                 frontend: Callable[[], RecordingFrontend] = RecordingFrontend,
                 harness: type[Harness] = Harness) -> None:
        self.directory = directory
        self.frontend = frontend
        self.harness = harness
        self.config_path = directory / "plugins.toml"
        self.state_dir = directory / "state"
        self.started: list[Harness] = []

    async def __call__(self, toml: str = "", clock: Clock | None = None,
                       **plugins: Any) -> Harness:
        """Write ``toml`` as plugins.toml and start Cadenza with the recording frontend and
        ``plugins`` (name=object) registered beside the configured ones."""
        return await self.start(toml, clock, plugins)

    async def start(self, toml: str | None, clock: Clock | None,
                    plugins: dict[str, Any]) -> Harness:
        for name, plugin in plugins.items():
            if isinstance(plugin, type):
                raise TypeError(
                    f"{name}={plugin.__name__}: pass a plugin object, not its class. A plugin "
                    "class taking a PluginContext loads from its entry point: install its "
                    f"distribution and switch it on in the toml ([plugins] {name} = true)")
        if toml is not None:
            self.config_path.write_text(with_agent(toml), encoding="utf-8")
        config = Config.load(self.config_path)
        switched = config.data.setdefault("plugins", {})
        if isinstance(switched, dict):  # in memory: the file's line numbers stay the test's
            for name in KIT_OFF:
                switched.setdefault(name, False)
        app = App(config, self.state_dir, clock)
        frontend = self.frontend()
        app.add_plugin(RECORDING, frontend)
        for name, plugin in plugins.items():
            app.add_plugin(name, plugin)
        try:
            bot = await app.start()
        except BaseException:
            await app.stop()
            raise
        harness = self.harness(self, app, bot, frontend, dict(plugins))
        self.started.append(harness)
        return harness

    async def close(self) -> None:
        """Stop every App started here, newest first; the first error is raised at the end."""
        error: BaseException | None = None
        for harness in reversed(self.started):
            try:
                await harness.stop()
            except BaseException as exc:
                error = error or exc
        self.started.clear()
        if error is not None:
            raise error


# Built-ins a test runs without unless its toml switches them on: the console (a test has no
# terminal) and files (its preamble would come before every scripted first prompt).
KIT_OFF = ("console", "files")


def kit_config(toml: str) -> str:
    """``toml`` as a test's ``cadenza run`` process reads it: ``KIT_OFF`` off unless it says
    otherwise (written into its ``[plugins]`` table), and ``with_agent``. In-process,
    ``cadenza_app`` switches them off in memory instead, so that lines keep their numbers."""
    data = tomllib.loads(toml)
    off = "".join(f"{name} = false\n" for name in KIT_OFF if name not in data.get("plugins", {}))
    if off:
        header = re.search(r"^[ \t]*\[[ \t]*plugins[ \t]*\][^\n]*(\n|$)", toml, re.MULTILINE)
        if header:
            newline = "" if header.group(1) else "\n"
            toml = f"{toml[:header.end()]}{newline}{off}{toml[header.end():]}"
        elif "plugins" not in data:
            toml = _append(toml, f"[plugins]\n{off}")
    return with_agent(toml)


def with_agent(toml: str) -> str:
    """``toml`` with the scripted claude as the agent when it has no ``[agent]`` table (added
    at the end), so that no test reaches a real agent by accident."""
    if "agent" not in tomllib.loads(toml):
        toml = _append(toml, scripted_agent())
    return toml


def _append(toml: str, table: str) -> str:
    return f"{toml}{chr(10) if toml and not toml.endswith(chr(10)) else ''}\n{table}"
