#!/usr/bin/env python3
"""The scripted agent: a stand-in for the Claude Code and Codex CLIs, run as a real process.

It prints what the real CLI prints — Claude's ``stream-json`` (``claude -p --output-format
stream-json --verbose``) or Codex's JSONL (``codex exec --json``) — so it goes through the real
adapter and parser, but it does what the prompt says instead of asking a model. The prompt is
a script: steps separated by ``;`` or newlines.

    say TEXT          a text block (Claude) / an agent message (Codex)
    tick N SECS TEXT  N texts "TEXT 1" … "TEXT N", SECS seconds apart
    sleep SECS        silence for SECS seconds (real time: the process really waits)
    big N             one text of exactly N characters (lines of digits)
    tool CMD          a tool call that runs CMD in a shell, then its result (Bash / a
                      command_execution item)
    garbage           a line that is not JSON, then a JSON line of a kind no parser knows
    stderr TEXT       a line on stderr
    exit CODE         stop now with this exit code (after the result line if CODE is 0)
    fail MESSAGE      an API error, reported as the real CLI reports one; exit code 1
    grandchild        start a grandchild that ignores SIGTERM and sleeps; says "grandchild PID"
    ignore_term       ignore SIGTERM from now on (so only SIGKILL ends it)

A prompt whose first word is not a step is answered with "echo: PROMPT", and a step that is
not known is skipped. After the last step comes the CLI's closing line (Claude's ``result``
with a cost of $0.0123, Codex's ``turn.completed``). ``--resume ID`` (Claude) and ``resume
ID`` (Codex) continue session ID; otherwise a new session id is made up. ``--version``
prints a version.

How it is started: as ``claude`` or ``codex`` (a link or launcher of that name), or as
``fake_agent.py claude|codex|plain ARGS...``; ``plain`` prints the texts as plain lines, for
the command agent. Like the real CLIs it reads the prompt from stdin when the command line
has none (``claude -p`` without a prompt, ``codex exec ... -``). With ``CADENZA_REPLAY=FILE``
in its environment it ignores the prompt and prints FILE, a recorded real stream, line by
line, ending with the exit code the real CLI had (1 after an error result, else 0). Every run
is appended to ``$FAKE_AGENT_LOG`` when set: mode, argv, pid, prompt and whether it came on
stdin, one JSON object per line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid


def big_text(size: int) -> str:
    lines = (f"L{n:05d} " + "0123456789" * 7 + "\n" for n in range(1, size // 78 + 2))
    return "".join(lines)[:size]


class Claude:
    def __init__(self, session: str) -> None:
        self.session = session
        self.texts: list[str] = []

    def start(self) -> None:
        emit({"type": "system", "subtype": "init", "session_id": self.session,
              "model": "fake", "cwd": os.getcwd(), "tools": ["Bash"]})

    def text(self, text: str) -> None:
        self.texts.append(text)
        emit({"type": "assistant", "session_id": self.session,
              "message": {"id": "msg", "role": "assistant",
                          "content": [{"type": "text", "text": text}]}})

    def tool(self, command: str) -> None:
        tool_id = "toolu_" + uuid.uuid4().hex[:8]
        emit({"type": "assistant", "session_id": self.session, "message": {
            "content": [{"type": "tool_use", "id": tool_id, "name": "Bash",
                         "input": {"command": command}}]}})
        done = subprocess.run(command, shell=True, capture_output=True, text=True)
        emit({"type": "user", "session_id": self.session, "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": done.stdout,
             "is_error": done.returncode != 0}]}})

    def fail(self, message: str) -> None:
        self.text(f"API Error: {message}")
        self.finish(error=f"API Error: {message}")
        sys.exit(1)

    def finish(self, error: str | None = None) -> None:
        emit({"type": "result", "subtype": "success", "is_error": error is not None,
              "result": error or (self.texts[-1] if self.texts else ""),
              "session_id": self.session, "total_cost_usd": 0.0123, "duration_ms": 42,
              "num_turns": 1, "permission_denials": []})


class Codex:
    def __init__(self, session: str) -> None:
        self.session = session
        self.items = 0

    def item(self, kind: str, item: dict) -> None:
        emit({"type": kind, "item": {"id": f"item_{self.items}", **item}})

    def start(self) -> None:
        emit({"type": "thread.started", "thread_id": self.session})
        emit({"type": "turn.started"})

    def text(self, text: str) -> None:
        self.item("item.completed", {"type": "agent_message", "text": text})
        self.items += 1

    def tool(self, command: str) -> None:
        self.item("item.started", {"type": "command_execution", "command": command,
                                   "aggregated_output": "", "exit_code": None})
        done = subprocess.run(command, shell=True, capture_output=True, text=True)
        self.item("item.completed", {"type": "command_execution", "command": command,
                                     "aggregated_output": done.stdout,
                                     "exit_code": done.returncode})
        self.items += 1

    def fail(self, message: str) -> None:
        wrapped = json.dumps({"error": {"message": message}})
        emit({"type": "error", "message": wrapped})
        emit({"type": "turn.failed", "error": {"message": wrapped}})
        sys.exit(1)

    def finish(self, error: str | None = None) -> None:
        emit({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}})


class Plain:
    def __init__(self, session: str) -> None:
        pass

    def start(self) -> None:
        pass

    def text(self, text: str) -> None:
        print(text, flush=True)

    def tool(self, command: str) -> None:
        subprocess.run(command, shell=True)

    def fail(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        sys.exit(1)

    def finish(self, error: str | None = None) -> None:
        pass


def emit(message: dict) -> None:
    print(json.dumps(message), flush=True)


def parse_args(mode: str, args: list[str]) -> tuple[str | None, str | None]:
    """(prompt, resume id) from a claude- or codex-shaped command line; the prompt is None
    when it is to be read from stdin."""
    if mode == "claude":
        resume = args[args.index("--resume") + 1] if "--resume" in args else None
        after = args[args.index("-p") + 1:]
        return (after[0] if after and not after[0].startswith("-") else None), resume
    if mode == "codex":
        resume = args[args.index("resume") + 1] if "resume" in args else None
        return (None if args[-1] == "-" else args[-1]), resume
    return " ".join(args), None


def read_prompt() -> str:
    prompt = sys.stdin.read()
    if not prompt:
        print("Error: Input must be provided either through stdin or as a prompt argument",
              file=sys.stderr, flush=True)
        sys.exit(1)
    return prompt


def run_script(agent: Claude | Codex | Plain, prompt: str) -> None:
    steps = [step.strip() for step in re.split(r"[;\n]", prompt) if step.strip()]
    known = {"say", "tick", "sleep", "big", "tool", "garbage", "stderr", "exit", "fail",
             "grandchild", "ignore_term"}
    if not steps or steps[0].split()[0] not in known:
        agent.text(f"echo: {prompt}")
        return
    for step in steps:
        word, _, rest = step.partition(" ")
        if word == "say":
            agent.text(rest)
        elif word == "tick":
            count, seconds, text = rest.split(" ", 2)
            for i in range(1, int(count) + 1):
                agent.text(f"{text} {i}")
                if i < int(count):
                    time.sleep(float(seconds))
        elif word == "sleep":
            time.sleep(float(rest))
        elif word == "big":
            agent.text(big_text(int(rest)))
        elif word == "tool":
            agent.tool(rest)
        elif word == "garbage":
            print("this is not json {", flush=True)
            emit({"type": "something.new", "payload": [1, 2, 3]})
        elif word == "stderr":
            print(rest, file=sys.stderr, flush=True)
        elif word == "exit":
            if int(rest) == 0:
                agent.finish()
            sys.exit(int(rest))
        elif word == "fail":
            agent.fail(rest)
        elif word == "grandchild":
            child = subprocess.Popen(
                [sys.executable, "-c", "import signal, time\n"
                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"])
            agent.text(f"grandchild {child.pid}\n")
        elif word == "ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def replay(path: str) -> None:
    """Print a recorded stream as it is; exit as the CLI that printed it did."""
    code = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            sys.stdout.write(line)
            sys.stdout.flush()
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and (
                    message.get("type") == "turn.failed"
                    or (message.get("type") == "result" and message.get("is_error"))):
                code = 1
    sys.exit(code)


def main() -> None:
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    mode = name if name in ("claude", "codex") else args.pop(0)
    if "--version" in args:
        print(f"{mode} fake 1.0")
        return
    prompt, resume = parse_args(mode, args)
    on_stdin = prompt is None
    prompt = read_prompt() if prompt is None else prompt
    if log := os.environ.get("FAKE_AGENT_LOG"):
        with open(log, "a") as handle:
            handle.write(json.dumps({"mode": mode, "argv": args, "pid": os.getpid(),
                                     "prompt": prompt, "stdin": on_stdin}) + "\n")
    if recording := os.environ.get("CADENZA_REPLAY"):
        replay(recording)
    session = resume or str(uuid.uuid4())
    agent = {"claude": Claude, "codex": Codex}.get(mode, Plain)(session)
    agent.start()
    run_script(agent, prompt)
    agent.finish()


if __name__ == "__main__":
    main()
