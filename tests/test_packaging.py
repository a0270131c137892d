"""What `pip install` puts into site-packages: one import name, `cadenza`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("cadenza-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"cadenza"}
    for module in ("cadenza/api.py", "cadenza/loader.py", "cadenza/plugins/journal.py",
                   "cadenza/frontends/console.py", "cadenza/frontends/telegram/plugin.py"):
        assert module in names
    # every module of the repository's three folders, under its installed name
    for folder, installed in (("core", "cadenza"), ("plugins", "cadenza/plugins"),
                              ("frontends", "cadenza/frontends")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"{installed}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "journal = cadenza.plugins.journal:RecoveryJournal" in text
    assert "cadenza = cadenza.cli:main" in text
    # the test kit: a pytest plugin, its scripted agent and every recorded stream
    assert "[pytest11]\ncadenza = cadenza.testing\n" in text
    for module in ("__init__.py", "fake_agent.py", "harness.py", "streams/README.md"):
        assert f"cadenza/testing/{module}" in names
    streams = sorted(path.name for path in (ROOT / "core" / "testing" / "streams").glob("*.jsonl"))
    assert len(streams) >= 17
    assert sorted(n.rsplit("/", 1)[1] for n in names
                  if n.startswith("cadenza/testing/streams/") and n.endswith(".jsonl")) == streams
