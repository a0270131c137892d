"""The ``cadenza`` command line. Exit codes: 0 ok, 2 bad usage or configuration, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy
import tomlkit
from cadenza import containment
from cadenza.agents import choose_default
from cadenza.app import App, CoreSettings, builtin_agents, plugin_health
from cadenza.clock import SystemClock
from cadenza.config import Config, ConfigError, did_you_mean, resolve_paths
from cadenza.loader import (
    BUILTIN_DIST,
    ENTRY_POINT_GROUP,
    PluginLoader,
    discover,
    new_manager,
)
from cadenza.relay import HookRelay
from cadenza.scaffold import ScaffoldError, names, scaffold
from cadenza.secrets import install_redaction, redact
from cadenza.state import DB_NAME, StateError, Store
from cadenza.state_config import StateSettings, open_store, state_exists
from cadenza.state_postgres import PostgresStore
from sqlalchemy import select, text

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadenza", description="Drive CLI coding agents from chat without losing work."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="plugins.toml to use (env CADENZA_CONFIG)")
    common.add_argument("--state-dir", help="state directory (env CADENZA_STATE_DIR; "
                        "default: .cadenza beside the config)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the bot")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    run.set_defaults(func=cmd_run)

    plugins = commands.add_parser("plugins", help="list, enable or disable plugins")
    actions = plugins.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="every known plugin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_plugins_list)
    for name, value in (("enable", True), ("disable", False)):
        action = actions.add_parser(name, parents=[common], help=f"{name} a plugin")
        action.add_argument("name")
        action.set_defaults(func=cmd_plugins_switch, value=value)
    install = actions.add_parser(
        "install", parents=[common],
        help="pip install a plugin distribution into Cadenza's environment and switch it on")
    install.add_argument("target", metavar="NAME_OR_PATH",
                         help="a distribution on PyPI (with a version if you like) or a folder")
    install.add_argument("-e", "--editable", action="store_true",
                         help="install a folder in editable mode, for developing the plugin")
    install.set_defaults(func=cmd_plugins_install)
    new = actions.add_parser("new", help="scaffold a plugin distribution cadenza-NAME/")
    new.add_argument("name", help="the plugin's name: lowercase letters, digits, underscores")
    new.add_argument("--dir", default=".", help="where to create cadenza-NAME/ (default: here)")
    new.set_defaults(func=cmd_plugins_new)

    status = commands.add_parser("status", parents=[common], help="runs, turns and sessions")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    doctor = commands.add_parser("doctor", parents=[common], help="check the set-up")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_path, state_dir = resolve_paths(getattr(args, "config", None),
                                           getattr(args, "state_dir", None))
    try:
        return int(args.func(args, config_path, state_dir))
    except ConfigError as exc:
        print(redact(f"cadenza: configuration error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except StateError as exc:
        print(redact(f"cadenza: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def cmd_run(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiogram and discord.py are chatty at INFO; their warnings still show
    for noisy in ("aiogram", "discord", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_redaction()
    config = Config.load(config_path)
    if not config.exists:
        logging.getLogger("cadenza").info(
            "no %s: running on the embedded defaults", config_path)
    use_pidfd_child_watcher()
    return asyncio.run(App(config, state_dir).run())


def use_pidfd_child_watcher() -> None:
    """Python 3.11 watches each agent subprocess with a thread of its own; a pidfd watcher
    needs none (3.12 picks it by itself)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # an old kernel, or a sandbox that forbids it
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


# --- plugins ---------------------------------------------------------------------


def load_plugins(
    config: Config, store: Store, state_dir: Path
) -> tuple[PluginLoader, HookRelay]:
    """Load the enabled plugins without starting them, for the inspection commands."""
    settings = CoreSettings.from_config(config, state_dir)
    pm = new_manager()
    relay = HookRelay(pm, timeout=settings.hook_timeout, max_failures=settings.max_failures)
    loader = PluginLoader(config, pm, relay)
    loader.load_all(store=store, clock=SystemClock(), state_dir=state_dir, strict=False)
    return loader, relay


