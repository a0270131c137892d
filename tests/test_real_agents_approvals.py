"""Tool approvals with the real Claude Code CLI against the fake model API.

``cadenza run`` with the console and ``[approvals] mode = "chat"``; the scripted model asks
for a Bash tool touching a file outside the working directory, which Claude Code does not
allow by itself, so it asks Cadenza (``--permission-prompt-tool stdio``) and Cadenza asks the
console. The claude binary is wrapped by a shim that forwards its stdout and notes when each
``control_request`` line came, so the added latency up to the question on the console is
measured (printed; the issue's target is under 300 ms). Also: a rule allowed for the conversation
is honoured by the real CLI (no question in later turns, also after a restart; asked again
after /new), and an unanswered request is denied at its timeout without the turn timing out.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_real_agents import (  # noqa: F401  (fixtures)
    Cadenza,
    Rig,
    _inline_table,
    binaries,
    fake,
    no_remote_requests,
    rig,
)

pytestmark = pytest.mark.agent_cli

SHIM = '''import os, subprocess, sys, time
log = open(sys.argv[1], "a", buffering=1)
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
for line in child.stdout:
    if b'"control_request"' in line:
        log.write(f"{time.time()}\\n")
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
sys.exit(child.wait())
'''


def configure(setup: Rig, requests_log: Path, timeout: str = "kill_grace = 2",
              approvals_timeout: float = 120) -> None:
    shim = setup.root / "claude-shim"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} {setup.root / 'shim.py'} "
                    f"{requests_log} {setup.binary} \"$@\"\n")
    shim.chmod(0o755)
    (setup.root / "shim.py").write_text(SHIM)
    setup.config.write_text(
        '[plugins]\nconsole = true\n\n'
        f'[agent]\ndefault = "claude"\nworkdir = {json.dumps(str(setup.project))}\n\n'
        f'[agent.claude]\nbinary = {json.dumps(str(shim))}\n'
        f'env = {_inline_table(setup.agent_env())}\n\n'
        f'[timeout]\n{timeout}\n\n[approvals]\nmode = "chat"\ntimeout = {approvals_timeout}\n')


@pytest.fixture
def claude(rig: Rig) -> Iterator[tuple[Rig, Path]]:  # noqa: F811 (the imported fixture)
    requests_log = rig.root / "control-requests.log"
    configure(rig, requests_log)
    yield rig, requests_log


def question(run: Cadenza, since: int) -> tuple[str, float]:
    """The key of the question asked on the console after ``since``, and when it came."""
    line = run.line_with("/approve ", since=since)
    seen_at = time.time()
    return line.split()[1], seen_at


def latency(requests_log: Path, seen_at: float) -> float:
    asked_at = float(requests_log.read_text().split()[-1])
    return seen_at - asked_at


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
def test_allow_once_runs_the_tool_and_the_answer_arrives(claude) -> None:
    setup, requests_log = claude
    outside = setup.root / "outside-allowed"
    run = setup.start()
    since = run.send(f"tool touch {outside}; say the file is there")
    key, seen_at = question(run, since)
    added = latency(requests_log, seen_at)
    print(f"\nadded latency, control_request → question on the console: {added * 1000:.0f} ms")
    assert f"$ touch {outside}" in run.out[since:]
    assert not outside.exists()
    run.send(f"/approve {key}")
    out = run.read_until("✅ done", since=since)
    assert outside.exists(), run.transcript()
    assert "✅ allowed once by" in out and "the file is there" in out
    assert added < 1.0, f"{added:.3f} s from the request to the question"
    assert run.close() == 0, run.transcript()
    argvs = [argv for argv in run.argvs if "--permission-prompt-tool" in argv]
    assert argvs and all("--setting-sources" in argv for argv in argvs)
    no_remote_requests(setup)


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
def test_deny_with_a_reason_reaches_the_model(claude) -> None:
    setup, _ = claude
    outside = setup.root / "outside-denied"
    run = setup.start()
    since = run.send(f"tool touch {outside}; say after the tool")
    key, _ = question(run, since)
    run.send(f"/deny {key} not today")
    out = run.read_until("✅ done", since=since)
    assert not outside.exists()
    assert "⛔ denied by" in out and "“not today”" in out
    results = [block for request in setup.api.requests("/v1/messages")
               for message in (request.body or {}).get("messages", [])
               if isinstance(message.get("content"), list)
               for block in message["content"] if block.get("type") == "tool_result"]
    assert results, run.transcript()
    content = results[-1]["content"]
    text = content if isinstance(content, str) else json.dumps(content)
    assert "the user said: not today" in text and results[-1].get("is_error")
    assert run.close() == 0, run.transcript()
    no_remote_requests(setup)


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
def test_allow_for_the_conversation_until_new_also_after_a_restart(claude) -> None:
    setup, _ = claude
    outside = setup.root / "outside-remembered"
    prompt = f"tool touch {outside}; say touched"
    run = setup.start()
    since = run.send(prompt)
    key, _ = question(run, since)
    run.send(f"/approve {key} conversation")
    out = run.read_until("✅ done", since=since)
    assert f"♾ allowed for this conversation by console: Bash(touch {outside})" in out
    outside.unlink()
    since = run.send(prompt)  # the same request, a later turn: the CLI does not ask
    out = run.read_until("✅ done", since=since)
    assert outside.exists() and "/approve" not in out, run.transcript()
    assert run.close() == 0, run.transcript()

    outside.unlink()
    run = setup.start()  # a restart: the foreground conversation and its rule go on
    since = run.send(prompt)
    out = run.read_until("✅ done", since=since)
    assert outside.exists() and "/approve" not in out, run.transcript()
    run.send("/new")
    since = run.send(prompt)
    key, _ = question(run, since)  # a fresh conversation: asked again
    run.send(f"/deny {key}")
    run.read_until("✅ done", since=since)
    assert run.close() == 0, run.transcript()
    no_remote_requests(setup)


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
def test_no_answer_is_denied_and_the_wait_costs_the_turn_nothing(claude) -> None:
    setup, requests_log = claude
    configure(setup, requests_log, "seconds = 4\nwarn_before = [1]\nkill_grace = 2", 5)
    outside = setup.root / "outside-unanswered"
    run = setup.start()
    since = run.send(f"tool touch {outside}; say went on")
    question(run, since)
    asked = len(run.out)
    started = time.monotonic()
    out = run.read_until("✅ done", since=since, timeout=30)
    assert time.monotonic() - started > 4.5  # the 5 s wait, longer than the turn's 4 s
    assert not outside.exists()
    assert "⌛ denied: no answer from the user within 5 s" in out
    assert "went on" in out, run.transcript()
    waiting = run.out[asked:run.out.index("⌛ denied", asked)]
    assert "left (running" not in waiting, run.transcript()  # no warning while it waited
    assert run.close() == 0, run.transcript()
    no_remote_requests(setup)


@pytest.mark.parametrize("rig", ["claude"], indirect=True)
def test_a_crash_while_a_request_is_open_answers_nothing_and_asks_again(claude) -> None:
    setup, _ = claude
    outside = setup.root / "outside-after-crash"
    first = setup.start()
    since = first.send(f"tool touch {outside}; say touched")
    old, _ = question(first, since)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)

    second = setup.start()
    lapsed = second.line_with(f"Request {old} lapsed")
    assert "nothing was allowed" in lapsed
    # the journal resumed the turn (the fake model only echoes a resumed prompt, with its
    # note after the script; a real model would ask for the tool again)
    second.read_until("✅ done")
    second.send(f"/approve {old}")
    second.read_until(f"No request {old} is waiting here.")
    assert not outside.exists()
    since = second.send(f"tool touch {outside}; say touched")
    key, _ = question(second, since)  # asked again: a new request, a new question
    assert key != old
    second.send(f"/approve {key}")
    second.read_until("✅ done", since=since)
    assert outside.exists(), second.transcript()
    assert second.close() == 0, second.transcript()
    no_remote_requests(setup)


@pytest.mark.parametrize("rig", ["codex"], indirect=True)
def test_codex_read_only_then_run_again_with_write_access(rig: Rig) -> None:  # noqa: F811
    rig.config.write_text(
        '[plugins]\nconsole = true\n\n'
        f'[agent]\ndefault = "codex"\nworkdir = {json.dumps(str(rig.project))}\n\n'
        f'[agent.codex]\nbinary = {json.dumps(str(rig.binary))}\n'
        f'args = {json.dumps(rig.agent_args())}\n'
        f'env = {_inline_table(rig.agent_env())}\n\n[approvals]\nmode = "chat"\n')
    inside = rig.project / "written"
    run = rig.start()
    since = run.send(f"tool touch {inside}; say tried")
    line = run.line_with("/writable ", since=since)
    assert not inside.exists()  # the read-only sandbox refused it
    key = line.split("/writable ", 1)[1].split()[0]
    since = run.send(f"/writable {key}")
    run.read_until("✅ done", since=since, timeout=60)
    assert inside.exists(), run.transcript()
    resumed = [argv for argv in run.argvs if "resume" in argv]
    assert resumed and all("workspace-write" in argv for argv in resumed), run.transcript()
    assert run.close() == 0, run.transcript()
    no_remote_requests(rig)
