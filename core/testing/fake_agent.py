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
    ask CMD           (claude) a Bash tool call that needs permission: allowed by an
                      ``--allowedTools`` rule (``Bash`` or ``Bash(CMD)``) it runs at once;
                      with ``--permission-prompt-tool stdio`` it prints a ``can_use_tool``
                      control request and waits for the answer on stdin, then runs CMD and
                      says "approved", or says "denied: MESSAGE"; otherwise it is refused as
                      print mode refuses it ("needs approval")

A prompt whose first word is not a step is answered with "echo: PROMPT" (unless a script
follows its first paragraph: a note such as Cadenza's prompt preamble), and a step that is
not known is skipped. After the last step comes the CLI's closing line (Claude's ``result``
with a cost of $0.0123, Codex's ``turn.completed``). ``--resume ID`` (Claude) and ``resume
ID`` (Codex) continue session ID; otherwise a new session id is made up. ``--version``
prints a version.

How it is started: as ``claude`` or ``codex`` (a link or launcher of that name), or as
``fake_agent.py claude|codex|plain ARGS...``; ``plain`` prints the texts as plain lines, for
the command agent. Like the real CLIs it reads the prompt from stdin when the command line
has none (``claude -p`` without a prompt, ``codex exec ... -``); with ``--input-format
stream-json`` (Claude) it reads JSON lines there instead: it answers the ``initialize``
control request, takes the first user message as the prompt, keeps reading stdin for the
answers to its permission requests, and after its result line waits for stdin to close, as
the real CLI does. With ``CADENZA_REPLAY=FILE``
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
        self.allowed: list[str] = []  # --allowedTools rules
        self.host_answers = False  # --permission-prompt-tool stdio

    def ask(self, command: str) -> None:
        if "Bash" in self.allowed or f"Bash({command})" in self.allowed:
            self.tool(command)
            return
        tool_id = "toolu_" + uuid.uuid4().hex[:8]
        params = {"command": command, "description": f"Run {command}"}
        emit({"type": "assistant", "session_id": self.session, "message": {
            "content": [{"type": "tool_use", "id": tool_id, "name": "Bash", "input": params}]}})
        if not self.host_answers:
            self.tool_result(tool_id, "This command requires approval", error=True)
            return
        request_id = str(uuid.uuid4())
        emit({"type": "control_request", "request_id": request_id, "request": {
            "subtype": "can_use_tool", "tool_name": "Bash", "display_name": "Bash",
            "input": params, "description": params["description"],
            "permission_suggestions": [
                {"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": command}],
                 "behavior": "allow", "destination": "localSettings"},
                {"type": "setMode", "mode": "acceptEdits", "destination": "session"}],
            "blocked_path": None, "tool_use_id": tool_id}})
        answer = control_answer(request_id)
        if answer.get("behavior") == "allow":
            done = subprocess.run(answer["updatedInput"]["command"], shell=True,
                                  capture_output=True, text=True)
            self.tool_result(tool_id, done.stdout, error=done.returncode != 0)
            self.text("approved")
        else:
            self.tool_result(tool_id, answer.get("message", ""), error=True)
            self.text(f"denied: {answer.get('message', '')}")

    def tool_result(self, tool_id: str, content: str, error: bool) -> None:
        emit({"type": "user", "session_id": self.session, "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": content,
             "is_error": error}]}})

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
        self.tool_result(tool_id, done.stdout, error=done.returncode != 0)

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


def stdin_messages():
    """The JSON objects on stdin (stream-json input), one a line; ends at EOF."""
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            yield message


def read_stream_json_prompt() -> str:
    """Answer the initialize request; the first user message is the prompt."""
    for message in stdin_messages():
        if message.get("type") == "control_request":
            emit({"type": "control_response", "response": {
                "subtype": "success", "request_id": message.get("request_id"), "response": {}}})
        elif message.get("type") == "user":
            content = message["message"]["content"]
            return content if isinstance(content, str) else json.dumps(content)
    print("Error: no user message on stdin", file=sys.stderr, flush=True)
    sys.exit(1)


def control_answer(request_id: str) -> dict:
    """The host's answer to permission request ``request_id``; EOF: denied."""
    for message in stdin_messages():
        response = message.get("response") or {}
        if message.get("type") == "control_response" and response.get(
                "request_id") == request_id:
            return response.get("response") or {}
    return {"behavior": "deny", "message": "stdin closed before an answer"}


def option_values(args: list[str], name: str) -> list[str]:
    """The values after every ``name`` up to the next option (variadic, as commander's)."""
    values: list[str] = []
    for at, arg in enumerate(args):
        if arg == name:
            for value in args[at + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
    return values


def parse_args(mode: str, args: list[str]) -> tuple[str | None, str | None]:
    """(prompt, resume id) from a claude- or codex-shaped command line; the prompt is None
    when it is to be read from stdin."""
    if mode == "claude":
        resume = args[args.index("--resume") + 1] if "--resume" in args else None
        if "stream-json" in option_values(args, "--input-format"):
            return None, resume
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


def script_steps(prompt: str, known: set[str]) -> list[str] | None:
    """The steps of a script, None when ``prompt`` is not one. A first paragraph that is not a
    script, before one that is, is a note for the agent (Cadenza's prompt preamble): a model
    reads it and does what the script says, and so does this agent."""
    for text in (prompt, prompt.partition("\n\n")[2]):
        steps = [step.strip() for step in re.split(r"[;\n]", text) if step.strip()]
        if steps and steps[0].split()[0] in known:
            return steps
    return None


def run_script(agent: Claude | Codex | Plain, prompt: str) -> None:
    known = {"say", "tick", "sleep", "big", "tool", "garbage", "stderr", "exit", "fail",
             "grandchild", "ignore_term", "ask"}
    steps = script_steps(prompt, known)
    if steps is None:
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
        elif word == "ask" and isinstance(agent, Claude):
            agent.ask(rest)
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
    stream_json = mode == "claude" and "stream-json" in option_values(args, "--input-format")
    if prompt is None:
        prompt = read_stream_json_prompt() if stream_json else read_prompt()
    if log := os.environ.get("FAKE_AGENT_LOG"):
        with open(log, "a") as handle:
            handle.write(json.dumps({"mode": mode, "argv": args, "pid": os.getpid(),
                                     "prompt": prompt, "stdin": on_stdin}) + "\n")
    if recording := os.environ.get("CADENZA_REPLAY"):
        replay(recording)
    session = resume or str(uuid.uuid4())
    agent = {"claude": Claude, "codex": Codex}.get(mode, Plain)(session)
    if isinstance(agent, Claude):
        agent.allowed = option_values(args, "--allowedTools")
        agent.host_answers = option_values(args, "--permission-prompt-tool") == ["stdio"]
    agent.start()
    run_script(agent, prompt)
    agent.finish()
    if stream_json:
        for _ in stdin_messages():  # like the real CLI: exit once the host closes stdin
            pass


if __name__ == "__main__":
    main()
