"""The stable public API for Cadenza plugins: import from here, and only from here.

Everything else in ``core`` is internal and may change between releases. A plugin is a class
taking a ``PluginContext`` (or a module) whose methods are marked with ``@hookimpl`` and named
after the hooks in ``core.hookspecs``; it is installed through the ``cadenza`` entry-point group.
"""

from core.agents import Agent, CliAgent, Parsed, Parser
from core.bot import Bot
from core.clock import Clock
from core.config import ConfigError, Settings
from core.events import (
    CANCELLED,
    COMPLETED,
    ERROR,
    FAILED,
    FOREGROUND,
    INTERRUPTED,
    NOTICE,
    SESSION,
    STARTED,
    TERMINAL_KINDS,
    TEXT,
    THINKING,
    TIMED_OUT,
    TOOL_RESULT,
    TOOL_USE,
    USAGE,
    ChatMessage,
    ChatRef,
    Lifecycle,
    Notice,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    Turn,
)
from core.formatting import duration, first_line, footer
from core.hookspecs import hookimpl
from core.plugins import PluginContext
from core.process import withhold_from_agents
from core.secrets import redact, register_secret
from core.state import Store

CADENZA_PLUGIN_API_VERSION = 1

__all__ = [
    "CADENZA_PLUGIN_API_VERSION",
    "CANCELLED",
    "COMPLETED",
    "ERROR",
    "FAILED",
    "FOREGROUND",
    "INTERRUPTED",
    "NOTICE",
    "SESSION",
    "STARTED",
    "TERMINAL_KINDS",
    "TEXT",
    "THINKING",
    "TIMED_OUT",
    "TOOL_RESULT",
    "TOOL_USE",
    "USAGE",
    "Agent",
    "Bot",
    "ChatMessage",
    "ChatRef",
    "CliAgent",
    "Clock",
    "ConfigError",
    "Lifecycle",
    "Notice",
    "Parsed",
    "Parser",
    "PluginContext",
    "Recovery",
    "Settings",
    "Store",
    "StreamEvent",
    "TimeoutWarning",
    "Turn",
    "duration",
    "first_line",
    "footer",
    "hookimpl",
    "redact",
    "register_secret",
    "withhold_from_agents",
]
