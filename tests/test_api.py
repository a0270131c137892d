"""The plugin API is a promise: its exports change only on purpose, with the version."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import cadenza.api as api


def test_exports_are_pinned() -> None:
    assert api.CADENZA_PLUGIN_API_VERSION == 1
    assert sorted(api.__all__) == sorted([
        "APPROVAL", "ApprovalRequest",
        "CADENZA_PLUGIN_API_VERSION", "CANCELLED", "COMPLETED", "ERROR", "FAILED", "FOREGROUND",
        "INTERRUPTED", "NOTICE", "SESSION", "STARTED", "TERMINAL_KINDS", "TEXT", "THINKING",
        "TIMED_OUT", "TOOL_RESULT", "TOOL_USE", "USAGE", "Agent", "Attachment", "Bot",
        "ChatMessage",
        "ChatRef", "CliAgent", "Clock", "Config", "ConfigError", "Launch", "Lifecycle", "Notice",
        "Parsed", "Parser",
        "PluginContext", "Recovery", "RunningTurn", "Settings", "StreamEvent", "Store",
        "TimeoutWarning", "Turn",
        "duration", "first_line", "footer", "hookimpl", "redact", "register_secret",
        "withhold_from_agents",
    ])
    for name in api.__all__:
        assert hasattr(api, name), name


def test_events_are_frozen_and_slotted() -> None:
    for cls in (api.ChatRef, api.ChatMessage, api.Turn, api.StreamEvent, api.TimeoutWarning,
                api.Lifecycle, api.Recovery, api.Notice):
        params = cls.__dataclass_params__
        assert params.frozen and hasattr(cls, "__slots__"), cls.__name__
    chat = api.ChatRef("telegram", "42", "7")
    assert api.ChatRef.from_key(chat.key) == chat
    turn = api.Turn("t1", chat, "hello", "claude")
    try:
        turn.prompt = "changed"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("Turn is mutable")


def test_the_bot_and_a_running_turn_fit_the_protocols_plugins_see() -> None:
    from cadenza.bot import Bot
    from cadenza.turns import TurnRunner

    for protocol, cls in ((api.Bot, Bot), (api.RunningTurn, TurnRunner)):
        wanted = {name for name in vars(protocol) if not name.startswith("_")}
        wanted |= set(getattr(protocol, "__annotations__", {}))
        assert wanted, protocol
        offered = set(dir(cls)) | set(getattr(cls, "__annotations__", {}))
        instance_attrs = {"default_agent", "turn", "last_output_at", "last_output"}
        assert wanted - offered <= instance_attrs, wanted - offered


def test_plugins_and_frontends_touch_no_private_attribute_of_anything_else() -> None:
    """Built-in plugins use only the public surface: no ``x._name`` where x is not self."""
    root = Path(__file__).parent.parent
    found = []
    for base in ("plugins", "frontends"):
        for path in (root / base).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                        and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name)
                                 and node.value.id in ("self", "cls"))):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_plugins_and_frontends_import_only_the_public_api_from_the_core() -> None:
    root = Path(__file__).parent.parent
    internal = []
    for base in ("plugins", "frontends"):
        for path in (root / base).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import)
                         else [])
                for name in names:
                    if name.startswith("cadenza.") and not name.startswith(
                            ("cadenza.api", "cadenza.plugins", "cadenza.frontends")):
                        internal.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    assert internal == []
