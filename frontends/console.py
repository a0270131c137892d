"""The console frontend: prompts from stdin, the turn's stream on stdout.

Works with a terminal or a pipe. At the end of input it waits for running turns, then stops
Cadenza when it is the only frontend (``[console] stop_on_eof``, default: when Telegram and
Discord are off), so ``echo prompt | cadenza run`` runs one prompt and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
import threading
from typing import TextIO

from cadenza import api
from cadenza.api import (
    Bot,
    ChatMessage,
    ChatRef,
    Lifecycle,
    Notice,
    PluginContext,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    hookimpl,
)
from cadenza.frontends.text import lifecycle_text, outcome_text, recovery_text, warning_text

CHAT = ChatRef("console", "local")
_OTHER_FRONTENDS = ("telegram", "discord")


class ConsoleFrontend:
    def __init__(self, context: PluginContext, stdin: TextIO | None = None,
                 stdout: TextIO | None = None) -> None:
        settings = context.settings
        settings.reject_unknown(["stop_on_eof"])
        switches = context.config.switches()
        only_frontend = not any(switches.get(name) for name in _OTHER_FRONTENDS)
        self.stop_on_eof = settings.get("stop_on_eof", only_frontend, bool)
        self.log = context.log
        self.stdin = stdin or _lenient(sys.stdin)
        self.out = stdout or sys.stdout
        self._bot: Bot | None = None
        self._reader: asyncio.Task[None] | None = None
        self._line_open = False  # the last thing written ended mid-line
        self._writing_turn: str | None = None
        # turn id → the text chunks shown, so the outcome line does not repeat an error
        self._shown: dict[str, list[str]] = {}

    # --- input ------------------------------------------------------------------

    @hookimpl
    def on_start(self, bot: Bot) -> None:
        self._bot = bot
        self._reader = asyncio.ensure_future(self._read_input(bot))

    async def _read_input(self, bot: Bot) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            # A thread, not add_reader: stdin may be a regular file, where selectors fail.
            try:
                for line in self.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            except (OSError, ValueError) as exc:
                self.log.warning("console input closed: %s", exc)
            finally:
                loop.call_soon_threadsafe(lines.put_nowait, None)

        if _is_terminal(self.stdin):
            self._say("Type a prompt for the agent; /help lists the commands, Ctrl-D ends.")
        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        while (line := await lines.get()) is not None:
            text = line.rstrip("\n")
            if text.strip():
                await bot.handle(ChatMessage(CHAT, "local", text, user_name="console"))
        await bot.idle()
        if self.stop_on_eof:
            bot.request_stop()

    @hookimpl
    async def on_shutdown(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._finish_line()

    # --- output -----------------------------------------------------------------

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass  # stdout closed (a pipe reader went away): nothing to show it to

    def _finish_line(self) -> None:
        if self._line_open:
            self._write("\n")
            self._line_open = False

    def _say(self, text: str) -> None:
        self._finish_line()
        self._writing_turn = None
        self._write(text + "\n")

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        turn = event.turn
        if turn.chat.frontend != CHAT.frontend:
            return
        label = f"[{turn.session}] " if turn.session else ""
        kind = event.kind
        if kind == api.TEXT:
            if self._writing_turn != turn.id:
                self._finish_line()
                self._writing_turn = turn.id
                if label:
                    self._write(label)
            text = event.text.lstrip("\n") if not self._line_open else event.text
            if label:  # label every line that has something on it
                text = re.sub(r"\n(?=[^\n])", "\n" + label, text)
            self._write(text)
            self._line_open = not event.text.endswith("\n")
            self._shown.setdefault(turn.id, []).append(event.text)
        elif kind == api.TOOL_USE:
            self._say(f"{label}⚙ {event.text}")
        elif kind == api.TOOL_RESULT:
            mark = "✗" if event.data.get("is_error") else "↳"
            self._say(f"{label}  {mark} {event.text}")
        elif kind in (api.NOTICE, api.ERROR):
            self._say(f"{label}! {event.text}")
            self._shown.setdefault(turn.id, []).append(event.text)
        elif kind.startswith("timeout_"):
            if event.text:
                self._say(f"{label}{event.text}")
        elif event.terminal:
            shown = "".join(self._shown.pop(turn.id, ()))
            self._say(label + outcome_text(event, shown))
            if event.data.get("output_file"):
                self._say(f"{label}The whole answer is in {event.data['output_file']}")

    @hookimpl
    def authorize(self, chat: ChatRef, user_id: str) -> bool | None:
        # whoever can type into this terminal runs the agent already
        return True if chat.frontend == CHAT.frontend else None

    @hookimpl
    def on_timeout_warning(self, warning: TimeoutWarning) -> None:
        if warning.turn.chat.frontend == CHAT.frontend:
            self._say(warning_text(warning))

    @hookimpl
    def on_startup_lifecycle(self, lifecycle: Lifecycle) -> None:
        self._say(lifecycle_text(lifecycle))

    @hookimpl
    def on_recover(self, recovery: Recovery) -> None:
        if recovery.turn.chat.frontend == CHAT.frontend:
            self._say(recovery_text(recovery))

    @hookimpl
    def on_notice(self, notice: Notice) -> None:
        if notice.chat.frontend == CHAT.frontend:
            # a file cannot be shown here: its path is (the text is its caption)
            paths = [f"📎 {path}" for path in notice.files]
            self._say("\n".join(filter(None, [notice.text, *paths])))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _lenient(stream: TextIO) -> TextIO:
    """Undecodable bytes on stdin become U+FFFD instead of ending the console's input."""
    if isinstance(stream, io.TextIOWrapper):
        with contextlib.suppress(ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="replace")
    return stream
