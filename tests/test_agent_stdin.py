"""Prompts reach agents on stdin, which is then closed; never in argv where they can."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cadenza.agents import CliAgent, JsonLinesParser, Parsed, exit_outcome, launch
from cadenza.agents.command import CommandAgent
from cadenza.api import hookimpl
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
