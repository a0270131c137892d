"""The example plugin, examples/cadenza-budget: ``cadenza plugins install`` puts it into a fresh
environment beside Cadenza, switches it on and ``cadenza plugins list --json`` shows it. Its own
tests run with Cadenza's (testpaths).

Installing goes into an *overlay*: a fresh virtual environment that sees this environment's
packages (Cadenza, pytest, SQLAlchemy) through a ``.pth`` file, so ``pip install`` runs for
real — entry points, editable finders and all — without touching the environment the other
tests run in, and everything goes away with ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cadenza-budget"


def overlay_venv(path: Path) -> Path:
    """A virtual environment at ``path`` stacked on this one; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        ours[site.getusersitepackages()] = None
    # addsitedir, not a bare path: their .pth files (editable installs) must work too
    line = "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in ours) + "\n"
    Path(purelib, "_cadenza_overlay.pth").write_text(line)
    return python


def run(python: Path, *args: str, cwd: Path, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env})


def test_the_example_installs_beside_cadenza_and_is_listed(tmp_path: Path) -> None:
    python = overlay_venv(tmp_path / "venv")
    config = tmp_path / "plugins.toml"
    original = "[plugins]\nconsole = false  # the terminal\n\n# budgets\n[budget]\ndaily_usd = 2\n"
    config.write_text(original)
    installed = run(python, "-m", "cadenza.cli", "plugins", "install", str(EXAMPLE),
                    "--config", str(config), cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "budget: installed cadenza-budget 0.1.0, enabled in" in installed.stdout
    assert "budget: loads; hooks: doctor_checks, on_inbound_message" in installed.stdout
    assert config.read_text() == original.replace(
        "# the terminal\n", "# the terminal\nbudget = true\n")
    # a real install, not this checkout: the overlay has its own copy of the package
    where = run(python, "-c", "import cadenza_budget; print(cadenza_budget.__file__)",
                cwd=tmp_path)
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr

    listed = run(python, "-m", "cadenza.cli", "plugins", "list", "--json", "--config",
                 str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = {row["name"]: row for row in json.loads(listed.stdout)}["budget"]
    assert row["source"] == "cadenza-budget 0.1.0"
    assert row["target"] == "cadenza_budget:Budget"
    assert row["enabled"] is True and row["health"] == "ok"
    assert row["hooks"] == ["doctor_checks", "on_inbound_message", "on_start",
                            "on_stream_event", "register_commands", "report_status"]


def test_a_failing_pip_is_a_clear_error_with_its_last_lines(run_cli, tmp_path: Path) -> None:
    (tmp_path / "not-a-project").mkdir()
    config = tmp_path / "plugins.toml"
    config.write_text("[plugins]\nconsole = false\n")
    done = run_cli("plugins", "install", str(tmp_path / "not-a-project"))
    assert done.returncode == 1
    assert f"cadenza: pip could not install {tmp_path / 'not-a-project'} (exit code 1); its " \
           "last lines:" in done.stderr
    assert "ERROR: " in done.stderr and "not installable" in done.stderr
    assert "Traceback" not in done.stderr
    assert config.read_text() == "[plugins]\nconsole = false\n"


def test_bad_usage_is_refused_before_pip_runs(run_cli, tmp_path: Path) -> None:
    bad = run_cli("plugins", "install", "--editable", "no-such-folder")
    assert bad.returncode == 2 and "--editable needs a folder" in bad.stderr
    broken = tmp_path / "plugins.toml"
    broken.write_text("[plugins\n")
    refused = run_cli("plugins", "install", str(EXAMPLE))
    assert refused.returncode == 2 and "not valid TOML" in refused.stderr


def test_the_suite_runs_the_examples_tests_too() -> None:
    """``python -m pytest`` (the README's command, what .ci/run runs) collects both."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "examples/cadenza-budget/tests" in config["ini_options"]["testpaths"]
    assert list((EXAMPLE / "tests").glob("test_*.py"))
    assert "pip install --quiet -e examples/cadenza-budget" in (ROOT / ".ci" / "run").read_text()
