"""``cadenza run``: wire config, state, plugins, agents and the bot; run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from cadenza import containment
from cadenza.agents import Agent, choose_default
from cadenza.agents.claude import ClaudeAgent
from cadenza.agents.codex import CodexAgent
from cadenza.agents.command import CommandAgent
from cadenza.bot import Bot, Limits
from cadenza.clock import Clock, SystemClock
from cadenza.config import Config, ConfigError
from cadenza.loader import PluginLoader, new_manager
from cadenza.locks import AdvisoryLock, instance_lock
from cadenza.output import OUTPUTS_DIR, prune_outputs
from cadenza.relay import HookRelay
from cadenza.secrets import install_redaction
from cadenza.state import StateError, Store
from cadenza.state_config import StateSettings, open_store, with_retries
from sqlalchemy import Column, Float, MetaData, Table, Text, delete

log = logging.getLogger("cadenza")

LOCK_CHECK_EVERY = 15.0  # seconds between checks that a PostgreSQL advisory lock is still ours
KEEP_OUTPUTS = 7 * 86400.0  # seconds a whole answer sent as a file is kept
CHECKPOINT_EVERY = 30.0  # seconds between WAL checkpoints, run in a worker thread
HEALTH_STEPS = ["CREATE TABLE plugin_health (name TEXT PRIMARY KEY, problem TEXT, at REAL)"]
metadata = MetaData()
# each plugin's problem in this run (the last failure, or why it did not load), for the CLI
plugin_health = Table(
    "plugin_health", metadata,
    Column("name", Text, primary_key=True),
    Column("problem", Text),
    Column("at", Float),
)


@dataclass
class CoreSettings:
    hook_timeout: float
    max_failures: int
    workdir: Path
    kill_grace: float
    limits: Limits
    max_output: int

    @classmethod
    def from_config(cls, config: Config, state_dir: Path) -> CoreSettings:
        core = config.settings("core")
        core.reject_unknown(["hook_timeout", "max_failures", "max_queued", "max_running",
                             "max_output"])
        agent = config.settings("agent")
        agent.reject_unknown(["default", "workdir", "command", "run_as", "contain"])
        return cls(
            hook_timeout=core.number("hook_timeout", 10.0, minimum=0.001),
            max_failures=int(core.number("max_failures", 5, minimum=1)),
            workdir=agent_workdir(config, state_dir),
            kill_grace=config.settings("timeout").number("kill_grace", 5.0, minimum=0),
            limits=Limits(max_queued=int(core.number("max_queued", 20, minimum=1)),
                          max_running=int(core.number("max_running", 10, minimum=1))),
            max_output=int(core.number("max_output", 1_000_000, minimum=1000)),
        )


DEFAULT_WORKDIR = "workspace"


def agent_workdir(config: Config, state_dir: Path) -> Path:
    """Where agents run: ``[agent] workdir``, relative to plugins.toml's folder.

    Never a folder holding the config or the state: an agent may write anything in its
    working directory, and must not be able to change who may use the bot, its own arguments
    or the journal of turns that run at the next start.
    """
    settings = config.settings("agent")
    base = config.path.resolve().parent
    workdir = (base / settings.string("workdir", DEFAULT_WORKDIR)).resolve()
    for what, path in (("the config file", config.path), ("the state directory", state_dir)):
        path = path.resolve()
        if path == workdir or workdir in path.parents:
            raise settings.error(
                "workdir", f"{workdir} holds {what} ({path}): an agent could rewrite it. Use "
                "a folder of its own, such as the project the agent works on")
    return workdir


def builtin_agents(config: Config) -> dict[str, Agent]:
    return {
        "claude": ClaudeAgent.from_settings(config.settings("agent.claude"), "claude", "claude"),
        "codex": CodexAgent.from_settings(config.settings("agent.codex"), "codex", "codex"),
        "command": CommandAgent.from_settings(config.settings("agent")),
    }


class App:
    """One run of Cadenza: ``start`` wires everything and returns the bot, ``stop`` undoes it.

    ``run`` adds what the command line needs: the instance lock and the signal handlers.
    Embedders and tests call ``start``/``stop`` and may ``add_plugin`` before starting.
    """

    def __init__(self, config: Config, state_dir: Path, clock: Clock | None = None) -> None:
        self.config = config
        self.state_dir = state_dir
        self.clock = clock or SystemClock()
        self.settings = CoreSettings.from_config(config, state_dir)
        self.state = StateSettings.from_config(config)
        self.extra_plugins: dict[str, object] = {}
        self.store: Store | None = None
        self.relay: HookRelay | None = None
        self.loader: PluginLoader | None = None
        self.bot: Bot | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._lock_watch: asyncio.Task[None] | None = None

    def add_plugin(self, name: str, plugin: object) -> None:
        self.extra_plugins[name] = plugin

    async def start(self) -> Bot:
        install_redaction()
        containment.configure(self.config.settings("agent"))  # run_as, cgroups, leftovers
        self.store = store = await with_retries(
            lambda: open_store(self.state, self.state_dir), self.clock, self.state.connect_wait)
        store.migrate("core", HEALTH_STEPS)
        await store.execute(delete(plugin_health))
        pm = new_manager()
        self.relay = relay = HookRelay(pm, timeout=self.settings.hook_timeout,
                                       max_failures=self.settings.max_failures)
        record_health = store.upsert(plugin_health, {}, key=["name"], update=["problem", "at"])
        # The relay reports failures from synchronous code; they are rare, so a synchronous
        # write is fine here.
        relay.on_health_change = lambda name, problem: store.execute_sync(
            record_health, {"name": name, "problem": problem, "at": self.clock.time()})
        self.loader = loader = PluginLoader(self.config, pm, relay)
        loader.load_all(store=store, clock=self.clock, state_dir=self.state_dir)
        for name, plugin in self.extra_plugins.items():
            loader.register(name, plugin)
        for record in loader.records.values():
            if record.error:
                relay.on_health_change(record.name, record.error)

        agents = builtin_agents(self.config)
        await relay.call("register_agents", register=lambda agent: agents.update(
            {agent.name: agent}))
        default_agent, why = choose_default(self.config, agents)
        log.info(why)
        workdir = self.settings.workdir
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the agents' working directory {workdir}: "
                             f"{exc}") from None
        self.bot = bot = Bot(relay, agents, default_agent, self.clock, workdir=workdir,
                             kill_grace=self.settings.kill_grace, limits=self.settings.limits,
                             max_output=self.settings.max_output, state_dir=self.state_dir)
        await relay.call("register_commands", register=bot.add_command)
        await relay.call("on_start", bot=bot)
        await relay.call("on_ready", bot=bot)
        bot.mark_ready()
        self._maintenance = asyncio.ensure_future(self._checkpoints(store))
        prune_outputs(self.state_dir / OUTPUTS_DIR, KEEP_OUTPUTS)
        return bot

    async def reload(self) -> None:
        """SIGHUP: read plugins.toml again and hand it to the plugins (allowlists change
        without a restart). A file that no longer parses is logged; nothing changes then."""
        if self.relay is None:
            return
        try:
            config = Config.load(self.config.path)
        except ConfigError as exc:
            log.error("SIGHUP: %s is not valid, nothing reloaded: %s", self.config.path, exc)
            return
        log.info("SIGHUP: reloading %s", self.config.path)
        await self.relay.call("on_config_reload", config=config)

    async def _checkpoints(self, store: Store) -> None:
        while True:
            await self.clock.sleep(CHECKPOINT_EVERY)
            await asyncio.to_thread(store.checkpoint)

    async def stop(self) -> None:
        """Interrupt running turns, let plugins close, release the store. Idempotent."""
        bot, self.bot = self.bot, None
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._lock_watch is not None:
            self._lock_watch.cancel()
        if bot is not None and self.relay is not None:
            await bot.shutdown()
            await self.relay.settle()
            await self.relay.call("on_shutdown")
            await self.relay.cancel_spawned()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def lock(self) -> contextlib.AbstractContextManager[object]:
        """The single-instance lock: the state directory's on SQLite, ``[state] name``'s on
        PostgreSQL (its server retried like the store's)."""
        if not self.state.postgres:
            return instance_lock(self.state_dir)
        return await with_retries(lambda: AdvisoryLock(self.state.url, self.state.name),
                                  self.clock, self.state.connect_wait)

    async def _watch_lock(self, lock: AdvisoryLock, bot: Bot) -> None:
        """Fail closed: a process whose name another one took over (after the server lost
        this one's session) stops."""
        while True:
            await self.clock.sleep(LOCK_CHECK_EVERY)
            held = await asyncio.to_thread(lock.check)
            if held is False:
                log.error("another Cadenza named %r took the lock on the state store while "
                          "this one had lost its connection: stopping", lock.name)
                bot.request_stop(1)
                return

    async def run(self) -> int:
        with await self.lock() as lock:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
            try:
                bot = await self.start()
                if isinstance(lock, AdvisoryLock):
                    self._lock_watch = asyncio.ensure_future(self._watch_lock(lock, bot))
                signalled = asyncio.ensure_future(stop.wait())
                finished = asyncio.ensure_future(bot.stop_requested())
                await asyncio.wait({signalled, finished}, return_when=asyncio.FIRST_COMPLETED)
                signalled.cancel()
                finished.cancel()
                log.info("stopping")
                exit_code = bot.exit_code
            finally:
                await self.stop()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        return exit_code
