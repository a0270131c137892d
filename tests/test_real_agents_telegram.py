"""Real agents through the Telegram frontend: Telegram fake → Cadenza → real CLI → fake model.

The real App runs in-process with the Telegram frontend on, its ``api_base`` pointed at
``FakeTelegramServer`` (real aiogram, real sockets), and the agent set to the pinned Claude
Code or Codex CLI (tests/fakes/agent_clis.py), whose model API is ``FakeModelAPI``. An update
from an allowed user carries a fake-model script as its prompt; the test waits on the fake
Telegram server's state and asserts on what the chat saw.

Containment: Cadenza starts each agent with its own ``os.environ`` under the ``[agent.NAME]
env`` of plugins.toml. Here that process environment is cut down to PATH, a scratch HOME, LANG
and the fake bot token for the test's duration, the way test_real_agents.py starts ``cadenza
run`` from an empty environment; the agent's contained environment (scratch HOME and
CODEX_HOME, the fake's base URL, a dummy key, the proxy variables pointing at the fake,
NO_PROXY) comes through plugins.toml, and blanks every credential variable besides, in case
one slips into the process environment anyway.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_real_agents import AGENTS, ModelAPI, binary

from tests.fakes.agent_clis import base_env, claude_args, claude_env, codex_config_args, codex_env
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer, StoredMessage

pytestmark = pytest.mark.agent_cli

USER = 42
DONE = "✅ done"
TELEGRAM = {  # paces shrunk as in test_telegram.py: Telegram's limits only slow a test down
    "edit_interval": "0.05", "group_messages_per_minute": "1200", "messages_per_second": "200",
    "request_timeout": "2", "poll_timeout": "1", "backoff_min": "0.05", "backoff_max": "0.3",
    "flush_timeout": "3",
}
# Credentials the CLIs (or anything they start) read; blanked in the agent's environment.
CREDENTIALS = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY",
    "CODEX_API_KEY", "TELEGRAM_BOT_TOKEN",
)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.I)


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    return {}


@pytest.fixture
def model() -> Iterator[ModelAPI]:
    with ModelAPI().in_thread() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(max_poll_wait=0.5) as fake:
        yield fake


def agent_env(agent: str, base_url: str, home: Path, outside: dict[str, str]) -> dict[str, str]:
    """The agent's contained environment, every credential of ``outside`` blanked."""
    contained = (claude_env if agent == "claude" else codex_env)(base_url, home)
    blanks = {name: "" for name in [*CREDENTIALS, *filter(SECRET_NAME.search, outside)]}
    return {**blanks, **contained}


def plugins_toml(agent: str, cli: Path, project: Path, env: dict[str, str],
                 telegram: FakeTelegramServer, base_url: str) -> str:
    args = claude_args() if agent == "claude" else codex_config_args(base_url)
    table = ", ".join(f"{json.dumps(key)} = {json.dumps(value)}" for key, value in env.items())
    settings = {"api_base": json.dumps(telegram.base_url), "allowed_users": f"[{USER}]",
                **TELEGRAM}
    return (
        "[plugins]\nconsole = false\ntelegram = true\n\n"
        f'[agent]\ndefault = "{agent}"\nworkdir = {json.dumps(str(project))}\n\n'
        f"[agent.{agent}]\nbinary = {json.dumps(str(cli))}\nargs = {json.dumps(args)}\n"
        f"env = {{ {table} }}\n\n"
        "[telegram]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    )


def edits_showing(telegram: FakeTelegramServer, message: StoredMessage, needle: str) -> list[Any]:
    return [call for call in telegram.calls_to("editMessageText")
            if call.ok and call.params.get("message_id") == message.message_id
            and needle in call.params.get("text", "")]


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_streamed_answer_with_a_tool_call_reaches_telegram(
        agent: str, binaries: dict[str, Path], model: ModelAPI,
        telegram: FakeTelegramServer, start_app: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cli = binary(binaries, agent)  # before the environment is cut down: npm needs HOME
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = agent_env(agent, model.base_url, home, dict(os.environ))
    for name in list(os.environ):  # Cadenza's own environment, from nothing
        monkeypatch.delenv(name)
    for name, value in {**base_env(home), "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN}.items():
        monkeypatch.setenv(name, value)
    h = await start_app(plugins_toml(agent, cli, project, env, telegram, model.base_url))

    telegram.push_text(USER, USER, "tick 3 0.3 part; tool echo hi; sleep 0.4; say final")
    await telegram.wait_for(lambda: any(DONE in m.text for m in telegram.bot_messages(USER)),
                            timeout=20)

    (message,) = telegram.bot_messages(USER)  # one live message, edited as the answer came
    answer = "part 1\n\npart 2\n\npart 3\n\nfinal"
    body, _, outcome = message.text.rpartition("\n\n")
    assert body == answer, message.history
    assert outcome.startswith(DONE), message.text
    assert message.reply_markup is None  # the Stop button went with the end
    history = message.history
    assert history[0] == "⏳ working…"
    # intermediate states, in order, each the answer so far over the activity line
    firsts = [next(i for i, text in enumerate(history) if part in text)
              for part in ("part 1", "part 2", "part 3", "final")]
    assert firsts == sorted(firsts) and len(set(firsts)) == 4, history
    assert any(text.startswith("part 1") and "part 3" not in text and DONE not in text
               for text in history), history
    # the tool call as one compact activity line under the text, gone once the text goes on
    call = "Bash: echo hi" if agent == "claude" else "shell: /bin/bash -lc 'echo hi'"
    assert any(text.endswith(f"part 3\n\n⚙ {call}") for text in history), history
    assert "⚙" not in message.text and "\nhi\n" not in message.text
    # streamed as the model produced it: part 1 was shown while part 3 was 0.6 s away
    first, third = (edits_showing(telegram, message, part)[0] for part in ("part 1", "part 3"))
    assert third.at - first.at >= 0.5, (first.at, third.at)
    (end,) = h.recorder.terminals()
    assert end.kind == "completed" and end.turn.prompt.startswith("tick 3")
    remote = [(r.method, r.host, r.path) for r in model.remote_requests()]
    assert remote == [], f"the {agent} CLI tried to reach other hosts: {remote}"
