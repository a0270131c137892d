"""Finding and loading plugins: built-ins and third-party ones come through one entry-point group.

Discovery lists entry points without importing them, so a disabled plugin is never imported.
Each enabled plugin is loaded in its own try: a broken one becomes a record with an error,
shown by ``cadenza plugins list``, and never stops the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
from cadenza import hookspecs
from cadenza.clock import Clock
from cadenza.config import Config, ConfigError, Settings, did_you_mean
from cadenza.relay import HookRelay
from cadenza.secrets import redact
from cadenza.state import Store

ENTRY_POINT_GROUP = "cadenza"
# The plugin API this Cadenza provides. A plugin may declare the version it was written for
# as ``CADENZA_PLUGIN_API_VERSION`` (class or module attribute); another version is refused.
API_VERSION = 1
BUILTIN_DIST = "cadenza"
# Built-ins on by default; a third-party plugin is off until plugins.toml switches it on.
DEFAULT_ON = {"console": True, "timeout": True, "journal": True, "sessions": True,
              "files": True, "approvals": True}


@dataclass
class PluginContext:
    """What a plugin gets when it is created: ``Plugin(context)``."""

    name: str
    settings: Settings  # its own table of plugins.toml, e.g. [timeout]
    config: Config  # the whole file, for plugins that read shared tables such as [agent]
    store: Store
    hooks: HookRelay
    clock: Clock
    log: logging.Logger
    state_dir: Path

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run ``coro`` as a background task this plugin owns: an exception is logged with
        the plugin's name and counts as one of its failures; Cadenza cancels the task when it
        stops (after ``on_shutdown``)."""
        return self.hooks.spawn(self.name, coro, name)


@dataclass
class PluginRecord:
    """One known plugin, loaded or not: a row of ``cadenza plugins list``."""

    name: str
    source: str  # "built-in" or "distribution version"
    target: str  # the entry point's "module:attr"
    enabled: bool
    loaded: bool = False
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    config_error: bool = False

    @property
    def health(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if not self.enabled:
            return "off"
        return "ok" if self.loaded else "not loaded"


@dataclass(frozen=True)
class _Found:
    name: str
    entry_point: metadata.EntryPoint
    source: str
    builtin: bool


def discover() -> dict[str, _Found]:
    """Every plugin installed in this environment, by name, without importing any."""
    found: dict[str, _Found] = {}
    clashes: list[_Found] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist else "unknown"
        builtin = (dist_name or "").lower() == BUILTIN_DIST
        source = "built-in" if builtin else f"{dist_name} {dist.version if dist else '?'}"
        item = _Found(ep.name, ep, source, builtin)
        if ep.name in found:
            # A built-in keeps its name; a third-party plugin must pick another.
            other = found[ep.name]
            keep, drop = (other, item) if other.builtin else (item, other)
            found[ep.name] = keep
            clashes.append(drop)
        else:
            found[ep.name] = item
    for drop in clashes:
        logging.getLogger("cadenza.plugins").error(
            "plugin name %r from %s is taken by %s; ignored", drop.name, drop.source,
            found[drop.name].source,
        )
    return found


def switches(config: Config, known: Iterable[str]) -> dict[str, bool]:
    """Which plugins are on: the defaults, overridden by ``[plugins]``; unknown names refused."""
    known = list(known)
    chosen = config.switches()
    for name in chosen:
        if name not in known:
            raise config.error(
                "plugins", name, "no such plugin is installed" + did_you_mean(name, known)
            )
    return {name: chosen.get(name, DEFAULT_ON.get(name, False)) for name in known}


def check_api_version(target: Any) -> None:
    """Refuse a plugin written for another version of the plugin API, naming both."""
    wanted = getattr(target, "CADENZA_PLUGIN_API_VERSION", API_VERSION)
    if wanted != API_VERSION:
        raise ValueError(f"it needs Cadenza plugin API version {wanted}; this Cadenza provides "
                         f"version {API_VERSION}")


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginLoader:
    """Loads the enabled plugins into a plugin manager and keeps a record of every plugin."""

    def __init__(self, config: Config, pm: pluggy.PluginManager, relay: HookRelay) -> None:
        self.config = config
        self.pm = pm
        self.relay = relay
        self.records: dict[str, PluginRecord] = {}
        self.instances: dict[str, Any] = {}

    def load_all(
        self, *, store: Store, clock: Clock, state_dir: Path, strict: bool = True
    ) -> None:
        """Load every enabled plugin. ``strict``: a plugin refusing its settings stops
        everything (``cadenza run``); otherwise it becomes the plugin's error, so the
        inspection commands can show all problems at once."""
        found = discover()
        enabled = switches(self.config, found)
        for name, item in found.items():
            record = PluginRecord(name, item.source, item.entry_point.value, enabled[name])
            self.records[name] = record
            if record.enabled:
                context = PluginContext(
                    name=name,
                    settings=self.config.settings(name),
                    config=self.config,
                    store=store,
                    hooks=self.relay,
                    clock=clock,
                    log=logging.getLogger(f"cadenza.plugin.{name}"),
                    state_dir=state_dir,
                )
                self._load(record, item.entry_point, context, strict)
        self.relay.invalidate()

    def _load(
        self, record: PluginRecord, ep: metadata.EntryPoint, context: PluginContext, strict: bool
    ) -> None:
        try:
            target = ep.load()
            check_api_version(target)
            plugin = target if isinstance(target, types.ModuleType) else target(context)
            self.register(record.name, plugin)
        except ConfigError as exc:
            if strict:
                raise  # a plugin refusing its settings is the operator's error: exit code 2
            record.error = redact(f"configuration error: {exc}")
            record.config_error = True
            return
        except Exception as exc:  # any failure of third-party code is reported, never fatal
            record.error = redact(f"{type(exc).__name__}: {exc}")
            logging.getLogger("cadenza.plugins").error(
                "plugin %s (%s) failed to load: %s", record.name, record.source, record.error
            )
            return
        record.loaded = True
        record.hooks = sorted(hook.name for hook in self.pm.get_hookcallers(plugin) or ())
        self.instances[record.name] = plugin

    def register(self, name: str, plugin: Any) -> None:
        """Register one plugin object, checking that every hook it implements exists, that it
        uses no hook wrappers and that its ordering wishes make no cycle."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(plugin)
            unknown = [
                attr for attr, _ in inspect.getmembers(plugin)
                if self.pm.parse_hookimpl_opts(plugin, attr) is not None
                and not hasattr(hookspecs, attr)
            ]
            raise ValueError(f"implements unknown hooks: {', '.join(unknown)}") from None
        wrappers = sorted(
            caller.name for caller in self.pm.get_hookcallers(plugin) or ()
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper)
        )
        if wrappers:
            self.pm.unregister(plugin)
            raise ValueError(
                f"hook wrappers are not supported ({', '.join(wrappers)}): Cadenza calls each "
                "implementation on its own, isolated and bounded in time; implement the hook "
                "plainly and order it with tryfirst/trylast or run_before/run_after")
        try:
            self.relay.order.add(name, plugin)
        except ValueError:
            self.pm.unregister(plugin)
            raise
        self.relay.invalidate()
