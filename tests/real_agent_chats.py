"""Real agents behind a chat frontend: what test_real_agents_telegram.py and
test_real_agents_discord.py share.

The real App runs in-process with one chat frontend on, its ``api_base`` pointed at that
platform's fake, and the agent set to the pinned Claude Code or Codex CLI
(tests/fakes/agent_clis.py), whose model API is ``FakeModelAPI``. A message from an allowed
user carries a fake-model script as its prompt; the test waits on the fake platform's state
and asserts on what the chat saw.

Containment (``contain``): Cadenza starts each agent with its own ``os.environ`` under the
``[agent.NAME] env`` of plugins.toml. Here that process environment is cut down to PATH, a
scratch HOME, LANG and the fake bot token for the test's duration, the way
test_real_agents.py starts ``cadenza run`` from an empty environment; the agent's contained
environment (scratch HOME and CODEX_HOME, the fake's base URL, a dummy key, the proxy
variables pointing at the fake, NO_PROXY) comes through plugins.toml, and blanks every
credential variable besides, in case one slips into the process environment anyway.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_real_agents import ModelAPI, binary

from tests.fakes.agent_clis import base_env, claude_args, claude_env, codex_config_args, codex_env

DONE = "✅ done"
# Credentials the CLIs (or anything they start) read; blanked in the agent's environment.
CREDENTIALS = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY",
    "CODEX_API_KEY", "TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.I)

# One answer streamed in parts, a tool call between them, a pause, the last part.
STREAMED_PROMPT = "tick 3 0.3 part; tool echo hi; sleep 0.4; say final"
STREAMED_ANSWER = "part 1\n\npart 2\n\npart 3\n\nfinal"
STREAMED_PARTS = ("part 1", "part 2", "part 3", "final")


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """Filled on first use, so a claude-only run does not install codex."""
    return {}


@pytest.fixture
def model() -> Iterator[ModelAPI]:
    with ModelAPI().in_thread() as api:
        yield api


def agent_env(agent: str, base_url: str, home: Path, outside: dict[str, str]) -> dict[str, str]:
    """The agent's contained environment, every credential of ``outside`` blanked."""
    contained = (claude_env if agent == "claude" else codex_env)(base_url, home)
    blanks = {name: "" for name in [*CREDENTIALS, *filter(SECRET_NAME.search, outside)]}
    return {**blanks, **contained}


@dataclass(frozen=True)
class ContainedAgent:
    """A pinned CLI set up to run offline against the fake model, and the plugins.toml that
    runs it behind a chat frontend."""

    agent: str
    cli: Path
    project: Path
    env: dict[str, str]
    model_url: str

    def plugins_toml(self, frontend: str, settings: dict[str, str]) -> str:
        """``settings`` are the frontend's table, values already in TOML."""
        args = claude_args() if self.agent == "claude" else codex_config_args(self.model_url)
        table = ", ".join(f"{json.dumps(key)} = {json.dumps(value)}"
                          for key, value in self.env.items())
        return (
            f"[plugins]\nconsole = false\n{frontend} = true\n\n"
            f'[agent]\ndefault = "{self.agent}"\nworkdir = {json.dumps(str(self.project))}\n\n'
            f"[agent.{self.agent}]\nbinary = {json.dumps(str(self.cli))}\n"
            f"args = {json.dumps(args)}\nenv = {{ {table} }}\n\n"
            f"[{frontend}]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )


def contain(agent: str, binaries: dict[str, Path], model: ModelAPI, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, token: tuple[str, str]) -> ContainedAgent:
    """Install (or find) the CLI, then cut this process's environment down to PATH, a
    scratch HOME, LANG and ``token`` (variable, value): the bot's own."""
    cli = binary(binaries, agent)  # before the environment is cut down: npm needs HOME
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = agent_env(agent, model.base_url, home, dict(os.environ))
    for name in list(os.environ):  # Cadenza's own environment, from nothing
        monkeypatch.delenv(name)
    for name, value in {**base_env(home), token[0]: token[1]}.items():
        monkeypatch.setenv(name, value)
    return ContainedAgent(agent, cli, project, env, model.base_url)


def tool_line(agent: str) -> str:
    """How the activity line shows the STREAMED_PROMPT's tool call."""
    call = "Bash: echo hi" if agent == "claude" else "shell: /bin/bash -lc 'echo hi'"
    return f"⚙ {call}"


def plain(line: str) -> str:
    return line


def assert_streamed_answer(agent: str, history: list[str], final: str,
                           first_shown: Callable[[str], float],
                           activity: Callable[[str], str] = plain) -> None:
    """The STREAMED_PROMPT's answer as one live message: ``history`` its text after the send
    and each edit, ``final`` what it shows at the end, ``first_shown(part)`` when (in
    seconds) an edit first showed ``part``; ``activity(line)`` is an activity line in the
    platform's markup (Telegram's text carries none, its entities style it)."""
    body, _, outcome = final.rpartition("\n\n")
    assert body == STREAMED_ANSWER, history
    assert outcome.startswith(DONE), final
    assert history[0].endswith(activity("⏳ working…")), history  # at once, text or not
    # intermediate states, in order, each the answer so far over the activity line
    firsts = [next(i for i, text in enumerate(history) if part in text)
              for part in STREAMED_PARTS]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(STREAMED_PARTS), history
    assert any(text.startswith("part 1") and "part 3" not in text and DONE not in text
               for text in history), history
    # the tool call as one compact activity line under the text, gone once the text goes on
    tool = activity(tool_line(agent))
    assert any(text.endswith(f"part 3\n\n{tool}") for text in history), history
    assert "⚙" not in final and "\nhi\n" not in final
    # streamed as the model produced it: part 1 was shown while part 3 was 0.6 s away
    assert first_shown("part 3") - first_shown("part 1") >= 0.5, history


def assert_offline(model: ModelAPI, agent: str) -> None:
    remote = [(r.method, r.host, r.path) for r in model.remote_requests()]
    assert remote == [], f"the {agent} CLI tried to reach other hosts: {remote}"
