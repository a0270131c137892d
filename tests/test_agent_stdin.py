"""Prompts reach agents on stdin, which is then closed; never in argv where they can."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cadenza.agents import CliAgent, JsonLinesParser, Parsed, exit_outcome, launch
from cadenza.agents.claude import ClaudeAgent
from cadenza.agents.codex import CodexAgent
from cadenza.agents.command import CommandAgent, CommandParser
from cadenza.api import Launch, hookimpl
from conftest import agent_config

pytestmark = pytest.mark.usefixtures("agent_path")

BIG = 200_000


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("agent", ["claude", "codex"])
@pytest.mark.parametrize("prompt", ["--help me with -x", "-"], ids=["dashes", "lone-dash"])
async def test_a_prompt_starting_with_a_dash_is_a_prompt(
    start_app, monkeypatch, tmp_path: Path, agent: str, prompt: str
) -> None:
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    h = await start_app(agent_config(agent))
    await h.say(prompt)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed", end.text
    assert h.recorder.text_of(end.turn.id) == f"echo: {prompt}"
    (call,) = calls(log)
    assert call["stdin"] and call["prompt"] == prompt
    # the command line has no prompt: Codex's ends with "-", "read it from stdin"
    assert call["argv"][-1] == "-" if agent == "codex" else prompt not in call["argv"]
    assert not any("help me" in arg for arg in call["argv"])


@pytest.mark.parametrize("agent", ["claude", "codex"])
async def test_a_200_kb_prompt_arrives_whole(start_app, agent: str) -> None:
    h = await start_app(agent_config(agent))
    await h.say("say " + "w" * BIG)
    (end,) = await h.recorder.finished()
    assert end.kind == "completed", end.text
    assert h.recorder.text_of(end.turn.id) == "w" * BIG


async def test_a_resumed_turn_gets_its_prompt_on_stdin_too(
    start_app, monkeypatch, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    h = await start_app(agent_config("codex"))
    await h.say("say one")
    await h.recorder.finished()
    await h.say("-say two")
    second = (await h.recorder.finished(2))[1]
    assert h.recorder.text_of(second.turn.id) == "echo: -say two"
    first, resumed = calls(log)
    assert resumed["argv"][-3:] == ["resume", second.turn.resume_id, "-"]
    assert (first["prompt"], resumed["prompt"]) == ("say one", "-say two")


# --- an agent that prints before it reads, or never reads --------------------------------

ECHO_LENGTH = """
import sys
sys.stdout.write("x" * {before} + "\\n")  # more than a pipe holds, before reading anything
sys.stdout.flush()
data = sys.stdin.buffer.read() if {reads} else b""
print("read", len(data))
"""


class ScriptAgent(CliAgent):
    """A third-party agent reading its prompt on stdin: a Python script."""

    stdin_prompt = True

    def __init__(self, name: str, script: str) -> None:
        super().__init__(name, sys.executable)
        self.script = script

    def argv(self, prompt: str, resume_id: str | None) -> list[str]:
        return [sys.executable, "-c", self.script]

    def parser(self) -> PlainParser:
        return PlainParser()


class PlainParser(JsonLinesParser):
    def feed(self, line: str) -> list:
        return [Parsed("text", line[:40] + "\n")]

    def outcome(self, exit_code: int):
        return exit_outcome(exit_code)


class Registers:
    def __init__(self, *agents: object) -> None:
        self.agents = agents

    @hookimpl
    def register_agents(self, register) -> None:
        for agent in self.agents:
            register(agent)


@pytest.mark.parametrize("reads", [True, False], ids=["reads-late", "never-reads"])
async def test_stdin_is_written_without_blocking_the_turn(start_app, reads: bool) -> None:
    script = ECHO_LENGTH.format(before=1 << 20, reads=reads)
    h = await start_app(agent_config("late"), agents=Registers(ScriptAgent("late", script)))
    prompt = "p" * (1 << 20)
    await h.say(prompt)
    (end,) = await h.recorder.finished(timeout=30)
    assert end.kind == "completed", end.text
    said = h.recorder.text_of(end.turn.id).splitlines()
    assert said == ["x" * 40, f"read {len(prompt) if reads else 0}"]


# --- where an agent cannot read stdin -------------------------------------------------------


def test_argv_agents_get_dash_dash_before_a_dash_prompt_at_the_end() -> None:
    tool = CommandAgent(["llm", "--model", "x", "{prompt}"])
    assert tool.argv("-v please", None) == ["llm", "--model", "x", "--", "-v please"]
    assert tool.argv("hello", None) == ["llm", "--model", "x", "hello"]
    # after an option the prompt is its value: the script of sh -c, left as it is
    shell = CommandAgent(["sh", "-c", "{prompt}"])
    assert shell.argv("-x", None) == ["sh", "-c", "-x"]
    # the template says where options end already, or the prompt is not a whole argument
    assert CommandAgent(["llm", "--", "{prompt}"]).argv("-v", None) == ["llm", "--", "-v"]
    assert CommandAgent(["llm", "--say={prompt}"]).argv("-v", None) == ["llm", "--say=-v"]
    assert CommandAgent(["llm", "{prompt}", "--json"]).argv("-v", None) == [
        "llm", "-v", "--json"]
    assert launch(tool, "-v", None).stdin is None


def test_an_agent_that_does_not_say_gets_the_prompt_in_argv() -> None:
    class OldStyle:  # a third-party agent written before stdin_prompt and contain
        name, binary = "old", "old"

        def argv(self, prompt: str, resume_id: str | None) -> list[str]:
            return ["old", prompt]

    started = launch(OldStyle(), "hi", None)  # type: ignore[arg-type]
    assert (started.argv, started.stdin, started.contain) == (["old", "hi"], None, True)


def test_per_turn_options_become_each_agents_arguments() -> None:
    claude = ClaudeAgent("claude", "claude", ["--model", "x"])
    start = launch(claude, "hi", "S1", {"allowed_tools": ["Bash(git status)", "Read"],
                                        "permission_mode": "acceptEdits", "sandbox": "x"})
    assert start.argv == ["claude", "-p", "--output-format", "stream-json", "--verbose",
                          "--resume", "S1", "--model", "x", "--allowedTools",
                          "Bash(git status)", "Read", "--permission-mode", "acceptEdits"]
    assert start.stdin == "hi" and not start.control
    codex = CodexAgent("codex", "codex")
    assert launch(codex, "go", "T1", {"sandbox": "workspace-write"}).argv == [
        "codex", "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write",
        "resume", "T1", "-"]
    assert launch(codex, "go", None).argv[-2:] == ["--skip-git-repo-check", "-"]


class TwoWay:
    """An agent that talks both ways: it reads the prompt, then control lines."""

    name = "twoway"
    binary = "sh"

    def launch(self, prompt, resume_id, options):
        script = 'read p; echo "prompt: $p"; read c; echo "control: $c"; read d; echo "$d"'
        return Launch(["sh", "-c", script], stdin=prompt + "\n", control=True)

    def env(self):
        return {}

    def parser(self):
        return CommandParser()

    def supports_resume(self):
        return False


async def test_an_agent_with_a_control_channel_reads_what_the_turn_sends(start_app) -> None:
    class Registers:
        @hookimpl
        def register_agents(self, register):
            register(TwoWay())

    h = await start_app('[plugins]\nconsole = false\n[agent]\ndefault = "twoway"\n',
                        registers=Registers())
    await h.say("hello")
    await h.recorder.wait_for(lambda: any("prompt: hello" in e.text for e in h.recorder.events))
    (turn_id,) = {e.turn.id for e in h.recorder.events}
    running = h.bot.running(turn_id)
    assert await running.send("allow\n")
    assert await running.send("bye\n")
    (end,) = await h.recorder.finished()
    assert h.recorder.text_of(turn_id) == "prompt: hello\ncontrol: allow\nbye\n"
    assert end.kind == "completed" and not await running.send("late\n")
