"""``cadenza plugins new``: a scaffolded plugin installs for real (into an overlay, see
test_example_plugin) and its tests pass as generated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_example_plugin import ROOT, overlay_venv, run


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    return overlay_venv(tmp_path / "venv")


def test_a_scaffolded_plugin_installs_and_its_tests_pass_as_generated(
        overlay: Path, tmp_path: Path) -> None:
    made = run(overlay, "-m", "cadenza.cli", "plugins", "new", "hello_world", "--dir",
               str(tmp_path / "work"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "work" / "cadenza-hello-world"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        ".gitignore", "README.md", "pyproject.toml", "src/cadenza_hello_world/__init__.py",
        "tests/test_hello_world.py"]
    assert 'hello_world = "cadenza_hello_world:HelloWorld"' in (root / "pyproject.toml").read_text()
    module = (root / "src" / "cadenza_hello_world" / "__init__.py").read_text()
    assert "CADENZA_PLUGIN_API_VERSION = 1" in module and "from cadenza.api import" in module
    readme = (root / "README.md").read_text()
    for step in ("cadenza plugins install", "cadenza plugins enable hello_world",
                 "python -m pytest", "twine upload"):
        assert step in readme

    # the generated code is as clean as Cadenza's own
    lint = run(Path(sys.executable), "-m", "ruff", "check", "--no-cache", "--config",
               str(ROOT / "pyproject.toml"), str(root), cwd=root)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    config = tmp_path / "plugins.toml"
    config.write_text("# my settings\n[plugins]\nconsole = false  # no terminal here\n")
    installed = run(overlay, "-m", "cadenza.cli", "plugins", "install", "--editable", str(root),
                    "--config", str(config), cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "hello_world: installed cadenza-hello-world 0.1.0, enabled in" in installed.stdout
    assert config.read_text() == (
        "# my settings\n[plugins]\nconsole = false  # no terminal here\nhello_world = true\n")

    tests = run(overlay, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    listed = run(overlay, "-m", "cadenza.cli", "plugins", "list", "--json", "--config",
                 str(config), cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["hello_world"]["source"] == "cadenza-hello-world 0.1.0"
    assert rows["hello_world"]["enabled"] and rows["hello_world"]["health"] == "ok"
    assert rows["hello_world"]["hooks"] == ["register_commands"]


@pytest.mark.parametrize(("name", "needle"), [
    ("Hello", "invalid plugin name 'Hello'"),
    ("2fast", "invalid plugin name '2fast'"),
    ("my-plugin", "invalid plugin name 'my-plugin'"),
    ("a__b", "invalid plugin name 'a__b'"),
    ("x" * 33, "invalid plugin name"),
    ("class", "it is a Python keyword"),
    ("journal", "'journal' is a built-in plugin of Cadenza"),
    ("help", "'help' is already a chat command (/help)"),
])
def test_bad_names_are_refused(run_cli, tmp_path: Path, name: str, needle: str) -> None:
    done = run_cli("plugins", "new", name)
    assert done.returncode == 2 and needle in done.stderr
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.glob("cadenza-*"))


def test_an_existing_folder_is_never_overwritten(run_cli, tmp_path: Path) -> None:
    (tmp_path / "cadenza-mine").mkdir()
    (tmp_path / "cadenza-mine" / "keep.txt").write_text("mine")
    done = run_cli("plugins", "new", "mine")
    assert done.returncode == 2 and "already exists" in done.stderr
    assert [p.name for p in (tmp_path / "cadenza-mine").iterdir()] == ["keep.txt"]
