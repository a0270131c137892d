"""One test per hook, through the running app: the contract each hookspec documents.

``test_every_hook_has_a_test_and_a_doc_heading`` keeps this list complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cadenza import docs, hookspecs
from cadenza.agents.command import CommandAgent
from cadenza.api import Attachment, ChatMessage, hookimpl
from cadenza.app import App
from cadenza.config import Config
from conftest import CHAT, ROOT, Recorder, agent_config

pytestmark = pytest.mark.usefixtures("agent_path")


def test_every_hook_has_a_test_a_docstring_and_its_generated_reference() -> None:
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    for name in hookspecs.HOOK_NAMES:
        assert re.search(rf"def test_hook_{name}\b", tests), f"no test_hook_{name}"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert guide == docs.with_reference(guide), (
        "docs/plugins.md's hook reference is stale: run python -m cadenza.docs docs/plugins.md")
    for name in hookspecs.HOOK_NAMES:
        assert f"#### `{name}(" in guide


async def test_hook_register_agents(start_app) -> None:
    class Echoer(CommandAgent):
        name = "echoer"

    class Registers:
        @hookimpl
        def register_agents(self, register):
            register(Echoer(["echo", "echoer says: {prompt}"]))

    h = await start_app(agent_config("echoer"), registers=Registers())
    await h.say("hi")
    (end,) = await h.recorder.finished()
    assert h.recorder.text_of(end.turn.id) == "echoer says: hi\n"
    assert end.turn.agent == "echoer"


async def test_hook_register_commands(start_app) -> None:
    class Ping:
        @hookimpl
        def register_commands(self, register):
            register("ping", self.ping, help="answers pong")

        async def ping(self, bot, message, args):
            await bot.notify(message.chat, f"pong {args}")

    h = await start_app(agent_config("claude"), ping=Ping())
    await h.say("/ping  loud ")
    await h.say("/help")
    await h.recorder.wait_for(lambda: len(h.recorder.notices) == 2)
    assert h.recorder.notices[0].text == "pong loud"
    assert "/ping — answers pong" in h.recorder.notices[1].text


class Phases:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_start(self, bot):
        self.calls.append("start")

    @hookimpl
    async def on_ready(self, bot):
        self.calls.append("ready")

    @hookimpl
    def on_shutdown(self):
        self.calls.append("shutdown")


async def test_hook_on_start(start_app) -> None:
    phases = Phases()
    h = await start_app(agent_config("claude"), phases=phases)
    assert phases.calls == ["start", "ready"] and h.bot.accepting


async def test_hook_on_ready(start_app) -> None:
    phases = Phases()
    h = await start_app(agent_config("claude"), phases=phases)
    lifecycle = [kind for kind, _ in h.recorder.other if kind == "lifecycle"]
    assert phases.calls[-1] == "ready" and lifecycle == ["lifecycle"]  # the journal's, in ready


async def test_hook_on_shutdown(start_app) -> None:
    phases = Phases()
    h = await start_app(agent_config("claude"), phases=phases)
    await h.say("sleep 30")
    await h.recorder.wait_for(lambda: h.bot._runners)
    await h.app.stop()
    assert phases.calls == ["start", "ready", "shutdown"]
    assert h.recorder.terminals()[0].kind == "interrupted"  # agents stopped before the hook


async def test_hook_on_startup_lifecycle(start_app) -> None:
    h = await start_app(agent_config("claude"))
    ((_, lifecycle),) = [item for item in h.recorder.other if item[0] == "lifecycle"]
    assert lifecycle.kind == "started" and lifecycle.interrupted == 0


async def test_hook_on_recover(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text(agent_config("claude"))
    first = App(Config.load(path), tmp_path / "state")
    first.add_plugin("recorder", recorder := Recorder())
    bot = await first.start()
    await bot.submit(CHAT, "say slow; sleep 1; say done")
    await recorder.wait_for(lambda: bot._runners)
    await first.stop()  # shutdown interrupts it

    second = App(Config.load(path), tmp_path / "state")
    second.add_plugin("recorder", recorder := Recorder())
    await second.start()
    try:
        (end,) = await recorder.finished()
        ((_, recovery),) = [item for item in recorder.other if item[0] == "recover"]
        assert (recovery.action, recovery.reason, recovery.attempt) == ("resume", "restarted", 2)
        assert end.turn.id == recovery.turn.id and end.kind == "completed"
    finally:
        await second.stop()


async def test_hook_on_inbound_message(start_app) -> None:
    class Allowlist:
        @hookimpl
        def on_inbound_message(self, message):
            return None if message.user_id == "alice" else "not on the list"

    h = await start_app(agent_config("claude"), allowlist=Allowlist())
    await h.bot.handle(ChatMessage(CHAT, "mallory", "say stolen"))
    await h.bot.handle(ChatMessage(CHAT, "mallory", "/status"))
    await h.bot.handle(ChatMessage(CHAT, "alice", "say welcome"))
    (end,) = await h.recorder.finished()
    assert h.recorder.text_of(end.turn.id) == "welcome"
    assert h.recorder.notices == [] and len(h.recorder.terminals()) == 1


async def test_hook_on_attachments(start_app) -> None:
    taken: list[ChatMessage] = []

    class Files:
        @hookimpl
        def on_attachments(self, message):
            taken.append(message)
            return True

    photo = Attachment("screenshot.png", 1234, "image/png")
    h = await start_app(agent_config("claude"))
    await h.bot.handle(ChatMessage(CHAT, "u1", "", attachments=(photo,)))
    (notice,) = await h.recorder.wait_for(lambda: h.recorder.notices)
    assert notice.kind == "error" and "Files are not taken here" in notice.text  # no plugin
    h.app.loader.register("files_taker", Files())
    await h.bot.handle(ChatMessage(CHAT, "u1", "what is wrong here?", attachments=(photo,)))
    assert [m.attachments for m in taken] == [(photo,)] and len(h.recorder.notices) == 1
    assert h.recorder.events == []  # the plugin decides whether a turn runs


async def test_hook_take_prompt(start_app) -> None:
    class Taker:
        def __init__(self) -> None:
            self.taken: list[str] = []

        @hookimpl
        def take_prompt(self, message):
            if message.text == "mine":
                self.taken.append(message.text)
                return True
            if message.text == "boom":
                raise RuntimeError("a bug in the plugin")
            return None

    taker = Taker()
    h = await start_app(agent_config("claude"), taker=taker)
    await h.say("mine")
    await h.say("/status")  # commands never reach it
    await h.say("boom")  # the plugin fails: the prompt runs as usual
    (end,) = await h.recorder.finished()
    assert taker.taken == ["mine"] and end.turn.prompt == "boom"


async def test_hook_prompt_preamble(start_app) -> None:
    class Preamble:
        @hookimpl
        def prompt_preamble(self, turn):
            return "say told once"

    h = await start_app(agent_config("claude"), preamble=Preamble())
    await h.say("say a")
    (first,) = await h.recorder.finished()
    await h.say("say b")  # continues the conversation: no preamble
    _, second = await h.recorder.finished(2)
    assert h.recorder.text_of(first.turn.id) == "told once\n\na"
    assert h.recorder.text_of(second.turn.id) == "b"
    assert first.turn.prompt == "say a"  # the journal and the chat never see it


async def test_hook_turn_options(start_app, tmp_path, monkeypatch) -> None:
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))

    class Tools:
        def __init__(self, answer):
            self.answer = answer

        @hookimpl
        def turn_options(self, turn):
            return self.answer

    h = await start_app(agent_config("claude"), one=Tools({"allowed_tools": ["Bash(ls)"]}),
                        two=Tools({"allowed_tools": ["Read", "Bash(ls)"],
                                   "permission_mode": "plan"}), three=Tools("not a mapping"))
    await h.say("say hi")
    (end,) = await h.recorder.finished()
    tools = end.turn.options["allowed_tools"]  # joined, in the plugins' order, no repeats
    assert sorted(tools) == ["Bash(ls)", "Read"] and end.turn.options["permission_mode"] == "plan"
    argv = json.loads(log.read_text())["argv"]
    assert argv[argv.index("--allowedTools"):] == [
        "--allowedTools", *tools, "--permission-mode", "plan"]


class TurnHooks:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.order: list[str] = []

    @hookimpl
    def on_turn_accepted(self, turn):
        self.order.append(f"accepted:{turn.prompt}")

    @hookimpl
    def on_turn_start(self, turn):
        # awaited before the spawn: nothing of this turn has been streamed yet
        seen = [e for e in self.recorder.events if e.turn.id == turn.id]
        self.order.append(f"start:{turn.prompt}:{len(seen)}")


async def test_hook_on_turn_accepted(start_app) -> None:
    h = await start_app(agent_config("claude"))
    hooks = TurnHooks(h.recorder)
    h.app.loader.register("turn_hooks", hooks)
    await h.say("tick 2 0.2 a")
    await h.say("say b")
    await h.recorder.finished(2)
    assert hooks.order[:2] == ["accepted:tick 2 0.2 a", "accepted:say b"]


async def test_hook_on_turn_start(start_app) -> None:
    h = await start_app(agent_config("claude"))
    hooks = TurnHooks(h.recorder)
    h.app.loader.register("turn_hooks", hooks)
    await h.say("say a")
    await h.recorder.finished()
    assert hooks.order == ["accepted:say a", "start:say a:0"]


async def test_hook_on_stream_event(start_app) -> None:
    h = await start_app(agent_config("codex"))
    await h.say("say one; tool echo two")
    (end,) = await h.recorder.finished()
    kinds = [e.kind for e in h.recorder.events]
    assert kinds == ["started", "session", "text", "tool_use", "tool_result", "usage",
                     "completed"]
    assert [e.seq for e in h.recorder.events] == list(range(len(kinds)))
    assert end is h.recorder.events[-1]


async def test_hook_on_timeout_warning(start_app) -> None:
    h = await start_app(agent_config("claude")
                        + "[timeout]\nseconds = 0.6\nwarn_before = [0.3]\nkill_grace = 0.2\n"
                        "activity_window = 0\n")
    await h.say("sleep 30")
    await h.recorder.finished()
    ((_, warning),) = [item for item in h.recorder.other if item[0] == "warning"]
    assert warning.stage == 0.3 and 0 < warning.seconds_left <= 0.3


async def test_hook_on_notice(start_app) -> None:
    h = await start_app(agent_config("claude"))
    await h.say("/nope")
    (notice,) = await h.recorder.wait_for(lambda: h.recorder.notices)
    assert notice.chat == CHAT and notice.kind == "error"


def test_hook_report_status(third_party, run_cli, tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text("[plugins]\nsample = true\n[sample]\ngreeting = 'hey'\n")
    run_cli("run", input="", env=third_party)
    done = run_cli("status", "--json", env=third_party)
    assert done.returncode == 0, done.stderr
    assert '"sample": {\n    "greeting": "hey"\n  }' in done.stdout


def test_hook_doctor_checks(third_party, run_cli, tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text(
        "[plugins]\nsample = true\n[sample]\ngreeting = 'rude'\n")
    done = run_cli("doctor", env=third_party)
    assert done.returncode == 1 and "✗ sample: greeting is rude" in done.stdout
