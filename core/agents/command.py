"""The ``command`` agent: any program; each stdout line is answer text, the exit code decides.

The prompt goes where ``{prompt}`` is in the argv template (such a program cannot be assumed
to read stdin, which is /dev/null). When the template ends with ``{prompt}`` as an argument of
its own after a program or subcommand (``["llm", "{prompt}"]``), a prompt that starts with
``-`` gets ``--`` before it, so that it is not read as an option. After an option, as in the
default ``sh -c {prompt}``, the prompt is that option's value (the script ``sh`` runs) and is
left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from cadenza import events
from cadenza.agents import NO_DATA, Parsed, exit_outcome
from cadenza.config import Settings

DEFAULT_COMMAND = ["sh", "-c", "{prompt}"]


class CommandAgent:
    name = "command"

    stdin_prompt = False

    def __init__(self, template: list[str], extra_env: Mapping[str, str] | None = None,
                 contain: bool = True) -> None:
        self.template = template
        self.binary = template[0]
        self.extra_env = dict(extra_env or {})
        self.contain = contain

    @classmethod
    def from_settings(cls, settings: Settings) -> CommandAgent:
        template = settings.strings("command", DEFAULT_COMMAND)
        if not template:
            raise settings.error("command", "must name a program")
        if not any("{prompt}" in part for part in template):
            raise settings.error("command", "must contain {prompt} where the prompt goes")
        return cls(template, contain=settings.get("contain", True, bool))

    def argv(self, prompt: str, resume_id: str | None) -> list[str]:
        # replace, not format: a prompt or template with braces must not break
        line = [part.replace("{prompt}", prompt) for part in self.template]
        if prompt.startswith("-") and self._prompt_is_an_operand():
            line.insert(len(line) - 1, "--")
        return line

    def _prompt_is_an_operand(self) -> bool:
        """The template ends with ``{prompt}`` on its own, after no option and no ``--``."""
        *before, last = self.template
        return (last == "{prompt}" and bool(before) and "--" not in before
                and not before[-1].startswith("-"))

    def env(self) -> Mapping[str, str]:
        return self.extra_env

    def supports_resume(self) -> bool:
        return False

    def parser(self) -> CommandParser:
        return CommandParser()


class CommandParser:
    def feed(self, line: str) -> list[Parsed]:
        return [Parsed(events.TEXT, line + "\n", NO_DATA)]

    def outcome(self, exit_code: int) -> Parsed:
        return exit_outcome(exit_code)
