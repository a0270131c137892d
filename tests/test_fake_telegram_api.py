"""The fake Telegram Bot API, exercised through the real aiogram client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from aiogram.utils.backoff import BackoffConfig

from tests.fakes.telegram_api import (
    EntityParseError,
    FakeTelegramServer,
    Fault,
    LocalAiohttpSession,
    RateLimits,
    parse_text,
)

pytestmark = pytest.mark.asyncio

CHAT = 4242
USER = 4242
GROUP = -1001234567890
FAST_BACKOFF = BackoffConfig(min_delay=0.01, max_delay=0.05, factor=1.5, jitter=0.0)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(max_poll_wait=1.0) as fake:
        yield fake


@pytest_asyncio.fixture
async def bot(server: FakeTelegramServer) -> AsyncIterator[Bot]:
    client = server.make_bot()
    yield client
    await client.session.close()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(text=item, callback_data=item) for item in data]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


# ------------------------------------------------------------------ basic methods


async def test_get_me_reports_the_bot_and_records_the_token(
    server: FakeTelegramServer, bot: Bot
) -> None:
    me = await bot.get_me()

    assert me.id == server.bot_id
    assert me.is_bot
    assert server.tokens_seen == {server.token}
    assert [call.method for call in server.calls] == ["getMe"]
    assert server.calls[0].status == 200


async def test_send_edit_delete_are_stored_in_order(server: FakeTelegramServer, bot: Bot) -> None:
    first = await bot.send_message(CHAT, "<b>working</b>", parse_mode="HTML")
    second = await bot.send_message(CHAT, "menu", reply_markup=keyboard("a", "b"))
    edited = await bot.edit_message_text(
        "done", chat_id=CHAT, message_id=first.message_id, reply_markup=keyboard("again")
    )
    assert await bot.delete_message(CHAT, second.message_id)

    assert isinstance(edited, Message)
    assert edited.text == "done"
    stored = server.messages(CHAT)
    assert [message.message_id for message in stored] == [first.message_id, second.message_id]
    assert stored[0].history == ["working", "done"]
    assert stored[0].buttons == [{"text": "again", "callback_data": "again"}]
    assert stored[1].deleted
    assert stored[1].buttons[1]["callback_data"] == "b"
    assert server.texts(CHAT) == ["done"]
    assert first.entities is not None and first.entities[0].type == "bold"


async def test_call_log_records_params_and_status(server: FakeTelegramServer, bot: Bot) -> None:
    await bot.send_chat_action(CHAT, "typing")
    await bot.send_message(CHAT, "123", message_thread_id=7)

    action, send = server.calls
    assert (action.method, action.params, action.status) == (
        "sendChatAction",
        {"chat_id": CHAT, "action": "typing"},
        200,
    )
    assert send.params == {"chat_id": CHAT, "text": "123", "message_thread_id": 7}
    assert send.at <= send.finished_at  # type: ignore[operator]
    assert server.chat_actions == [(CHAT, "typing")]
    assert server.messages(CHAT)[0].message_thread_id == 7


async def test_identical_edit_is_not_modified(server: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "same", reply_markup=keyboard("x"))

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "same", chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard("x")
        )
    # Omitting the keyboard removes it, so this is a real change.
    await bot.edit_message_text("same", chat_id=CHAT, message_id=sent.message_id)

    message = server.message(CHAT, sent.message_id)
    assert message.reply_markup is None
    assert message.history == ["same", "same"]
    assert server.count_status(400) == 1


async def test_edit_or_delete_of_unknown_message_fails(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=99)
    sent = await bot.send_message(CHAT, "bye")
    await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)


async def test_edit_reply_markup(server: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "pick", reply_markup=keyboard("a"))

    await bot.edit_message_reply_markup(
        chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard("b")
    )
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await bot.edit_message_reply_markup(
            chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard("b")
        )

    message = server.message(CHAT, sent.message_id)
    assert message.buttons == [{"text": "b", "callback_data": "b"}]
    assert message.history == ["pick"]


async def test_commands_round_trip(bot: Bot) -> None:
    commands = [BotCommand(command="new", description="Start a session")]

    assert await bot.set_my_commands(commands)

    assert [c.model_dump() for c in await bot.get_my_commands()] == [
        c.model_dump() for c in commands
    ]
    assert await bot.get_my_commands(language_code="de") == []


async def test_replies_and_user_messages(server: FakeTelegramServer, bot: Bot) -> None:
    server.push_text(CHAT, USER, "question")
    update_id = server.push_text(CHAT, USER, "follow-up", reply_to=1)

    await bot.send_message(CHAT, "answer", reply_to_message_id=1)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(CHAT, "x", reply_parameters=ReplyParameters(message_id=99))
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("changed", chat_id=CHAT, message_id=1)

    pushed = server.pushed_updates[-1]
    assert pushed["update_id"] == update_id
    assert pushed["message"]["reply_to_message"]["text"] == "question"
    assert server.bot_messages(CHAT)[0].reply_to_message_id == 1
    with pytest.raises(ValueError, match="positive ids"):
        server.push_text(GROUP, USER, "wrong chat type")


async def test_delete_webhook_can_drop_pending_updates(
    server: FakeTelegramServer, bot: Bot
) -> None:
    server.push_text(CHAT, USER, "stale")

    assert await bot.delete_webhook(drop_pending_updates=True)

    assert await bot.get_updates() == []


async def test_strict_token_rejects_other_tokens() -> None:
    async with FakeTelegramServer(strict_token=True) as server:
        bot = Bot("42:other", session=LocalAiohttpSession(api=server.api()))
        try:
            with pytest.raises(TelegramUnauthorizedError):
                await bot.get_me()
        finally:
            await bot.session.close()

    assert server.tokens_seen == {"42:other"}


# ------------------------------------------------------------------ text validation


async def test_entity_parse_errors_are_bad_requests(server: FakeTelegramServer, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Can't find end tag"):
        await bot.send_message(CHAT, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "br"'):
        await bot.send_message(CHAT, "line<br>line", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match=r"Character '\.' is reserved"):
        await bot.send_message(CHAT, "Done.", parse_mode="MarkdownV2")

    await bot.send_message(CHAT, "Done\\. *ok*", parse_mode="MarkdownV2")
    assert server.texts(CHAT) == ["Done. ok"]


async def test_text_length_counts_after_entity_parsing(bot: Bot) -> None:
    await bot.send_message(CHAT, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")

    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "😀" * 2049)  # 4098 UTF-16 code units


async def test_empty_text_is_rejected(bot: Bot) -> None:
    for text in ("", "   \n", "<b></b>"):
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(CHAT, text, parse_mode="HTML")


async def test_invalid_callback_data_is_rejected(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "x", reply_markup=keyboard("y" * 65))


@pytest.mark.parametrize(
    ("source", "mode", "text", "entities"),
    [
        ("<b>a</b> &lt;&amp;&gt; <i>b</i>", "HTML", "a <&> b", [("bold", 0, 1), ("italic", 6, 1)]),
        ('<a href="https://x.y">link</a>', "HTML", "link", [("text_link", 0, 4)]),
        ('<pre><code class="language-py">x = 1</code></pre>', "HTML", "x = 1", [("pre", 0, 5)]),
        ("AT&T", "HTML", "AT&T", []),
        (
            "*b* _i_ __u__ ~s~ ||sp|| `c`",
            "MarkdownV2",
            "b i u s sp c",
            [
                ("bold", 0, 1),
                ("italic", 2, 1),
                ("underline", 4, 1),
                ("strikethrough", 6, 1),
                ("spoiler", 8, 2),
                ("code", 11, 1),
            ],
        ),
        ("[x](https://a.b/\\(c\\))", "MarkdownV2", "x", [("text_link", 0, 1)]),
        ("```py\nprint(1)\n```", "MarkdownV2", "print(1)", [("pre", 0, 8)]),
        ("😀 *b*", "MarkdownV2", "😀 b", [("bold", 3, 1)]),
        ("*b* [l](http://x)", "Markdown", "b l", [("bold", 0, 1), ("text_link", 2, 1)]),
        ("  padded  ", None, "padded", []),
    ],
)
async def test_parse_text_accepts(
    source: str, mode: str | None, text: str, entities: list[tuple[str, int, int]]
) -> None:
    parsed, found = parse_text(source, mode)

    assert parsed == text
    assert [(e["type"], e["offset"], e["length"]) for e in found] == entities


@pytest.mark.parametrize(
    ("source", "mode", "reason"),
    [
        ("<b>x", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "HTML", "Unexpected end tag at byte offset 1"),
        ("<b>x</i>", "HTML", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("é <x>", "HTML", 'Unsupported start tag "x" at byte offset 3'),
        ("a < b", "HTML", 'Unsupported start tag "" at byte offset 2'),
        ("a <b", "HTML", "Unclosed start tag at byte offset 2"),
        ("<span>x</span>", "HTML", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        (
            "1-2",
            "MarkdownV2",
            "Character '-' is reserved and must be escaped with the preceding '\\'",
        ),
        ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
        ("ok `code", "MarkdownV2", "Can't find end of Code entity at byte offset 3"),
        ("[a](http://x", "MarkdownV2", "Can't find end of a URL at byte offset 4"),
        ("*b", "Markdown", "Can't find end of the entity starting at byte offset 0"),
    ],
)
async def test_parse_text_rejects(source: str, mode: str, reason: str) -> None:
    with pytest.raises(EntityParseError) as error:
        parse_text(source, mode)

    assert str(error.value) == reason


# ------------------------------------------------------------------ fault injection


async def test_scripted_429_surfaces_as_retry_after(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", Fault.retry_after(7), times=2)

    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as error:
            await bot.send_message(CHAT, "hi")
        assert error.value.retry_after == 7
    await bot.send_message(CHAT, "hi")

    assert server.calls[0].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert server.texts(CHAT) == ["hi"]


async def test_scripted_errors(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", Fault.server_error(502, "Bad Gateway"))
    server.fail_next("*", Fault.bad_request("Bad Request: chat not found"))

    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(CHAT, "a")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_me()
    await bot.get_me()


async def test_dropped_connection(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", Fault.drop())
    server.fail_next("sendMessage", Fault.drop(after_processing=True))

    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "lost")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "delivered but unanswered")

    assert server.texts(CHAT) == ["delivered but unanswered"]
    assert [call.outcome for call in server.calls] == ["dropped", "dropped"]
    assert all(call.status is None for call in server.calls)


async def test_hang_until_released(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", Fault.hang())
    sending = asyncio.create_task(bot.send_message(CHAT, "slow"))

    await server.wait_for(lambda: server.in_flight("sendMessage"))
    assert server.calls[0].outcome == "hanging"
    assert server.texts(CHAT) == []
    server.release_hangs()

    assert (await sending).text == "slow"
    assert server.calls[0].outcome == "answered"


async def test_stop_drops_hung_calls(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("getMe", Fault.hang())
    asking = asyncio.create_task(bot.get_me())
    await server.wait_for(lambda: server.in_flight("getMe"))

    await server.stop()

    with pytest.raises(TelegramNetworkError):
        await asking
    assert server.calls[0].outcome == "dropped"


async def test_server_down_at_startup() -> None:
    server = FakeTelegramServer()
    base_url = await server.start(listening=False)
    bot = Bot(server.token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        with pytest.raises(TelegramNetworkError):
            await bot.get_me()
        # aiogram's polling asks getMe once before its retry loop, so it gives up.
        with pytest.raises(TelegramNetworkError):
            await Dispatcher().start_polling(bot, handle_signals=False, close_bot_session=False)

        await server.bring_up()
        assert (await bot.get_me()).id == server.bot_id
    finally:
        await bot.session.close()
        await server.stop()


# ------------------------------------------------------------------ flood limits


async def test_per_chat_limit_allows_a_burst_then_429s() -> None:
    clock = ManualClock()
    async with FakeTelegramServer(enforce_limits=True, clock=clock) as server:
        bot = server.make_bot()
        try:
            for text in ("1", "2", "3"):
                await bot.send_message(CHAT, text)
            with pytest.raises(TelegramRetryAfter) as error:
                await bot.edit_message_text("x", chat_id=CHAT, message_id=1)
            await bot.send_message(CHAT + 1, "other chat is fine")

            clock.now += error.value.retry_after
            await bot.send_message(CHAT, "4")
        finally:
            await bot.session.close()

    assert error.value.retry_after == 1
    assert server.rate_limited == 1
    assert server.count_status(429) == 1


async def test_global_and_group_limits() -> None:
    clock = ManualClock()
    limits = RateLimits(global_per_second=5, group_per_minute=4, per_chat_burst=10)
    async with FakeTelegramServer(enforce_limits=True, clock=clock, limits=limits) as server:
        bot = server.make_bot()
        try:
            for chat in range(1, 6):
                await bot.send_message(chat, "x")
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(6, "x")

            clock.now += 10
            for _ in range(4):
                await bot.send_message(GROUP, "x")
            with pytest.raises(TelegramRetryAfter) as error:
                await bot.send_message(GROUP, "x")
        finally:
            await bot.session.close()

    assert error.value.retry_after == 15  # one message per 15 s at 4 per minute
    assert server.rate_limited == 2


# ------------------------------------------------------------------ getUpdates


async def test_long_poll_wakes_when_an_update_is_pushed(
    server: FakeTelegramServer, bot: Bot
) -> None:
    server.max_poll_wait = 30
    polling = asyncio.create_task(bot.get_updates(timeout=30))
    await server.wait_for(lambda: server.in_flight("getUpdates"))

    update_id = server.push_text(CHAT, USER, "/start")

    updates = await asyncio.wait_for(polling, 2)
    assert [update.update_id for update in updates] == [update_id]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.entities is not None and message.entities[0].type == "bot_command"


async def test_long_poll_is_capped(server: FakeTelegramServer, bot: Bot) -> None:
    server.max_poll_wait = 0.05

    assert await bot.get_updates(timeout=30) == []


async def test_offsets_confirm_updates(server: FakeTelegramServer, bot: Bot) -> None:
    first = server.push_text(CHAT, USER, "one")
    second = server.push_text(GROUP, USER, "two", chat_type="supergroup", message_thread_id=5)

    assert [u.update_id for u in await bot.get_updates()] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=second)] == [second]
    assert await bot.get_updates(offset=second + 1) == []

    assert server.pending_updates == []
    assert server.confirmed_offset == second + 1
    assert server.pushed_updates[1]["message"]["message_thread_id"] == 5


async def test_allowed_updates_filter_new_updates(server: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "menu", reply_markup=keyboard("go"))
    await bot.get_updates(allowed_updates=["message"])

    server.push_callback(CHAT, USER, sent.message_id, "go")
    kept = server.push_text(CHAT, USER, "hello")

    assert [u.update_id for u in await bot.get_updates()] == [kept]
    assert len(server.discarded_updates) == 1


async def test_concurrent_polls_conflict(server: FakeTelegramServer, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await server.wait_for(lambda: server.in_flight("getUpdates"))

    await bot.get_updates()

    with pytest.raises(TelegramConflictError):
        await first


# ------------------------------------------------------------------ Dispatcher


def echo_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()

    @dispatcher.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    @dispatcher.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        await query.answer(f"got {query.data}")
        if isinstance(query.message, Message):
            await query.message.edit_text(f"chose {query.data}")

    return dispatcher


async def start_polling(dispatcher: Dispatcher, bot: Bot) -> asyncio.Task[None]:
    return asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, backoff_config=FAST_BACKOFF)
    )


async def test_polling_round_trip(server: FakeTelegramServer, bot: Bot) -> None:
    dispatcher = echo_dispatcher()
    polling = await start_polling(dispatcher, bot)
    try:
        update_id = server.push_text(CHAT, USER, "hi")
        await server.wait_for(lambda: "echo: hi" in server.texts(CHAT))
        await server.wait_for(lambda: server.confirmed_offset == update_id + 1)
    finally:
        await dispatcher.stop_polling()
        await polling

    assert server.pending_updates == []
    allowed = server.calls_to("getUpdates")[0].params["allowed_updates"]
    assert sorted(allowed) == ["callback_query", "message"]


async def test_callback_round_trip(server: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "choose", reply_markup=keyboard("left", "right"))
    dispatcher = echo_dispatcher()
    polling = await start_polling(dispatcher, bot)
    try:
        update_id = server.push_callback(CHAT, USER, sent.message_id, "left")
        await server.wait_for(lambda: server.texts(CHAT) == ["chose left"])
        await server.wait_for(lambda: server.callback_answer(update_id))
    finally:
        await dispatcher.stop_polling()
        await polling

    assert server.callback_answer(update_id) == {
        "text": "got left",
        "show_alert": None,
        "url": None,
        "cache_time": None,
    }
    assert server.message(CHAT, sent.message_id).reply_markup is None


async def test_restart_keeps_polling(server: FakeTelegramServer, bot: Bot) -> None:
    dispatcher = echo_dispatcher()
    polling = await start_polling(dispatcher, bot)
    try:
        server.push_text(CHAT, USER, "before")
        await server.wait_for(lambda: "echo: before" in server.texts(CHAT))
        await server.wait_for(lambda: server.in_flight("getUpdates"))

        await server.restart()
        server.push_text(CHAT, USER, "after")

        await server.wait_for(lambda: "echo: after" in server.texts(CHAT))
    finally:
        await dispatcher.stop_polling()
        await polling

    assert server.texts(CHAT) == ["echo: before", "echo: after"]
    assert any(call.outcome == "dropped" for call in server.calls_to("getUpdates"))


async def test_wait_for_times_out(server: FakeTelegramServer) -> None:
    with pytest.raises(TimeoutError, match=r"within 0\.01s"):
        await server.wait_for(lambda: server.texts(CHAT), timeout=0.01)


# ------------------------------------------------------------------ documents and shapes


async def test_send_document_is_a_multipart_upload_kept_with_its_caption(
    server: FakeTelegramServer, bot: Bot
) -> None:
    sent = await bot.send_document(
        CHAT, BufferedInputFile(b"the whole output\n" * 3, filename="output.txt"),
        caption="<b>whole</b> output", parse_mode="HTML",
    )
    assert sent.document is not None and sent.document.file_name == "output.txt"
    assert sent.caption == "whole output" and sent.text is None
    (stored,) = server.documents(CHAT)
    assert stored.data == b"the whole output\n" * 3
    assert stored.document["mime_type"] == "text/plain" and stored.document["file_size"] == 51
    assert stored.entities == [{"type": "bold", "offset": 0, "length": 5}]
    with pytest.raises(TelegramBadRequest, match="no text in the message"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_document(CHAT, BufferedInputFile(b"x", "a.txt"), caption="c" * 1025)
    with pytest.raises(TelegramBadRequest, match="file must be non-empty"):
        await bot.send_document(CHAT, BufferedInputFile(b"", "a.txt"))


async def test_send_document_refuses_more_than_50_mb(server: FakeTelegramServer, bot: Bot) -> None:
    limit = 50 * 1024 * 1024
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_document(CHAT, BufferedInputFile(b"x" * (limit + 1), "big.txt"))
    assert server.documents(CHAT) == []
    await bot.send_document(CHAT, BufferedInputFile(b"x" * limit, "just.txt"))
    assert server.documents(CHAT)[0].document["file_size"] == limit


async def test_pushed_messages_of_any_shape(server: FakeTelegramServer, bot: Bot) -> None:
    origin = {"type": "hidden_user", "sender_user_name": "Someone", "date": 1}
    server.push_message(CHAT, USER, caption="a photo's caption")
    server.push_message(CHAT, USER, text="forwarded", forward_origin=origin)
    first = server.push_text(CHAT, USER, "typo")
    server.push_edit(CHAT, 3, "fixed")
    server.push_update("message_reaction", {"chat": {"id": CHAT, "type": "private"}})
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates][:3] == [first - 2, first - 1, first]
    photo, forward, _, edited = (u.message or u.edited_message for u in updates[:4])
    assert photo.caption == "a photo's caption" and photo.photo and photo.text is None
    assert forward.forward_origin.sender_user_name == "Someone"
    assert updates[3].edited_message is edited and edited.text == "fixed" and edited.edit_date
    assert len(updates) == 4  # reactions are opt-in, as on Telegram
