"""A plugin's table read into a dataclass, with errors located at the line of the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cadenza.api import Config, ConfigError


@dataclass
class BudgetSettings:
    daily_usd: float
    warn_at: float = field(default=0.8, metadata={"minimum": 0})
    timezone: str = "UTC"
    exempt_users: list[str] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    strict: bool = False


def table(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "plugins.toml"
    path.write_text("[plugins]\nconsole = false\n\n[budget]\n" + text)
    return Config.load(path)


def test_a_table_loads_into_a_dataclass_with_defaults(tmp_path: Path) -> None:
    config = table(tmp_path, 'daily_usd = 5\nexempt_users = ["1"]\nlimits = { alice = 2 }\n')
    loaded = config.settings("budget").load(BudgetSettings)
    assert loaded == BudgetSettings(daily_usd=5.0, exempt_users=["1"], limits={"alice": 2.0})
    assert isinstance(loaded.daily_usd, float)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("daily_usd = 5\nwarn_at = 'high'\n", 6, "[budget] warn_at: must be a number, not 'high'"),
    ("daily_usd = 5\nwarn_at = -1\n", 6, "[budget] warn_at: must be at least 0, not -1.0"),
    ("daily_usd = true\n", 5, "[budget] daily_usd: must be a number, not True"),
    ("daily_usd = 5\nexempt_users = [1]\n", 6, "[budget] exempt_users: must be a string, not 1"),
    ("daily_usd = 5\ntimezon = 'UTC'\n", 6, "[budget] timezon: unknown setting (did you mean "
                                           "'timezone'?)"),
    ("warn_at = 0.5\n", 4, "[budget]: daily_usd is required"),
    ("daily_usd = 5\nnote = 3\n", 6, "[budget] note: must be a string, not 3"),
])
def test_every_mistake_is_located(tmp_path: Path, text: str, line: int, message: str) -> None:
    config = table(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        config.settings("budget").load(BudgetSettings)
    assert str(error.value) == f"{config.path}:{line}: {message}"
