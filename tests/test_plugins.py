"""Plugin loading and isolation: built-ins and a real third-party distribution."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from cadenza.api import hookimpl
from cadenza.config import Config, ConfigError
from cadenza.loader import (
    API_VERSION,
    PluginContext,
    PluginLoader,
    check_api_version,
    discover,
    new_manager,
)
from cadenza.relay import HookRelay
from cadenza.state import Store
from conftest import agent_config

pytestmark = pytest.mark.usefixtures("agent_path")


def test_discovery_lists_builtins_and_third_party_without_importing(third_party) -> None:
    found = discover()
    assert found["console"].source == "built-in"
    assert found["sample"].source == "cadenza-sample 1.2.3"
    assert "sample_plugin" not in sys.modules and "broken_plugin" not in sys.modules


def test_third_party_plugins_are_off_until_enabled(third_party, tmp_path: Path) -> None:
    pm = new_manager()
    loader = PluginLoader(Config.load(tmp_path / "none.toml"), pm, HookRelay(pm))
    loader.load_all(store=Store(Path(":memory:")), clock=None, state_dir=tmp_path)
    assert not loader.records["sample"].enabled and not loader.records["sample"].loaded
    assert "broken_plugin" not in sys.modules  # a disabled plugin is never imported


async def test_failing_plugins_never_stop_the_turn_or_the_others(third_party, start_app) -> None:
    toml = agent_config("claude").replace(
        "console = false", "console = false\nsample = true\nraising = true\nhanging = true\n"
        "broken = true") + "[core]\nhook_timeout = 0.05\nmax_failures = 3\n"
    h = await start_app(toml)
    import sample_plugin

    sample_plugin.SEEN.clear()
    await h.say("say one; say two; say three")
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    kinds = [e.kind for e in h.recorder.events]
    assert kinds == sample_plugin.SEEN
    assert kinds == ["started", "session", "text", "text", "text", "usage", "completed"]
    health = h.app.relay.health
    assert "switched off after 3 failures" in health["raising"]
    assert "RuntimeError: boom from a plugin" in health["raising"]
    assert "took longer than 0.05 s" in health["hanging"]
    records = h.app.loader.records
    assert "this plugin is broken on import" in records["broken"].error
    assert "on_stream_event" in records["sample"].hooks
    # switched off for the rest of the run: the next turn calls neither
    await h.say("say again")
    await h.recorder.finished(2)
    assert len(sample_plugin.SEEN) == len(h.recorder.events)


async def test_sync_and_async_implementations_are_both_awaited(start_app) -> None:
    from cadenza.api import hookimpl

    seen: list[str] = []

    class Sync:
        @hookimpl
        def on_stream_event(self, event):
            seen.append("sync:" + event.kind)

    class Async:
        @hookimpl
        async def on_stream_event(self, event):
            seen.append("async:" + event.kind)

    h = await start_app(agent_config("claude"), sync=Sync(), async_=Async())
    await h.say("say x")
    await h.recorder.finished()
    assert seen.count("sync:completed") == seen.count("async:completed") == 1


async def test_a_plugin_with_an_unknown_hook_is_refused(start_app, tmp_path: Path) -> None:
    from cadenza.api import hookimpl

    class Typo:
        @hookimpl
        def on_stream_evnt(self, event):
            pass

    with pytest.raises(ValueError, match="implements unknown hooks: on_stream_evnt"):
        await start_app(agent_config("claude"), typo=Typo())


def test_unknown_plugin_in_config_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text("[plugins]\nconsole = true\ntimeuot = true\n")
    pm = new_manager()
    loader = PluginLoader(Config.load(path), pm, HookRelay(pm))
    with pytest.raises(ConfigError) as error:
        loader.load_all(store=Store(Path(":memory:")), clock=None, state_dir=tmp_path)
    assert error.value.line == 3
    assert "[plugins] timeuot: no such plugin is installed" in str(error.value)


def test_plugins_cli_lists_enables_and_disables(third_party, run_cli, tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    original = (
        "# Cadenza settings\n[plugins]  # switches\nconsole = true  # the terminal\n"
        "\n# keep this comment\n[agent]\ndefault = 'command'  # no agent CLI here\n"
    )
    config.write_text(original)
    listed = run_cli("plugins", "list", "--json", "--config", str(config), env=third_party)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["sample"]["enabled"] is False and rows["sample"]["source"] == "cadenza-sample 1.2.3"
    assert rows["console"]["enabled"] is True and "on_stream_event" in rows["console"]["hooks"]

    enabled = run_cli("plugins", "enable", "sample", "--config", str(config), env=third_party)
    assert enabled.returncode == 0, enabled.stderr
    assert config.read_text() == original.replace(
        "console = true  # the terminal\n", "console = true  # the terminal\nsample = true\n")
    rows = {r["name"]: r for r in json.loads(run_cli(
        "plugins", "list", "--json", "--config", str(config), env=third_party).stdout)}
    assert rows["sample"]["enabled"]
    assert rows["sample"]["hooks"] == ["doctor_checks", "on_stream_event", "report_status"]
    assert rows["sample"]["health"] == "ok"

    run_cli("plugins", "disable", "console", "--config", str(config), env=third_party)
    assert config.read_text() == original.replace(
        "console = true  # the terminal\n", "console = false  # the terminal\nsample = true\n")

    typo = run_cli("plugins", "enable", "sampel", "--config", str(config), env=third_party)
    assert typo.returncode == 2 and "did you mean 'sample'" in typo.stderr

    text = run_cli("plugins", "list", "--config", str(config), env=third_party)
    assert "broken" in text.stdout and "off" in text.stdout


def test_enable_creates_a_missing_config(run_cli, tmp_path: Path) -> None:
    done = run_cli("plugins", "disable", "console")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plugins.toml").read_text() == "[plugins]\nconsole = false\n"


def _loader(tmp_path: Path) -> PluginLoader:
    pm = new_manager()
    return PluginLoader(Config.load(tmp_path / "none.toml"), pm, HookRelay(pm))


def test_hook_wrappers_are_refused_at_load_with_a_clear_message(tmp_path: Path) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def on_inbound_message(self, message):
            return (yield)

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def on_stream_event(self, event):
            yield

    loader = _loader(tmp_path)
    for plugin in (Wrapping(), OldStyle()):
        with pytest.raises(ValueError, match="hook wrappers are not supported"):
            loader.register(type(plugin).__name__, plugin)
    assert loader.pm.get_plugins() == set()


def test_a_plugin_for_another_api_version_is_refused_naming_both() -> None:
    class FromTheFuture:
        CADENZA_PLUGIN_API_VERSION = 2

    class Current:
        CADENZA_PLUGIN_API_VERSION = API_VERSION

    with pytest.raises(ValueError, match="needs Cadenza plugin API version 2; this Cadenza "
                                         "provides version 1"):
        check_api_version(FromTheFuture)
    check_api_version(Current)
    check_api_version(object())  # no declaration: the current version


def _recording(name: str, seen: list[str], **wishes):
    class Plugin:
        @hookimpl
        def on_notice(self, notice):
            seen.append(name)

    for key, value in wishes.items():
        setattr(Plugin, key, value)
    return Plugin()


async def test_plugins_run_before_or_after_named_plugins(tmp_path: Path) -> None:
    seen: list[str] = []
    loader = _loader(tmp_path)
    loader.register("audit", _recording("audit", seen, run_after=("journal",)))
    loader.register("journal", _recording("journal", seen))
    loader.register("policy", _recording("policy", seen, run_before="audit"))
    loader.register("late", _recording("late", seen))
    await loader.relay.call("on_notice", notice=None)
    # pluggy alone: late, policy, journal, audit (last registered first)
    assert seen == ["late", "policy", "journal", "audit"]
    seen.clear()
    loader.register("first", _recording("first", seen, run_before=("late", "policy")))
    await loader.relay.call("on_notice", notice=None)
    assert seen.index("first") < seen.index("late") and seen.index("journal") < seen.index("audit")


def test_an_ordering_cycle_is_refused(tmp_path: Path) -> None:
    loader = _loader(tmp_path)
    loader.register("a", _recording("a", [], run_before="b"))
    loader.register("b", _recording("b", [], run_before="c"))
    with pytest.raises(ValueError, match="cycle: a → b → c → a"):
        loader.register("c", _recording("c", [], run_before="a"))
    assert {loader.pm.get_name(p) for p in loader.pm.get_plugins()} == {"a", "b"}


async def test_spawned_tasks_are_supervised_and_cancelled_at_shutdown(start_app) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    class Background:
        def __init__(self, context) -> None:
            self.context = context

        @hookimpl
        def on_start(self, bot):
            self.context.spawn(self.forever(), "forever")
            self.context.spawn(self.crash(), "crash")

        async def forever(self):
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def crash(self):
            raise RuntimeError("lost the connection")

    h = await start_app(agent_config("claude"))
    loader = h.app.loader
    context = PluginContext("background", loader.config.settings("background"), loader.config,
                            h.app.store, h.app.relay, h.app.clock, logging.getLogger("t"),
                            h.app.state_dir)
    plugin = Background(context)
    loader.register("background", plugin)
    await h.app.relay.call("on_start", bot=h.bot)
    await started.wait()
    await asyncio.sleep(0)
    assert "task background:crash raised RuntimeError: lost the connection" in (
        h.app.relay.health["background"])
    await h.app.stop()
    assert cancelled.is_set()
