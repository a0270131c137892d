"""The plugin API is a promise: its exports change only on purpose, with the version."""

from __future__ import annotations

import dataclasses

import core.api as api


def test_exports_are_pinned() -> None:
    assert api.CADENZA_PLUGIN_API_VERSION == 1
    assert sorted(api.__all__) == sorted([
        "CADENZA_PLUGIN_API_VERSION", "CANCELLED", "COMPLETED", "ERROR", "FAILED", "FOREGROUND",
        "INTERRUPTED", "NOTICE", "SESSION", "STARTED", "TERMINAL_KINDS", "TEXT", "THINKING",
        "TIMED_OUT", "TOOL_RESULT", "TOOL_USE", "USAGE", "Agent", "Bot", "ChatMessage",
        "ChatRef", "CliAgent", "Clock", "ConfigError", "Lifecycle", "Notice", "Parsed", "Parser",
        "PluginContext", "Recovery", "Settings", "StreamEvent", "Store", "TimeoutWarning", "Turn",
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
