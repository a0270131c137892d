"""The bot token stays secret (issue 13): it can live in a file (``token_file``) instead of the
environment, and nothing Cadenza prints shows it, ``cadenza doctor`` included, even when an
aiohttp error puts the request URL (which holds the token) in its message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import test_telegram
from cadenza.config import Config, ConfigError
from cadenza.frontends.telegram.settings import TelegramSettings
from test_telegram import DONE, USER, containing

from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramServer

pytestmark = pytest.mark.usefixtures("agent_path")
server = test_telegram.server
SECRET = DEFAULT_TOKEN.split(":")[1]


def read(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> TelegramSettings:
    path = tmp_path / "conf" / "plugins.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("[telegram]\nallowed_users = [1]\n" + body)
    return TelegramSettings.read(Config.load(path).settings("telegram"), env or {})


def test_token_file_is_read_beside_the_config_stripped_and_checked(tmp_path: Path) -> None:
    secrets = tmp_path / "conf" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "bot.token").write_text(f"\n  {DEFAULT_TOKEN}  \n")
    settings = read(tmp_path, 'token_file = "secrets/bot.token"\n')
    assert settings.token == DEFAULT_TOKEN
    assert settings.token_source == str(secrets / "bot.token")
    assert DEFAULT_TOKEN not in repr(settings)
    absolute = read(tmp_path, f'token_file = "{secrets / "bot.token"}"\n')
    assert absolute.token == DEFAULT_TOKEN
    with pytest.raises(ConfigError, match=r":3: \[telegram\] token_file: cannot read the bot "
                       r"token from .*missing.token: No such file"):
        read(tmp_path, 'token_file = "missing.token"\n')
    with pytest.raises(ConfigError, match=r"cannot read the bot token from .*secrets"):
        read(tmp_path, 'token_file = "secrets"\n')  # a directory
    (secrets / "empty").write_text(" \n")
    with pytest.raises(ConfigError, match="empty is empty; put the bot token from @BotFather"):
        read(tmp_path, 'token_file = "secrets/empty"\n')
    (secrets / "wrong").write_text("not-a-token-but-a-secret\n")
    with pytest.raises(ConfigError, match="does not hold a bot token") as wrong:
        read(tmp_path, 'token_file = "secrets/wrong"\n')
    assert "not-a-token-but-a-secret" not in str(wrong.value)
    with pytest.raises(ConfigError, match="set either token_file or token_env, not both"):
        read(tmp_path, 'token_env = "MY_TOKEN"\ntoken_file = "secrets/bot.token"\n',
             {"MY_TOKEN": DEFAULT_TOKEN})
    with pytest.raises(ConfigError, match=r"TELEGRAM_BOT_TOKEN is not set.*or set token_file"):
        read(tmp_path, "")


async def test_a_bot_runs_on_a_token_file(server: FakeTelegramServer, start_app, tmp_path,
                                          monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    (tmp_path / "bot.token").write_text(DEFAULT_TOKEN + "\n")
    h = await start_app(test_telegram.config(server, token_file='"bot.token"'))
    server.push_text(USER, USER, "say from a token file")
    await server.wait_for(containing(server, USER, DONE), 15)
    assert server.tokens_seen == {DEFAULT_TOKEN}
    assert h.recorder.terminals()[0].kind == "completed"
    assert SECRET not in caplog.text  # aiogram logs its requests' URLs at debug level


@pytest.mark.parametrize("api_base", ["http://127.0.0.1:1", "http://127.0.0.1:99999"])
@pytest.mark.parametrize("source", ["env", "file"])
def test_doctor_never_prints_the_token(run_cli, tmp_path: Path, api_base: str,
                                       source: str) -> None:
    table = f'allowed_users = [1]\napi_base = "{api_base}"\n'
    env = {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN}
    if source == "file":
        (tmp_path / "bot.token").write_text(DEFAULT_TOKEN)
        table += 'token_file = "bot.token"\n'
        env = {"TELEGRAM_BOT_TOKEN": ""}
    (tmp_path / "plugins.toml").write_text(
        "[plugins]\nconsole = false\ntelegram = true\n[telegram]\n" + table)
    done = run_cli("doctor", env=env, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"✗ telegram: cannot reach {api_base}" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    where = str(tmp_path / "bot.token") if source == "file" else "$TELEGRAM_BOT_TOKEN"
    assert f"✓ telegram: bot token found in {where}" in done.stdout


def test_the_token_is_a_secret_from_the_moment_it_is_read(tmp_path: Path) -> None:
    from cadenza.secrets import (
        redact,  # what every log handler and stored problem text goes through
    )

    from_env = "987654321:AAFromTheEnvironmentForTheRedactionTest"
    from_file = "987654322:AAFromAFileForTheRedactionTest"
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "bot.token").write_text(from_file)
    read(tmp_path, "", {"TELEGRAM_BOT_TOKEN": from_env})
    read(tmp_path, 'token_file = "bot.token"\n')
    assert redact(f"GET /bot{from_env}/getMe, /bot{from_file}/getMe") == (
        "GET /bot[redacted]/getMe, /bot[redacted]/getMe")
