"""The Telegram frontend: the real aiogram client, over real sockets, against the fake Bot API.

Every test runs the real App with the fake agent and points ``[telegram] api_base`` at
``tests/fakes/telegram_api.py``; updates are pushed to the fake and the tests wait on the
fake's state. Timing settings are shrunk so the whole file stays fast.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageText
from cadenza.api import ChatRef, Recovery, StreamEvent, Turn
from cadenza.config import Config, ConfigError
from cadenza.frontends.live.pacing import Bucket
from cadenza.frontends.live.split import clean, cut_point, split, utf16_len
from cadenza.frontends.live.transport import Gone, Outgoing
from cadenza.frontends.telegram import inbound as inbound_module
from cadenza.frontends.telegram.client import Redact
from cadenza.frontends.telegram.egress import Api, classify
from cadenza.frontends.telegram.markup import to_html
from cadenza.frontends.telegram.settings import TelegramSettings
from cadenza.frontends.telegram.views import TEXT_BUDGET, TurnView
from cadenza.testing.fake_agent import big_text
from conftest import agent_config

from tests.fakes.telegram_api import (
    DEFAULT_TOKEN,
    NOT_MODIFIED,
    FakeTelegramServer,
    Fault,
    StoredMessage,
    parse_text,
)

pytestmark = pytest.mark.usefixtures("agent_path")

USER = 42
STRANGER = 777
GROUP = -1001234567890
DONE = "✅ done"
FAST = {  # Telegram's pace is tested with the limits enforced; elsewhere it only slows tests
    "edit_interval": "0.05", "group_messages_per_minute": "1200", "messages_per_second": "200",
    "request_timeout": "2", "poll_timeout": "1", "backoff_min": "0.05", "backoff_max": "0.3",
    "flush_timeout": "3",
}


def config(server: FakeTelegramServer, tables: str = "", **telegram: str) -> str:
    """plugins.toml with the fake agent, Telegram on and pointed at ``server``; ``telegram``
    overrides keys of the [telegram] table (values are TOML)."""
    switches = "console = false\ntelegram = true"
    values = {"api_base": f'"{server.base_url}"', "allowed_users": f"[{USER}]", **FAST,
              **telegram}
    table = "".join(f"{key} = {value}\n" for key, value in values.items())
    return agent_config("claude").replace("console = false", switches) + tables + (
        "\n[telegram]\n" + table)


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(max_poll_wait=0.5) as fake:
        yield fake


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN)
    return DEFAULT_TOKEN


@pytest.fixture
def start(server: FakeTelegramServer, token: str, start_app: Any) -> Callable[..., Any]:
    """Start the app against ``server`` (which outlives it: fixtures tear down in reverse)."""

    async def go(tables: str = "", **telegram: str) -> Any:
        return await start_app(config(server, tables, **telegram))

    return go


def containing(server: FakeTelegramServer, chat: int, needle: str) -> Callable[[], Any]:
    """A wait_for predicate: the bot's message in ``chat`` whose text contains ``needle``."""

    def find() -> StoredMessage | None:
        return next((m for m in server.bot_messages(chat) if needle in m.text), None)

    return find


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """For conditions nothing signals (log lines): check every few milliseconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def buttons(message: StoredMessage) -> list[str]:
    return [button["callback_data"] for button in message.buttons]


def strip_outcome(text: str) -> str:
    body, _, outcome = text.rpartition("\n\n")
    assert outcome.startswith(DONE), text[-200:]
    return body


# --------------------------------------------------------------------------- streaming


async def test_prompt_streams_into_one_live_message_and_ends_complete(start, server) -> None:
    h = await start()
    server.push_text(USER, USER, "sleep 0.3; tick 5 0.1 part")  # quiet at first: "typing"
    final = await server.wait_for(containing(server, USER, DONE), 15)
    (message,) = server.bot_messages(USER)
    assert message is final
    parts = "\n\n".join(f"part {i}" for i in range(1, 6))
    assert strip_outcome(message.text) == parts
    assert message.history[0] == "⏳ working…"
    assert any(text.startswith("part 1") and DONE not in text for text in message.history)
    assert len(message.history) <= 8  # coalesced: at most one edit per text event and the end
    (turn,) = {event.turn for event in h.recorder.events}
    assert turn.prompt == "sleep 0.3; tick 5 0.1 part"
    assert turn.chat == ChatRef("telegram", str(USER))
    first_send = server.calls_to("sendMessage")[0]
    assert first_send.params["reply_markup"]["inline_keyboard"] == [
        [{"text": "⏹ Stop", "callback_data": f"stop:{turn.id}"}]]
    assert message.reply_markup is None  # no Stop button once it ended
    assert (USER, "typing") in server.chat_actions
    assert {"stop", "new", "status", "help"} <= {c["command"] for c in server.commands()}
    (webhook,) = server.calls_to("deleteWebhook")
    assert not webhook.params.get("drop_pending_updates")


async def test_a_20000_character_answer_is_split_in_order_and_complete(start, server) -> None:
    await start()
    server.push_text(USER, USER, "big 20000")
    await server.wait_for(containing(server, USER, DONE), 15)
    messages = server.bot_messages(USER)
    assert len(messages) >= 5
    assert [m.message_id for m in messages] == sorted(m.message_id for m in messages)
    assert all(utf16_len(m.text) <= 4096 for m in messages)
    assert all(m.reply_markup is None for m in messages)
    assert DONE in messages[-1].text and not any(DONE in m.text for m in messages[:-1])
    # cut at line ends: Telegram trims the newline at each cut, so rejoin with one
    texts = [m.text for m in messages]
    texts[-1] = strip_outcome(texts[-1])
    assert "\n".join(texts) == big_text(20000)


async def test_formatting_is_escaped_code_stays_code_and_refusals_fall_back(
        start, server) -> None:
    await start()
    prompt = ("say ## Result; say **Bold** <b>not a tag</b> & `a<b` and _it_ "
              "[docs](https://example.com/?a=1&b=2); say ```python; say if a < b: print('&');"
              " say ```")
    server.push_text(USER, USER, prompt)
    message = await server.wait_for(containing(server, USER, DONE), 15)
    assert message.text.startswith("Result\n\nBold <b>not a tag</b> & a<b and it docs\n")
    assert "\nif a < b: print('&')\n" in message.text and "```" not in message.text
    kinds = {(e["type"], e.get("language") or e.get("url")) for e in message.entities}
    assert {("bold", None), ("code", None), ("italic", None), ("pre", "python"),
            ("text_link", "https://example.com/?a=1&b=2")} <= kinds
    # Telegram refusing the markup (it should not happen) costs formatting, not the answer
    for method in ("sendMessage", "editMessageText"):
        server.fail_next(method, Fault.bad_request(
            'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0'))
    server.push_text(USER, USER, "say **second** answer")
    plain = await server.wait_for(containing(server, USER, "second"), 15)
    plain = await server.wait_for(lambda: DONE in plain.text and plain, 15)
    assert plain.text.startswith("**second** answer") and plain.parse_mode is None


async def test_tool_use_shows_compactly_and_sessions_are_labelled(start, server) -> None:
    await start()
    server.push_text(USER, USER, "say looking; tool echo hi; sleep 0.3; say found it")
    final = await server.wait_for(containing(server, USER, DONE), 15)
    assert any("⚙ Bash: echo hi" in text for text in final.history)
    assert strip_outcome(final.text) == "looking\n\nfound it"
    server.push_text(USER, USER, "/session work say in the background")
    labelled = await server.wait_for(containing(server, USER, "[work]"), 15)
    await server.wait_for(lambda: DONE in labelled.text, 15)
    assert labelled.text.startswith("[work]\nin the background")
    assert {"type": "bold", "offset": 0, "length": 6} in labelled.entities


async def test_anything_the_agent_prints_is_delivered(start, server) -> None:
    await start()
    emoji = "😀" * 2500  # 5,000 UTF-16 code units: two messages, cut by Telegram's count
    server.push_text(USER, USER, f"say {emoji}; garbage; say <<&&>> ```unclosed **x")
    final = await server.wait_for(containing(server, USER, DONE), 15)
    texts = [m.text for m in server.bot_messages(USER)]
    assert all(utf16_len(text) <= 4096 for text in texts)
    assert "".join(texts).count("😀") == 2500
    assert "<<&&>>" in final.text


# --------------------------------------------------------------------------- buttons


async def test_timeout_warning_has_working_extend_and_stop_buttons(start, server) -> None:
    h = await start(tables="[timeout]\nseconds = 1.5\nwarn_before = [1.2]\nextend_by = 20\n"
                    "max_seconds = 60\nkill_grace = 0.2\n")
    server.push_text(USER, USER, "say started; sleep 30")
    warning = await server.wait_for(lambda: next(
        (m for m in server.bot_messages(USER) if m.text.startswith("⏳ about")), None), 15)
    (turn,) = {event.turn for event in h.recorder.events}
    live = server.bot_messages(USER)[0]
    assert "/extend for more time" in warning.text and live is not warning
    assert buttons(warning) == [f"extend:{turn.id}", f"stop:{turn.id}"]
    await server.wait_for(lambda: buttons(live) == [f"extend:{turn.id}", f"stop:{turn.id}"])
    # someone not on the allowlist cannot press them
    press = server.push_callback(USER, STRANGER, warning.message_id, f"stop:{turn.id}")
    answer = await server.wait_for(lambda: server.callback_answer(press))
    assert "allowed" in answer["text"] and h.bot.running(turn.id) is not None
    # Extend reaches the timeout plugin's /extend; the warning's buttons go away
    press = server.push_callback(USER, USER, warning.message_id, f"extend:{turn.id}")
    assert "more time" in (await server.wait_for(lambda: server.callback_answer(press)))["text"]
    await server.wait_for(lambda: "extended by 20 s" in live.text)
    await server.wait_for(lambda: not warning.buttons and buttons(live) == [f"stop:{turn.id}"])
    # Stop ends the turn
    press = server.push_callback(USER, USER, live.message_id, f"stop:{turn.id}")
    assert (await server.wait_for(lambda: server.callback_answer(press)))["text"] == "Stopping…"
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled" and end.text == "stopped with the Stop button"
    await server.wait_for(lambda: "⏹ stopped" in live.text and not live.buttons)
    press = server.push_callback(USER, USER, live.message_id, f"stop:{turn.id}")
    assert "already ended" in (await server.wait_for(lambda: server.callback_answer(press)))[
        "text"]


# --------------------------------------------------------------------------- access


async def test_strangers_get_one_polite_refusal_and_no_agent(start, server, caplog) -> None:
    caplog.set_level(logging.INFO)
    h = await start()
    for text in ("hello", "say hi", "/status"):
        server.push_text(STRANGER, STRANGER, text)
    server.push_text(GROUP, STRANGER, "talking among ourselves", chat_type="supergroup")
    server.push_text(USER, USER, "say allowed")
    await server.wait_for(containing(server, USER, DONE), 15)
    (refusal,) = await server.wait_for(lambda: server.bot_messages(STRANGER))
    assert str(STRANGER) in refusal.text and "allowed_users" in refusal.text
    assert server.bot_messages(GROUP) == []
    assert {event.turn.chat.chat_id for event in h.recorder.events} == {str(USER)}
    assert f"refused user {STRANGER}" in caplog.text
    assert DEFAULT_TOKEN not in caplog.text and DEFAULT_TOKEN.split(":")[1] not in caplog.text


def test_settings_errors_are_located(tmp_path: Path) -> None:
    def read(body: str, env: dict[str, str] | None = None) -> TelegramSettings:
        path = tmp_path / "plugins.toml"
        path.write_text("[telegram]\n" + body)
        environ = {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN} if env is None else env
        return TelegramSettings.read(Config.load(path).settings("telegram"), environ)

    with pytest.raises(ConfigError, match=r"plugins.toml:1: .*allowed_users.*allow_all_users"):
        read("")
    assert read("allow_all_users = true\n").allows("anyone")
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        read("allowed_users = [1]\n", env={})
    with pytest.raises(ConfigError, match="does not hold a bot token") as bad:
        read("allowed_users = [1]\n", env={"TELEGRAM_BOT_TOKEN": "secret-token"})
    assert "secret-token" not in str(bad.value)
    with pytest.raises(ConfigError, match=r":4: \[telegram\] edit_interval: must be a number"):
        read('allowed_users = [1]\n\nedit_interval = "fast"\n')
    with pytest.raises(ConfigError, match="did you mean 'allowed_users'"):
        read("allowed_user = [1]\n")
    with pytest.raises(ConfigError, match="'@alice' is not a numeric user id"):
        read('allowed_users = ["@alice"]\n')
    with pytest.raises(ConfigError, match="lifecycle_chats"):
        read('allowed_users = [1]\nlifecycle_chats = ["@channel"]\n')
    settings = read('allowed_users = [1, "2"]\nlifecycle_chats = [5, "-100/7"]\n')
    assert DEFAULT_TOKEN not in repr(settings)
    assert settings.lifecycle_chats == (ChatRef("telegram", "-100", "7"),
                                        ChatRef("telegram", "5"))


def test_cli_refuses_an_empty_allowlist_and_doctor_checks_the_api(run_cli, tmp_path) -> None:
    (tmp_path / "plugins.toml").write_text("[plugins]\nconsole = false\ntelegram = true\n")
    env = {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN}
    done = run_cli("run", env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "allowed_users" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "plugins.toml").write_text(
        "[plugins]\nconsole = false\ntelegram = true\n[telegram]\nallowed_users = [1]\n"
        'api_base = "http://127.0.0.1:9"\n')
    done = run_cli("doctor", env=env, timeout=60)
    assert done.returncode == 1
    assert "✓ telegram: bot token found in $TELEGRAM_BOT_TOKEN" in done.stdout
    assert "✗ telegram: cannot reach http://127.0.0.1:9" in done.stdout
    assert DEFAULT_TOKEN not in done.stdout + done.stderr


async def test_doctor_check_reaches_the_api(start, server) -> None:
    h = await start()
    checks = await h.app.loader.instances["telegram"].doctor_checks()
    assert (True, f"telegram: {server.base_url} answers: this is @cadenza_test_bot") in checks


# --------------------------------------------------------------------------- groups


async def test_groups_answer_only_when_addressed_and_topics_are_chats(start, server) -> None:
    h = await start()
    server.push_text(GROUP, USER, "just chatting", chat_type="supergroup")
    server.push_text(GROUP, USER, "/stop@some_other_bot", chat_type="supergroup")
    server.push_text(GROUP, USER, "@cadenza_test_bot say hi", chat_type="supergroup")
    answer = await server.wait_for(containing(server, GROUP, DONE), 15)
    assert [e.turn.prompt for e in h.recorder.terminals()] == ["say hi"]
    assert len(server.bot_messages(GROUP)) == 1
    server.push_text(GROUP, USER, "say again", chat_type="supergroup", reply_to=answer.message_id)
    await h.recorder.finished(2)
    server.push_text(GROUP, USER, "/status", chat_type="supergroup", message_thread_id=7)
    status = await server.wait_for(containing(server, GROUP, "Nothing is running"), 15)
    assert status.message_thread_id == 7
    server.push_text(GROUP, USER, "say in topic @cadenza_test_bot", chat_type="supergroup",
                     message_thread_id=7)
    *_, topic_turn = await h.recorder.finished(3)
    assert topic_turn.turn.chat == ChatRef("telegram", str(GROUP), "7")
    reply = await server.wait_for(containing(server, GROUP, "in topic"), 15)
    assert reply.message_thread_id == 7
    assert [e.turn.prompt for e in h.recorder.terminals()] == ["say hi", "say again",
                                                               "say in topic"]


# --------------------------------------------------------------------------- hardening


async def test_a_429_storm_is_obeyed_and_the_final_text_is_complete(start, server) -> None:
    server.enforce_limits = True  # Telegram's limits; edit_interval = 0.05 ignores them
    await start()
    server.push_text(USER, USER, "tick 20 0.1 part")
    final = await server.wait_for(containing(server, USER, DONE), 20)
    assert server.rate_limited >= 2
    assert strip_outcome(final.text) == "\n\n".join(f"part {i}" for i in range(1, 21))
    chat_calls = [c for c in server.calls if c.method in ("sendMessage", "editMessageText")]
    for call, after in itertools.pairwise(chat_calls):
        if call.status == 429:
            retry_after = call.response["parameters"]["retry_after"]
            assert after.at >= call.finished_at + retry_after - 0.05


async def test_api_faults_never_lose_the_final_text(start, server) -> None:
    await start(request_timeout="0.5")
    for fault in (Fault.server_error(502), Fault.drop(), Fault.hang(),
                  Fault.drop(after_processing=True),  # applied, unanswered: retried
                  Fault.bad_request("Bad Request: message to edit not found")):
        server.fail_next("editMessageText", fault)
    server.push_text(USER, USER, "tick 8 0.1 part")
    # every fault costs one edit, retried until one succeeds; "not found" comes last
    final = await server.wait_for(lambda: len(server.bot_messages(USER)) == 2 and DONE in (
        last := server.bot_messages(USER)[-1]).text and last, 20)
    assert strip_outcome(final.text) == "\n\n".join(f"part {i}" for i in range(1, 9))
    outcomes = [c.outcome for c in server.calls_to("editMessageText")]
    assert "dropped" in outcomes and "cancelled" in outcomes  # the hang was cut by the timeout


async def test_an_edit_that_changes_nothing_counts_as_done() -> None:
    class Client:
        async def edit_message_text(self, **fields: Any) -> None:
            method = EditMessageText(**{k: v for k, v in fields.items() if v is not None})
            raise TelegramBadRequest(method, f"Bad Request: {NOT_MODIFIED}")

    await Api(Client()).edit(1, 2, Outgoing("<b>x</b>", "x"))  # does not raise
    assert isinstance(classify(TelegramBadRequest(EditMessageText(text="x"), "Bad Request: "
                                                  "message to edit not found")), Gone)


async def test_polling_survives_a_server_restart_and_a_failing_update(
        start, server, monkeypatch) -> None:
    h = await start()
    server.push_text(USER, USER, "tick 6 0.15 part")
    await server.wait_for(containing(server, USER, "part 2"), 15)
    await server.restart()
    final = await server.wait_for(containing(server, USER, DONE), 15)
    assert strip_outcome(final.text) == "\n\n".join(f"part {i}" for i in range(1, 7))
    real = inbound_module.addressed_text

    def explode(message: Any, me: Any) -> str | None:
        if message.text == "boom":
            raise RuntimeError("a bug while handling one update")
        return real(message, me)

    monkeypatch.setattr(inbound_module, "addressed_text", explode)
    server.push_text(USER, USER, "boom")
    server.push_text(USER, USER, "say after the restart")
    await server.wait_for(containing(server, USER, "after the restart"), 15)
    await h.recorder.finished(2)


async def test_startup_waits_for_the_api_and_handles_pending_updates_in_order(
        token, start_app, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with FakeTelegramServer(max_poll_wait=0.5) as server:
        await server.take_down()  # unreachable when Cadenza starts
        server.push_text(USER, USER, "say one")
        server.push_text(USER, USER, "say two")
        h = await start_app(config(server))
        await eventually(lambda: caplog.text.count("cannot reach the API") >= 2)
        await server.bring_up()
        await server.wait_for(lambda: sum(DONE in t for t in server.texts(USER)) == 2, 15)
        assert [e.turn.prompt for e in h.recorder.terminals()] == ["say one", "say two"]
        texts = server.texts(USER)
        assert texts.index(next(t for t in texts if "one" in t)) < texts.index(
            next(t for t in texts if "two" in t))
        await h.app.stop()


async def test_shutdown_delivers_the_end_and_keeps_unhandled_updates(start, server) -> None:
    h = await start()
    update = server.push_text(USER, USER, "say first; sleep 30")
    live = await server.wait_for(containing(server, USER, "first"), 15)
    await h.app.stop()
    assert "⏸ interrupted" in live.text and not live.buttons
    assert server.confirmed_offset == update + 1  # handled: not handled again next time
    later = server.push_text(USER, USER, "say later")
    assert [u["update_id"] for u in server.pending_updates] == [later]  # kept for next start


async def test_restart_announces_itself_and_resumes_the_interrupted_turn(start, server) -> None:
    h = await start()
    server.push_text(USER, USER, "say first; sleep 1; say resumed")
    await server.wait_for(containing(server, USER, "first"), 15)
    await h.app.stop()
    h = await start()  # same state directory: the journal finds the interrupted turn
    await server.wait_for(containing(server, USER, "🔄 Cadenza restarted"), 15)
    notice = await server.wait_for(containing(server, USER, "↻ resuming"), 15)
    final = await server.wait_for(containing(server, USER, "resumed\n"), 15)
    await server.wait_for(lambda: DONE in final.text, 15)
    assert notice.message_id < final.message_id


async def test_buttons_left_by_a_crash_are_removed_at_the_next_start(start, server) -> None:
    h = await start(flush_timeout="0.2")
    server.push_text(USER, USER, "say first; sleep 30")
    live = await server.wait_for(containing(server, USER, "first"), 15)
    assert live.buttons
    connection = h.app.loader.instances["telegram"].connection

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    connection.api.edit = stuck  # nothing reaches Telegram any more, as if killed
    await h.app.stop()
    assert live.buttons and "⏳ working" in live.text  # what a crash leaves behind
    await start()
    await server.wait_for(lambda: not live.buttons, 15)
    assert "first" in live.text


async def test_lifecycle_chats_and_recovery_notices(start, server) -> None:
    h = await start(lifecycle_chats=f'[{USER}, "{GROUP}/3"]')
    started = await server.wait_for(containing(server, GROUP, "▶️ Cadenza started"), 15)
    assert started.message_thread_id == 3
    await server.wait_for(containing(server, USER, "▶️ Cadenza started"), 15)
    turn = Turn("t1", ChatRef("telegram", str(USER)), "refactor the parser", "claude")
    await h.app.relay.call("on_recover", recovery=Recovery(
        turn, 3, "crashed", "abandon", "it was interrupted 3 times"))
    abandoned = await server.wait_for(containing(server, USER, "will not be resumed"), 15)
    assert abandoned.text.endswith("refactor the parser")


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("source", [
    "plain <text> & more", "**bold `code` inside**", "a * b * c and snake_case_name",
    "```\nno language <x>\n```", "```js\nunclosed", "[x](javascript:alert(1)) [y](https://e.x)",
    "# Heading **b**", "~~gone~~ _it_ *it* __init__", "`` `tick` ``", "&amp; &#0; &lt",
])
def test_markup_is_always_valid_telegram_html(source: str) -> None:
    html, _ = to_html(source)
    parse_text(html + " .", "HTML")  # raises EntityParseError on invalid markup


def test_a_code_block_cut_in_two_stays_code_in_both_messages() -> None:
    turn = Turn("t", ChatRef("telegram", "1"), "p", "claude")
    view = TurnView(turn)
    code = "\n".join(f"x_{n} = {n} < {n + 1}" for n in range(600))
    view.apply(StreamEvent(turn, 0, "text", f"Here:\n```python\n{code}\n```\nDone."))
    view.apply(StreamEvent(turn, 1, "completed", "", {"elapsed": 0.5}))
    parts = view.desired()
    assert len(parts) == 3
    shown = [parse_text(part.html, "HTML") for part in parts]
    assert all(utf16_len(text) <= 4096 for text, _ in shown)
    for text, entities in shown[:2]:
        assert entities[-1]["type"] == "pre" and entities[-1]["language"] == "python"
        assert entities[-1]["length"] >= utf16_len(text) - 6
    assert "".join(text for text, _ in shown).count("x_") == 600
    assert shown[2][0].endswith("Done.\n\n✅ done · 0.5 s")


def test_cuts_prefer_readable_places_and_count_utf16() -> None:
    text = ("word " * 30 + "\n") * 40
    assert text[: cut_point(text, 1000)].endswith("\n")
    prose = "One sentence here. " * 200
    assert prose[: cut_point(prose, 1000)].endswith(". ")
    assert all(utf16_len(p) <= 100 for p in split("😀" * 500, 100))
    assert "".join(split("x" * 5000, 4096)) == "x" * 5000
    assert clean("a\udc80b\0c") == "a\ufffdbc"
    assert TEXT_BUDGET < 4096


def test_pacing_buckets_allow_a_burst_then_keep_the_pace() -> None:
    group = Bucket(interval=3.0, burst=3)

    def call_at(now: float) -> float:
        at = now + group.delay(now)
        group.commit(at)
        return at

    assert [call_at(0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 3.0, 6.0]
    assert group.delay(6.5) == 2.5 and group.delay(20.0) == 0.0
    chat = Bucket(interval=1.0)
    chat.commit(10.0)
    assert chat.delay(10.4) == pytest.approx(0.6)


def test_the_token_never_reaches_the_logs(caplog) -> None:
    log = logging.getLogger("cadenza.plugin.telegram.redaction-test")
    Redact(DEFAULT_TOKEN).install([log])
    caplog.set_level(logging.INFO)
    log.warning("GET http://api/bot%s/getMe failed", DEFAULT_TOKEN)
    try:
        raise OSError(f"cannot open http://api/bot{DEFAULT_TOKEN}/getUpdates")
    except OSError:
        log.exception("polling failed")
    assert "http://api/bot<token>/getMe" in caplog.text and "bot<token>/getUpdates" in caplog.text
    assert DEFAULT_TOKEN not in caplog.text
