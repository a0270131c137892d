"""cadenza-budget in a real Cadenza, through the ``cadenza.testing`` pytest plugin.

The scripted agent costs $0.0123 a turn, so a daily budget of $0.03 is used by the third turn.
The kit's clock starts at 2023-11-14 22:13:20 UTC: the day ends 1 h 46 min later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cadenza.api import ChatRef, ConfigError
from cadenza.testing import CHAT, ManualClock, scripted_agent
from cadenza_budget import is_prompt, money

TURN = 0.0123  # what the scripted agent says each turn cost


def budget_toml(settings: str = "daily_usd = 0.03") -> str:
    """A plugins.toml with the plugin on and the scripted agent, at $0.0123 a turn."""
    return (f"[plugins]\nconsole = false\nbudget = true\n\n{scripted_agent('claude')}\n"
            f"[budget]\n{settings}\n")


async def test_each_turn_tells_what_it_cost_and_what_is_left(cadenza_app) -> None:
    h = await cadenza_app(toml=budget_toml("daily_usd = 5"))
    await h.say("say hi")
    (end,) = await h.frontend.finished()
    assert end.kind == "completed" and end.cost_usd == TURN
    await h.frontend.wait_for(lambda: "💰 $0.0123 this turn · $0.0123 of $5.00 spent today · "
                                      "$4.99 left" in h.frontend.notice_texts())
    await h.say("say again")
    await h.frontend.finished(2)
    await h.frontend.wait_for(lambda: any(
        text.startswith("💰 $0.0123 this turn · $0.0246 of $5.00")
        for text in h.frontend.notice_texts()))


async def test_a_used_budget_refuses_prompts_until_the_day_ends(cadenza_app) -> None:
    clock = ManualClock()
    h = await cadenza_app(toml=budget_toml("daily_usd = 0.03\nwarn_at = 0.5"), clock=clock)
    for turn in range(1, 4):
        await h.say(f"say turn {turn}")
        await h.frontend.finished(turn)
    texts = await h.frontend.wait_for(
        lambda: [t for t in h.frontend.notice_texts() if "$0.0369 of $0.03" in t])
    assert "Today's budget is used: new prompts are refused until 00:00 UTC (in 1 h 46 min)" in (
        texts[0])
    assert any("⚠️ 82% of today's budget is used" in t for t in h.frontend.notice_texts())

    await h.say("say one more")
    refusal = await h.frontend.wait_for(
        lambda: [n for n in h.frontend.notices if n.kind == "refusal"])
    assert refusal[0].chat == CHAT
    assert refusal[0].text == (
        "💸 Today's budget for this chat is used: $0.0369 of $0.03. Prompts are refused until "
        "it resets at 00:00 UTC (in 1 h 46 min); /budget shows the details.")
    # commands still pass, and say where the chat stands
    await h.say("/budget")
    await h.frontend.wait_for(lambda: any(
        t.startswith("💰 Budget today (2023-11-14): $0.0369 of $0.03 spent over 3 turns, $0.00 "
                     "left. The budget used: prompts are refused until it resets at 00:00 UTC")
        for t in h.frontend.notice_texts()))
    assert len(h.frontend.terminals()) == 3  # the refused prompt never ran

    # another chat has its own budget
    other = ChatRef(CHAT.frontend, "chat-2")
    await h.say("say elsewhere", chat=other)
    await h.frontend.finished(4)

    await clock.advance(2 * 3600)  # past midnight UTC: a new day
    await h.say("say a new day")
    (*_, end) = await h.frontend.finished(5)
    assert end.kind == "completed" and end.turn.chat == CHAT
    await h.frontend.wait_for(lambda: any(
        "$0.0123 of $0.03 spent today" in t for t in h.frontend.notice_texts()))


async def test_spending_is_kept_in_the_store_across_a_restart(cadenza_app) -> None:
    h = await cadenza_app(toml=budget_toml("daily_usd = 1"), clock=ManualClock())
    await h.say("say hi")
    await h.frontend.finished()
    await h.frontend.wait_for(lambda: any("💰" in t for t in h.frontend.notice_texts()))
    h = await h.restart()
    await h.say("/budget")
    await h.frontend.wait_for(lambda: any(
        "$0.0123 of $1.00 spent over 1 turn, $0.99 left" in t for t in h.frontend.notice_texts()))


async def test_turns_ending_together_all_count(cadenza_app) -> None:
    h = await cadenza_app(toml=budget_toml("daily_usd = 1"), clock=ManualClock())
    await h.say("/session docs say one")  # a named session's turns count for its chat too
    await h.say("@tests say two")
    await h.say("say three")
    await h.frontend.finished(3)
    await h.frontend.wait_for(lambda: sum("💰" in t for t in h.frontend.notice_texts()) == 3)
    await h.say("/budget")
    await h.frontend.wait_for(lambda: any(
        "$0.0369 of $1.00 spent over 3 turns" in t for t in h.frontend.notice_texts()))


async def test_the_day_ends_at_midnight_in_the_configured_time_zone(cadenza_app) -> None:
    h = await cadenza_app(toml=budget_toml('daily_usd = 1\ntimezone = "Asia/Tokyo"'),
                          clock=ManualClock())
    await h.say("/budget")
    # 22:13:20 UTC is 07:13:20 the next day in Tokyo
    await h.frontend.wait_for(lambda: any(
        t.startswith("💰 Budget today (2023-11-15): $0.00 of $1.00 spent over 0 turns") and
        "resets at 00:00 JST (in 16 h 46 min)" in t for t in h.frontend.notice_texts()))


@pytest.mark.parametrize(("settings", "message"), [
    ('daily_usd = "lots"', "[budget] daily_usd: must be a number, not 'lots'"),
    ("daily_usd = 0", "[budget] daily_usd: must be more than 0, not 0"),
    ("warn_at = 1.5", "[budget] warn_at: must be a share of the budget from 0 to 1, not 1.5"),
    ('timezone = "Mars/Olympus"', "[budget] timezone: unknown time zone 'Mars/Olympus'"),
    ("daily = 5", "[budget] daily: unknown setting (did you mean 'daily_usd'?)"),
])
async def test_bad_settings_are_located_errors(cadenza_app, settings: str, message: str) -> None:
    toml = budget_toml(settings)
    line = toml.splitlines().index(settings) + 1
    with pytest.raises(ConfigError) as error:
        await cadenza_app(toml=toml)
    assert f"plugins.toml:{line}: {message}" in str(error.value)


def test_what_counts_as_a_prompt() -> None:
    assert is_prompt("fix the build") and is_prompt("@docs write it")
    assert is_prompt("/session docs write the changelog")
    assert not is_prompt("/budget") and not is_prompt("/stop") and not is_prompt("/help@bot")
    assert not is_prompt("/session end docs") and not is_prompt("   ")
    assert [money(x) for x in (0, 0.0123, 0.03, 0.005, 0.5, 5, 1234.5)] == [
        "$0.00", "$0.0123", "$0.03", "$0.005", "$0.50", "$5.00", "$1,234.50"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cadenza.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=os.environ, timeout=60)


async def test_status_and_doctor_show_the_budget(cadenza_app, tmp_path: Path) -> None:
    h = await cadenza_app(toml=budget_toml("daily_usd = 0.02"))
    await h.say("say hi")
    await h.say("say again")
    await h.frontend.finished(2)
    await h.frontend.wait_for(lambda: sum("💰" in t for t in h.frontend.notice_texts()) == 2)
    config = tmp_path / "cli.toml"
    config.write_text(budget_toml("daily_usd = 0.02"))
    state = ["--config", str(config), "--state-dir", str(h.state_dir)]

    status = cli("status", "--json", *state, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["budget"]
    assert row["chat"] == CHAT.key and row["turns"] == 2 and row["refusing"] is True
    assert row["spent_usd"] == pytest.approx(2 * TURN) and row["left_usd"] == 0

    doctor = cli("doctor", *state, cwd=tmp_path)
    assert "✓ budget: $0.02 a day per chat, a warning at 80%, days end at midnight UTC" in (
        doctor.stdout)
    config.write_text(budget_toml("warn_at = 2"))
    doctor = cli("doctor", *state, cwd=tmp_path)
    assert doctor.returncode == 2
    assert "✗ plugin budget: configuration error:" in doctor.stdout
    assert "[budget] warn_at: must be a share of the budget from 0 to 1, not 2" in doctor.stdout
