"""The stable public API for Cadenza plugins: import from here, and only from here.

Everything else in ``core`` is internal and may change between releases. A plugin is a class
taking a ``PluginContext`` (or a module) whose methods are marked with ``@hookimpl`` and named
after the hooks in ``cadenza.hookspecs``; it is installed through the ``cadenza`` entry-point group.
"""

from cadenza.agents import Agent, CliAgent, Parsed, Parser
from cadenza.clock import Clock
from cadenza.config import Config, ConfigError, Settings
from cadenza.events import (
    APPROVAL,
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
    ApprovalRequest,
    Attachment,
    ChatMessage,
    ChatRef,
    Lifecycle,
    Notice,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    Turn,
)
from cadenza.formatting import duration, first_line, footer
from cadenza.hookspecs import hookimpl
from cadenza.loader import PluginContext
from cadenza.process import Launch, withhold_from_agents
from cadenza.protocols import Bot, RunningTurn
from cadenza.secrets import redact, register_secret
from cadenza.state import Store

CADENZA_PLUGIN_API_VERSION = 1

__all__ = [
    "APPROVAL",
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
    "ApprovalRequest",
    "Attachment",
    "Bot",
    "ChatMessage",
    "ChatRef",
    "CliAgent",
    "Clock",
    "Config",
    "ConfigError",
    "Launch",
    "Lifecycle",
    "Notice",
    "Parsed",
    "Parser",
    "PluginContext",
    "Recovery",
    "RunningTurn",
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
