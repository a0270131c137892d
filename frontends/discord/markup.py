"""Discord Markdown for the live-message engine, and the style its views are written in.

Agent Markdown is Discord's own, so it passes through; the only work is keeping a fenced
code block that a cut splits in two shown as code in both messages (closed at the end of one,
reopened with its language at the start of the next). Plain text (notices, labels) is escaped
so it shows as written. Mentions are not escaped here: every call sends
``allowed_mentions`` none, so ``@everyone`` in agent output stays text.

Discord counts a message's 2,000 characters in code points, Markdown included. No discord.py
here: the plugin builds views before it connects.
"""

from __future__ import annotations

import re

from cadenza.frontends.live import views
from cadenza.frontends.live.split import CODEPOINTS

MAX_MESSAGE = 2000
# the engine cuts plain text to the style's length; markup adds escapes and reopened fences,
# so the style keeps headroom below Discord's limit (the transport checks the real one)
STYLE_LENGTH = 1900
_ESCAPE = re.compile(r"([\\*_~`|])")
_LINE_START = re.compile(r"^([>#\-])", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*```([\w+\-.#]*)", re.MULTILINE)


class DiscordMarkdown:
    """The engine's ``Markup`` for Discord."""

    def escape(self, text: str) -> str:
        return _LINE_START.sub(r"\\\1", _ESCAPE.sub(r"\\\1", text))

    def render(self, source: str, code: str | None) -> tuple[str, str | None]:
        state = code
        for match in _FENCE.finditer(source):
            state = None if state is not None else match.group(1)
        head = f"```{code}\n" if code is not None else ""
        tail = "\n```" if state is not None else ""
        return head + source + tail, state

    def bold(self, markup: str) -> str:
        return f"**{markup}**" if markup else markup

    def italic(self, markup: str) -> str:
        return f"*{markup}*" if markup.strip() else markup


MARKDOWN = DiscordMarkdown()
STYLE = views.Style(MARKDOWN, STYLE_LENGTH, CODEPOINTS)
