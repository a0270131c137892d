"""Access fails closed, hostile text never costs a turn, and what a chat may queue is bounded."""

from __future__ import annotations

import asyncio

import pytest
from conftest import CHAT, agent_config

from core.api import ChatMessage, ChatRef, hookimpl

pytestmark = pytest.mark.usefixtures("agent_path")


class RaisingVeto:
    @hookimpl
    def on_inbound_message(self, message):
        raise RuntimeError("the allowlist service is down")


async def test_a_veto_that_raises_refuses_the_message(start_app) -> None:
    h = await start_app(agent_config("claude"), veto=RaisingVeto())
    await h.say("say stolen", user="stranger")
    await asyncio.sleep(0)
    await h.bot.idle()
    assert h.recorder.events == []


async def test_a_switched_off_frontend_takes_no_more_messages(start_app) -> None:
    h = await start_app(agent_config("claude") + "\n[core]\nmax_failures = 1\n")

    class Flaky:
        @hookimpl
        def on_notice(self, notice):
            raise RuntimeError("rendering broke")

    h.app.loader.register("test", Flaky())  # the "test" frontend's own plugin
    await h.say("/status")  # its on_notice fails once: the plugin is switched off
    assert h.app.relay.disabled("test")
    await h.say("say stolen")
    await h.bot.idle()
    assert h.recorder.events == []


async def test_hook_authorize(start_app) -> None:
    """A user removed from the allowlist while their prompts wait: those turns do not run."""
    h = await start_app(agent_config("claude"))
    await h.say("sleep 0.3; say first", user="alice")
    await h.say("say second", user="alice")
    await h.say("say third", user="bob")
    await h.recorder.wait_for(lambda: any(e.kind == "started" for e in h.recorder.events))
    h.recorder.refused.add("alice")  # as a SIGHUP reload of the allowlist would
    ends = await h.recorder.finished(3)
    by_prompt = {end.turn.prompt: end for end in ends}
    assert by_prompt["sleep 0.3; say first"].kind == "completed"
    assert by_prompt["say second"].kind == "cancelled"
    assert by_prompt["say second"].data["refused"]
    assert by_prompt["say third"].kind == "completed"


async def test_turns_of_a_frontend_that_does_not_answer_authorize_are_refused(start_app) -> None:
    h = await start_app(agent_config("claude"))
    elsewhere = ChatRef("nobody-owns-this", "1")
    await h.bot.handle(ChatMessage(elsewhere, "u1", "say hi"))
    (end,) = await h.recorder.finished()
    assert end.kind == "cancelled" and end.data["refused"]
    assert h.recorder.text_of(end.turn.id) == ""


async def test_hook_on_config_reload(start_app, tmp_path) -> None:
    seen = []

    class Reloads:
        @hookimpl
        def on_config_reload(self, config):
            seen.append(config.settings("mine").values.get("allowed"))

    h = await start_app(agent_config("claude") + "\n[mine]\nallowed = [1]\n", mine=Reloads())
    (tmp_path / "plugins.toml").write_text(agent_config("claude") + "\n[mine]\nallowed = [2]\n")
    await h.app.reload()
    (tmp_path / "plugins.toml").write_text("[mine\nbroken")
    await h.app.reload()  # logged; nothing reloaded
    assert seen == [[2]]


@pytest.mark.parametrize("text", ["say a\ud800b", "say \u202eevil\u202c", "say " + "x" * 100_000])
async def test_hostile_text_is_journaled_and_run(start_app, text) -> None:
    h = await start_app(agent_config("claude"))
    await h.say(text)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed"
    assert end.turn.prompt == text.replace("\ud800", "\ufffd")
    row = h.app.store.query("SELECT prompt, state FROM journal_turns WHERE id = ?",
                            (end.turn.id,))[0]
    assert row == {"prompt": end.turn.prompt, "state": "completed"}


async def test_a_nul_byte_is_refused_clearly(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("say a\0b")
    (end,) = await h.recorder.finished()
    assert end.kind == "failed" and "NUL" in end.text


async def test_a_chat_queues_at_most_max_queued_prompts(start_app) -> None:
    h = await start_app(agent_config("claude", "\n[core]\nmax_queued = 2\n"))
    for n in range(4):
        await h.say(f"sleep 0.2; say {n}")
        if n == 0:  # running, so no longer waiting
            await h.recorder.wait_for(lambda: h.recorder.events)
    ends = await h.recorder.finished(3)
    assert sorted(end.turn.prompt for end in ends) == [f"sleep 0.2; say {n}" for n in range(3)]
    assert [n.kind for n in h.recorder.notices].count("error") == 1
    assert "already waiting" in h.recorder.notices[-1].text


async def test_max_running_makes_turns_wait_in_order_and_says_their_place(start_app) -> None:
    h = await start_app(agent_config("claude", "\n[core]\nmax_running = 1\n"))
    chats = [ChatRef(CHAT.frontend, f"chat-{n}") for n in range(3)]
    for n, chat in enumerate(chats):
        await h.say(f"sleep 0.2; say {n}", chat=chat)
    ends = await h.recorder.finished(3)
    assert [end.turn.chat for end in ends] == chats
    starts = [e for e in h.recorder.events if e.kind == "started"]
    for earlier, later in zip(ends, starts[1:], strict=False):
        assert earlier.seq >= 0 and later.turn.chat != earlier.turn.chat
    places = [n.data["ahead"] for n in h.recorder.notices if n.kind == "queued"]
    assert places == [0, 1]


async def test_idle_lanes_are_pruned(start_app) -> None:
    h = await start_app('[plugins]\nconsole = false\n[agent]\ndefault = "command"\n')
    for n in range(50):
        await h.say("true", chat=ChatRef(CHAT.frontend, f"chat-{n}"))
    await h.recorder.finished(50)
    await h.bot.idle()
    assert len(h.bot.lanes) == 0