def last_run_health(config: Config, state_dir: Path) -> dict[str, str]:
    state = StateSettings.from_config(config)
    if not state_exists(state, state_dir):
        return {}
    store = open_store(state, state_dir, readonly=True)
    try:
        if not store.has_table("plugin_health"):
            return {}
        return {row["name"]: row["problem"] for row in store.fetch_sync(select(plugin_health))}
    finally:
        store.close()


def cmd_plugins_list(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    config = Config.load(config_path)
    store = Store(Path(":memory:"))
    loader, _ = load_plugins(config, store, state_dir)
    failing = last_run_health(config, state_dir)
    rows = []
    for record in sorted(loader.records.values(), key=lambda r: r.name):
        health = record.health
        if record.name in failing and not record.error:
            health = f"failing in the last run: {failing[record.name]}"
        rows.append({"name": record.name, "source": record.source, "enabled": record.enabled,
                     "hooks": record.hooks, "health": health, "target": record.target})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max((len(row["name"]) for row in rows), default=4)
    for row in rows:
        state = "on " if row["enabled"] else "off"
        print(f"{row['name']:<{width}}  {state}  {row['source']:<20}  {row['health']}")
        if row["hooks"]:
            print(f"{'':<{width}}       hooks: {', '.join(row['hooks'])}")
    return EXIT_OK


def cmd_plugins_switch(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    known = sorted(discover())
    if args.name not in known:
        print(f"cadenza: no plugin named {args.name!r}{did_you_mean(args.name, known)}; "
              f"known: {', '.join(known)}", file=sys.stderr)
        return EXIT_USAGE
    Config.load(config_path)  # refuse to edit a file that does not parse
    set_switch(config_path, args.name, args.value)
    print(f"{args.name}: {'enabled' if args.value else 'disabled'} in {config_path}")
    return EXIT_OK


def cmd_plugins_new(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    builtins = {name for name, found in discover().items() if found.builtin}
    try:
        root = scaffold(args.name, Path(args.dir), builtins)
    except ScaffoldError as exc:
        print(f"cadenza: {exc}", file=sys.stderr)
        return EXIT_USAGE
    shown = str(root) if root.is_absolute() else f"./{root}"
    print(f"created {shown}/ with the plugin {args.name} (src/{names(args.name)['module']}/), "
          f"a test and a README. Next:\n"
          f"  cadenza plugins install --editable {shown}   # install it here, switch it on\n"
          f"  cd {shown} && python -m pytest                # its tests")
    return EXIT_OK


def cmd_plugins_install(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    """``pip install`` into the environment Cadenza runs in, then switch on the plugins of
    the distribution it installed (not those of its dependencies)."""
    Config.load(config_path)  # refuse a config that does not parse before changing anything
    folder = Path(args.target).expanduser()
    is_folder = folder.is_dir()
    if args.editable and not is_folder:
        print(f"cadenza: --editable needs a folder; {args.target} is not one", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        argv = [sys.executable, "-m", "pip", "install", "--report", str(report),
                *(["--editable"] if args.editable else []),
                str(folder.resolve()) if is_folder else args.target]
        print(f"installing {args.target} into {sys.prefix} …", file=sys.stderr, flush=True)
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            tail = done.stdout.strip().splitlines()[-15:] or ["(pip printed nothing)"]
            print(f"cadenza: pip could not install {args.target} (exit code "
                  f"{done.returncode}); its last lines:", file=sys.stderr)
            print("\n".join(f"  {line}" for line in tail), file=sys.stderr)
            return EXIT_ERROR
        requested = installed_distributions(report)
    verb = "installed"
    if not requested:  # already installed: pip reports nothing new
        requested = [project_name(folder) if is_folder else requirement_name(args.target)]
        verb = "already installed:"
    importlib.invalidate_caches()
    builtins = {name for name, found in discover().items() if found.builtin}
    enabled: list[str] = []
    for dist_name in filter(None, requested):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for ep in dist.entry_points.select(group=ENTRY_POINT_GROUP):
            if (dist.metadata["Name"] or "").lower() == BUILTIN_DIST:
                continue
            if ep.name in builtins:
                print(f"cadenza: {dist.metadata['Name']} names a plugin {ep.name!r}, the name "
                      "of a built-in plugin; it stays off", file=sys.stderr)
                continue
            set_switch(config_path, ep.name, True)
            enabled.append(ep.name)
            print(f"{ep.name}: {verb} {dist.metadata['Name']} {dist.version}, enabled in "
                  f"{config_path}")
    if not enabled:
        print(f"cadenza: installed {', '.join(filter(None, requested)) or args.target}, but it "
              f"provides no Cadenza plugin (no entry point in the {ENTRY_POINT_GROUP!r} "
              "group)", file=sys.stderr)
        return EXIT_ERROR
    return check_loads(enabled, config_path, state_dir)


def installed_distributions(report: Path) -> list[str]:
    """The distributions named on pip's command line that it installed (``--report``)."""
    try:
        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    except (OSError, ValueError):
        return []
    return [item["metadata"]["name"] for item in items if item.get("requested")]


def requirement_name(requirement: str) -> str:
    """``cadenza-budget>=1.0`` → ``cadenza-budget``."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return found.group(1) if found else requirement


def project_name(folder: Path) -> str | None:
    try:
        with open(folder / "pyproject.toml", "rb") as handle:
            return tomllib.load(handle).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def check_loads(names: list[str], config_path: Path, state_dir: Path) -> int:
    """Load the new plugins in a fresh process (an editable install is importable only
    there) and say how they are; a plugin that does not load is an error."""
    listed = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "plugins", "list", "--json",
         "--config", str(config_path), "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    try:
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
    except ValueError:
        print(f"cadenza: could not list the plugins: {listed.stderr.strip()}", file=sys.stderr)
        return EXIT_ERROR
    status = EXIT_OK
    for name in names:
        row = rows.get(name, {"health": "not found after installing", "hooks": []})
        if row["health"] == "ok":
            print(f"{name}: loads; hooks: {', '.join(row['hooks']) or 'none'}")
        else:
            print(redact(f"cadenza: {name}: {row['health']}"), file=sys.stderr)
            status = EXIT_ERROR
    return status


def set_switch(path: Path, name: str, value: bool) -> None:
    """Set ``[plugins] name`` with tomlkit, keeping every comment and the order of the file."""
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else (
        tomlkit.document())
    table = document.get("plugins")
    if table is None:
        table = tomlkit.table()
        document.add("plugins", table)
    if name in table:
        table[name] = value
    else:
        # A new key goes after the table's last key, not after the blank lines and
        # comments that lead into the next table.
        body = table.value.body
        trailing = []
        while body and body[-1][0] is None:
            trailing.insert(0, body.pop()[1])
        table.add(name, value)
        for item in trailing:
            table.add(item)
    # write beside, then rename: an interrupted write never leaves half a config
    with tempfile.NamedTemporaryFile("w", dir=path.resolve().parent, delete=False,
                                     encoding="utf-8", suffix=".tmp") as handle:
        handle.write(tomlkit.dumps(document))
    if path.exists():
        shutil.copymode(path, handle.name)
    os.replace(handle.name, path)


# --- status and doctor ---------------------------------------------------------------


def cmd_status(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    config = Config.load(config_path)
    report: dict[str, Any] = {"state_dir": str(state_dir)}
    state = StateSettings.from_config(config)
    if state_exists(state, state_dir):
        store = open_store(state, state_dir)
        try:
            _, relay = load_plugins(config, store, state_dir)
            for section in asyncio.run(relay.call("report_status")):
                report.update(section)
        finally:
            store.close()
    else:
        report["note"] = "no state yet: cadenza has not run with this state directory"
    report["plugin_problems"] = last_run_health(config, state_dir)
    if args.json:
        print(redact(json.dumps(report, indent=2, default=str)))
    else:
        print_report(report)
    return EXIT_OK


def print_report(report: dict[str, Any]) -> None:
    for section, value in report.items():
        if isinstance(value, list):
            print(f"{section}: {len(value)}")
            for row in value:
                print(redact("  " + "  ".join(f"{k}={v}" for k, v in row.items()
                                              if v is not None)))
        elif isinstance(value, dict):
            print(f"{section}:" + ("" if value else " none"))
            for key, item in value.items():
                print(redact(f"  {key}: {item}"))
        else:
            print(redact(f"{section}: {value}"))


def cmd_doctor(args: argparse.Namespace, config_path: Path, state_dir: Path) -> int:
    checks: list[tuple[bool | None, str]] = []
    config = Config.load(config_path)
    checks.append((True, f"configuration {config_path} is valid" if config.exists
                   else f"no {config_path}: the embedded defaults apply"))
    store = Store(Path(":memory:"))
    loader, relay = load_plugins(config, store, state_dir)
    bad_config = False
    for record in loader.records.values():
        if record.error:
            checks.append((False, f"plugin {record.name}: {record.error}"))
            bad_config = bad_config or record.config_error
    for found in asyncio.run(relay.call("doctor_checks")):
        checks.extend(found)
    checks.extend(agent_checks(config))
    try:
        checks.extend(containment_checks(config))
    except ConfigError as exc:
        checks.append((False, f"agents: {exc}"))
        bad_config = True
    checks.append(state_dir_check(state_dir))
    try:
        checks.append(state_store_check(StateSettings.from_config(config), state_dir))
    except ConfigError as exc:
        checks.append((False, f"state: {exc}"))
        bad_config = True
    for ok, message in checks:
        print({True: "✓ ", False: "✗ ", None: "– "}[ok] + redact(message))
    if bad_config:
        return EXIT_USAGE
    return EXIT_OK if all(ok is not False for ok, _ in checks) else EXIT_ERROR


def containment_checks(config: Config) -> list[tuple[bool | None, str]]:
    """Who agents run as (``[agent] run_as``, a ConfigError when it cannot be honoured) and
    what keeps their processes to their turn."""
    user = containment.AgentUser.from_settings(config.settings("agent"))  # ConfigError
    checks: list[tuple[bool | None, str]] = [(None, (
        f"agents run as {user.name} (uid {user.uid}): they cannot read Cadenza's 0600 state "
        "and token files") if user is not None else (
        "agents run as Cadenza's own user: they can read its state and environment (set "
        "[agent] run_as to keep them out)"))]
    found = containment.pick()
    checks.append((True, f"agents are contained by {found.name}: nothing they start outlives "
                   "their turn") if found is not None else (False, (
                       "agents are not contained (no writable cgroup, no subreaper): what "
                       "they start in the background may outlive their turn")))
    return checks


def agent_checks(config: Config) -> list[tuple[bool | None, str]]:
    """Each agent's binary and version; ``None`` marks what is merely informative."""
    agents = builtin_agents(config)
    default, why = choose_default(config, agents)
    checks: list[tuple[bool | None, str]] = [(True, why)]
    for name, agent in agents.items():
        binary = shutil.which(agent.binary)
        if binary is None:
            if name == default:
                checks.append((False, f"{name}: {agent.binary} is not on PATH"))
            else:
                checks.append((None, f"{name}: {agent.binary} is not on PATH (not in use)"))
            continue
        if name == "command":
            checks.append((True, f"command: {binary}"))
            continue
        checks.append(_version_check(name, [binary, "--version"]))
    return checks


def _version_check(name: str, argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{name}: {argv[0]} does not run: {exc}"
    output = (done.stdout or done.stderr).strip().splitlines()
    version = output[0] if output else "no version printed"
    return done.returncode == 0, f"{name}: {version} ({argv[0]})"


def state_store_check(state: StateSettings, state_dir: Path) -> tuple[bool | None, str]:
    """Which store ``[state] url`` names, and for a server whether it answers now."""
    if not state.postgres:
        return None, f"state store: the embedded SQLite file {state_dir / DB_NAME}"
    try:
        store = PostgresStore(state.url, readonly=True)
    except StateError as exc:
        return False, f"state store: {exc}"
    try:
        version = store.fetch_sync(text("SHOW server_version"))[0]["server_version"]
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return False, f"state store {store.where} does not answer: {exc}"
    finally:
        store.close()
    return True, (f"state store {store.where} is reachable (PostgreSQL {version}); this "
                  f"process is named {state.name!r} ([state] name)")


def state_dir_check(state_dir: Path) -> tuple[bool, str]:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        return False, f"state directory {state_dir} is not writable: {exc}"
    return True, f"state directory {state_dir} is writable"

if __name__ == "__main__":
    sys.exit(main())
