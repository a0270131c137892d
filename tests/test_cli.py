"""The ``cadenza`` command as a user runs it: a real process, real stdin and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import gone, read_until, start


@pytest.fixture
def env(agent_bin: Path) -> dict[str, str]:
    return {"PATH": f"{agent_bin}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("[plugins]\nconsole = true\n[timeout\nseconds = 5\n", 3, "not valid TOML"),
    ("[plugins]\nconsole = true\n\n[timeout]\nkill_grace = 'soon'\n", 5,
     "[timeout] kill_grace: must be a number, not 'soon'"),
    ("[plugins]\nconsole = 'yes'\n", 2, "[plugins] console: must be true or false"),
    ("[plugins]\nconsole = true\ntelegarm = true\n", 3, "did you mean 'telegram'?"),
    ("[agent]\ndefault = 'gpt'\n", 2, "[agent] default: unknown agent 'gpt'"),
    ("[agent]\ncommand = ['echo']\n", 2, "must contain {prompt}"),
    ("[agent]\nworkdri = '.'\n", 2, "[agent] workdri: unknown setting (did you mean 'workdir'?)"),
])
def test_bad_config_exits_2_naming_file_line_and_key(
    run_cli, tmp_path: Path, text: str, line: int, needle: str
) -> None:
    if "telegarm" in text:
        pytest.importorskip("cadenza.frontends.telegram")
    config = tmp_path / "plugins.toml"
    config.write_text(text)
    done = run_cli("run", "--config", str(config), input="")
    assert done.returncode == 2
    assert f"{config}:{line}:" in done.stderr and needle in done.stderr
    assert "Traceback" not in done.stderr


def test_run_on_embedded_defaults_with_a_pipe(run_cli, tmp_path: Path) -> None:
    done = run_cli("run", input="echo hello from sh\n", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("▶️ Cadenza started\nhello from sh\n✅ done")
    assert "agent: command (neither claude nor codex is on PATH" in done.stderr
    assert (tmp_path / ".cadenza" / "state.db").exists()


def test_end_of_input_waits_for_the_running_turn(run_cli, env) -> None:
    done = run_cli("run", input="tick 3 0.2 part\n", env=env)
    assert done.returncode == 0, done.stderr
    assert "part 1\n\npart 2\n\npart 3\n✅ done" in done.stdout


def test_sigterm_interrupts_the_turn_and_exits_promptly(env, tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text("[timeout]\nkill_grace = 0.5\n")
    proc = start(["run"], env, tmp_path)
    proc.stdin.write("ignore_term; grandchild; sleep 60\n")
    proc.stdin.flush()
    seen = read_until(proc, "grandchild ")
    while not seen.endswith("\n"):
        seen += read_until(proc, "\n")
    grandchild = int(seen.split("grandchild ")[1].split()[0])
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - began < 5
    assert "⏸ interrupted" in out
    assert gone(grandchild)


def test_a_second_instance_on_the_same_state_is_refused(env, tmp_path: Path, run_cli) -> None:
    first = start(["run"], env, tmp_path)
    first.stdin.write("say ready\n")
    first.stdin.flush()
    read_until(first, "ready")
    second = run_cli("run", input="", env=env)
    first.stdin.close()
    first.wait(timeout=10)
    assert second.returncode == 1
    assert "another Cadenza (pid" in second.stderr and "already running" in second.stderr


def test_doctor_reports_agents_and_fails_on_a_missing_one(run_cli, env, tmp_path: Path) -> None:
    ok = run_cli("doctor", env=env)
    assert ok.returncode == 0, ok.stdout
    assert "✓ claude: claude fake 1.0" in ok.stdout
    assert "✓ state directory" in ok.stdout
    (tmp_path / "plugins.toml").write_text(
        '[agent]\ndefault = "codex"\n[agent.codex]\nbinary = "missing-codex"\n')
    bad = run_cli("doctor", env=env)
    assert bad.returncode == 1
    assert "✗ codex: missing-codex is not on PATH" in bad.stdout


def test_status_before_and_after_a_run(run_cli, env) -> None:
    before = run_cli("status", "--json", env=env)
    assert before.returncode == 0 and "has not run" in before.stdout
    run_cli("run", input="say hi\n", env=env)
    after = run_cli("status", env=env)
    assert after.returncode == 0, after.stderr
    assert "state_dir" in after.stdout


def test_usage_errors_exit_2(run_cli) -> None:
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("plugins").returncode == 2


def test_inspection_commands_report_every_plugin_problem(run_cli, tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text(
        "[plugins]\ntelegram = true\n[telegram]\nallowed_users = [1]\n"
        "[timeout]\nseconds = 10\nwarn_before = [60]\n")
    env = {"TELEGRAM_BOT_TOKEN": ""}
    run = run_cli("run", input="", env=env)
    assert run.returncode == 2
    listed = run_cli("plugins", "list", env=env)
    assert listed.returncode == 0
    assert "warn_before: each stage must be between 0 and seconds" in listed.stdout
    doctor = run_cli("doctor", env=env)
    assert doctor.returncode == 2
    assert "✗ plugin timeout: configuration error" in doctor.stdout
    assert "✗ plugin telegram: configuration error" in doctor.stdout


def test_undecodable_input_does_not_end_the_console(run_cli, env, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "run"], input=b"say caf\xe9\nsay after\n",
        capture_output=True, env={**os.environ, **env}, cwd=tmp_path, timeout=60)
    out = done.stdout.decode()
    assert done.returncode == 0 and "caf\ufffd" in out and "after" in out


def test_an_unusable_state_directory_is_a_clear_error(run_cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_cli("run", "--state-dir", str(blocker / "state"), input="")
    assert done.returncode == 1 and "cannot use the state directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_shipped_plugins_toml_is_valid(run_cli, tmp_path: Path) -> None:
    from conftest import ROOT

    done = run_cli("doctor", "--config", str(ROOT / "plugins.toml"),
                   "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"configuration {ROOT / 'plugins.toml'} is valid" in done.stdout


def test_doctor_says_who_agents_run_as_and_how_they_are_contained(run_cli, tmp_path) -> None:
    done = run_cli("doctor", env={"PATH": "/usr/bin:/bin"})
    assert "agents run as Cadenza's own user: they can read its state" in done.stdout
    assert "agents are contained by" in done.stdout or "agents are not contained" in done.stdout
    (tmp_path / "plugins.toml").write_text('[agent]\nrun_as = "no-such-user-here"\n')
    done = run_cli("doctor", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "plugins.toml:2: [agent] run_as: there is no user 'no-such-user-here'" in done.stdout
