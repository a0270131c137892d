"""plugins.toml: reading it, locating keys for error messages, typed access to settings.

Reading uses the stdlib ``tomllib``; editing (``cadenza plugins enable``) uses tomlkit so
comments survive (see ``cadenza.cli``). Every setting has its default in the code that reads it,
so a missing file or key means "the documented default".
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
D = TypeVar("D")

DEFAULT_CONFIG = "plugins.toml"
_MISSING: Any = object()


class ConfigError(Exception):
    """A bad configuration: the CLI prints it and exits with code 2."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(where + message)


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Config:
    """The parsed file plus what is needed to point at a line in it."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @classmethod
    def load(cls, path: Path) -> Config:
        """Parse ``path``; a missing file is the embedded defaults."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file: {exc}", path=path) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"at line (\d+)", str(exc))
            line = int(found.group(1)) if found else None
            raise ConfigError(f"not valid TOML: {exc}", path=path, line=line) from None
        return cls(path, data, text)

    @property
    def exists(self) -> bool:
        return bool(self.text)

    def line_of(self, table: str, key: str | None = None) -> int | None:
        """The 1-based line where ``key`` is set inside ``[table]`` (or the table header)."""
        current = ""
        header = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")
        assign = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
        for number, line in enumerate(self.text.splitlines(), 1):
            found = header.match(line)
            if found:
                current = found.group(1)
                if key is None and current == table:
                    return number
            elif assign and current == table and assign.match(line):
                return number
        return None

    def error(self, table: str, key: str | None, message: str) -> ConfigError:
        name = f"[{table}] {key}" if key else f"[{table}]"
        # a key missing from the file is pointed at through its table's header
        line = self.line_of(table, key) or self.line_of(table)
        return ConfigError(f"{name}: {message}", path=self.path, line=line)

    def settings(self, table: str) -> Settings:
        """The typed view of one table (``"agent.claude"`` for nested ones)."""
        node: Any = self.data
        for part in table.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        if not isinstance(node, Mapping):
            raise self.error(table, None, "must be a table")
        return Settings(self, table, node)

    def switches(self) -> dict[str, bool]:
        """The ``[plugins]`` table: plugin name → on/off."""
        table = self.settings("plugins")
        for key, value in table.values.items():
            if not isinstance(value, bool):
                raise self.error("plugins", key, f"must be true or false, not {value!r}")
        return dict(table.values)


@dataclass
class Settings:
    """One table of plugins.toml with typed getters that raise located ``ConfigError``s."""

    config: Config
    table: str
    values: Mapping[str, Any]

    def error(self, key: str | None, message: str) -> ConfigError:
        return self.config.error(self.table, key, message)

    def get(self, key: str, default: T, kind: type | tuple[type, ...] = _MISSING) -> T:
        value = self.values.get(key, default)
        expected = type(default) if kind is _MISSING else kind
        # bool is an int in Python, but `seconds = true` is a mistake
        if isinstance(value, bool) and expected is not bool and bool not in _as_tuple(expected):
            raise self.error(key, f"must be {_describe(expected)}, not {value!r}")
        if not isinstance(value, expected):
            raise self.error(key, f"must be {_describe(expected)}, not {value!r}")
        return value  # type: ignore[return-value]

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        value = float(self.get(key, default, (int, float)))
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, not {value:g}")
        return value

    def string(self, key: str, default: str) -> str:
        return self.get(key, default, str)

    def strings(self, key: str, default: Sequence[str] = ()) -> list[str]:
        value = self.get(key, list(default), list)
        if not all(isinstance(item, str) for item in value):
            raise self.error(key, f"must be a list of strings, not {value!r}")
        return list(value)

    def numbers(self, key: str, default: Sequence[float] = ()) -> list[float]:
        value = self.get(key, list(default), list)
        if not all(isinstance(i, int | float) and not isinstance(i, bool) for i in value):
            raise self.error(key, f"must be a list of numbers, not {value!r}")
        return [float(item) for item in value]

    def ids(self, key: str) -> set[str]:
        """A list of chat/user ids, written as numbers or strings; kept as strings."""
        value = self.get(key, [], list)
        if not all(isinstance(i, int | str) and not isinstance(i, bool) for i in value):
            raise self.error(key, f"must be a list of ids (numbers or strings), not {value!r}")
        return {str(item) for item in value}

    def mapping(self, key: str) -> dict[str, str]:
        value = self.get(key, {}, dict)
        if not all(isinstance(v, str) for v in value.values()):
            raise self.error(key, "must be a table of strings")
        return dict(value)

    def load(self, model: type[D]) -> D:
        """This table as an instance of the dataclass ``model``: each field a key, its type
        checked (str, int, float, bool, list[...] of those, dict[str, ...], ``X | None``),
        ``field(metadata={"minimum": N})`` honoured, unknown keys and missing required ones
        refused — every error located at plugins.toml's line for the key."""
        if not dataclasses.is_dataclass(model):
            raise TypeError(f"{model.__name__} is not a dataclass")
        hints = typing.get_type_hints(model)
        fields = {f.name: f for f in dataclasses.fields(model) if f.init}
        self.reject_unknown(list(fields))
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            if name not in self.values:
                if (spec.default is dataclasses.MISSING
                        and spec.default_factory is dataclasses.MISSING):
                    raise self.error(None, f"{name} is required")
                continue
            value = _typed(self, name, self.values[name], hints[name])
            minimum = spec.metadata.get("minimum")
            if minimum is not None and value is not None and value < minimum:
                raise self.error(name, f"must be at least {minimum:g}, not {value!r}")
            values[name] = value
        return model(**values)

    def reject_unknown(self, known: Sequence[str]) -> None:
        """Refuse keys this table does not have, with a suggestion."""
        for key, value in self.values.items():
            if key not in known and not isinstance(value, Mapping):
                raise self.error(key, "unknown setting" + did_you_mean(key, known))


def _typed(settings: Settings, key: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against a field's type annotation (ints become floats for float)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        kinds = [arg for arg in args if arg is not type(None)]
        if len(kinds) == 1:
            return _typed(settings, key, value, kinds[0])
    if origin is list:
        if not isinstance(value, list):
            raise settings.error(key, f"must be a list, not {value!r}")
        item = args[0] if args else Any
        return [_typed(settings, key, element, item) for element in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise settings.error(key, f"must be a table, not {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _typed(settings, key, v, item) for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(annotation, type):
        raise TypeError(f"setting {key}: unsupported type {annotation!r}")
    if not isinstance(value, annotation) or (isinstance(value, bool) and annotation is not bool):
        raise settings.error(key, f"must be {_describe(annotation)}, not {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _as_tuple(kind)))


def resolve_paths(config: str | None, state_dir: str | None) -> tuple[Path, Path]:
    """Where the config and state live: flags, then environment, then defaults."""
    config_path = Path(config or os.environ.get("CADENZA_CONFIG") or DEFAULT_CONFIG)
    state = state_dir or os.environ.get("CADENZA_STATE_DIR")
    state_path = Path(state) if state else config_path.resolve().parent / ".cadenza"
    return config_path, state_path
