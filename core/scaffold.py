"""``cadenza plugins new NAME``: a plugin distribution whose tests pass as generated.

The templates live here as strings, not as package data, so that what is generated cannot go
missing from a wheel. ``$name`` is the plugin's name, ``$module`` its import name, ``$dist`` its
distribution name and ``$cls`` its class.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# The chat commands of the core and of the built-in plugins: the scaffold's plugin adds
# ``/NAME``, which must not take one of them over.
RESERVED_COMMANDS = frozenset({"stop", "new", "status", "help", "session", "sessions", "extend"})


class ScaffoldError(Exception):
    """NAME or the target folder cannot be used."""


def check_name(name: str, builtins: set[str]) -> None:
    """A lowercase identifier, neither a built-in plugin's name nor a chat command's."""
    if not NAME.match(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(
            f"invalid plugin name {name!r}: use 1 to 32 lowercase letters, digits and "
            "single underscores, starting with a letter (e.g. 'wordcount', 'cost_alerts')")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"invalid plugin name {name!r}: it is a Python keyword")
    if name in builtins:
        raise ScaffoldError(f"{name!r} is a built-in plugin of Cadenza; pick another name")
    if name in RESERVED_COMMANDS:
        raise ScaffoldError(f"{name!r} is already a chat command (/{name}); pick another name")


def names(name: str) -> dict[str, str]:
    return {
        "name": name,
        "module": f"cadenza_{name}",
        "dist": f"cadenza-{name.replace('_', '-')}",
        "cls": "".join(part.capitalize() for part in name.split("_")),
    }


def scaffold(name: str, parent: Path, builtins: set[str]) -> Path:
    """Write ``parent/cadenza-NAME/`` and return it; refuses a folder that already exists."""
    check_name(name, builtins)
    values = names(name)
    root = parent / values["dist"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists; remove it or use --dir elsewhere")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        ".gitignore": GITIGNORE,
        f"src/{values['module']}/__init__.py": MODULE,
        f"tests/test_{name}.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return root


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A Cadenza plugin: /$name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["cadenza"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# Cadenza finds plugins in the entry-point group "cadenza": the plugin's name on the left.
[project.entry-points.cadenza]
$name = "$module:$cls"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
'''

MODULE = '''\
"""$dist: a Cadenza plugin adding the chat command /$name.

Settings, in plugins.toml:

    [$name]
    greeting = "Hello from $name!"
"""

from __future__ import annotations

from typing import Any

from cadenza.api import Bot, ChatMessage, PluginContext, hookimpl

CADENZA_PLUGIN_API_VERSION = 1  # the plugin API this was written for


class $cls:
    """Created once per run with its context: settings, store, clock, log."""

    def __init__(self, context: PluginContext) -> None:
        context.settings.reject_unknown(["greeting"])
        self.greeting = context.settings.string("greeting", "Hello from $name!")

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("$name", self.answer, help="say hello from the $name plugin")

    async def answer(self, bot: Bot, message: ChatMessage, args: str) -> None:
        await bot.notify(message.chat, self.greeting)
'''

TEST = '''\
"""The plugin in a real Cadenza, through the cadenza.testing pytest plugin (no conftest needed)."""

from __future__ import annotations

import pytest
from cadenza.api import ConfigError

TOML = """
[plugins]
$name = true

[$name]
greeting = "hi there"
"""


async def test_the_command_answers_with_the_greeting(cadenza_app) -> None:
    h = await cadenza_app(toml=TOML)
    await h.say("/$name")
    await h.frontend.wait_for(lambda: "hi there" in h.frontend.notice_texts())


async def test_a_wrong_setting_is_a_located_error(cadenza_app) -> None:
    with pytest.raises(ConfigError, match=r"\\[$name\\] greeting: must be a string"):
        await cadenza_app(toml=TOML.replace('"hi there"', "42"))
'''

README = '''\
# $dist

A Cadenza plugin: `/$name` answers with a greeting.

## Install and enable

Into the environment Cadenza runs in:

```bash
cadenza plugins install ./$dist      # pip install + [plugins] $name = true in plugins.toml
# or by hand:
pip install ./$dist && cadenza plugins enable $name
cadenza plugins list                 # $name: on, its hooks, its health
```

Settings go in its own table of `plugins.toml`:

```toml
[$name]
greeting = "Hello from $name!"
```

## Develop and test

```bash
pip install -e './$dist[test]'
cd $dist && python -m pytest
```

The tests start a real Cadenza with the plugin switched on, through the `cadenza.testing`
pytest plugin that comes with Cadenza (`cadenza_app`, a recording frontend, a scripted agent,
a manual clock). The plugin imports only `cadenza.api` and declares
`CADENZA_PLUGIN_API_VERSION = 1`: a Cadenza providing another plugin API version refuses to load
it and says why.

## Publish

```bash
pip install build twine
python -m build                      # dist/$module-0.1.0.tar.gz and the wheel
twine upload dist/*                  # then anyone runs: cadenza plugins install $dist
```

Pick a name free on PyPI; `cadenza-` and the plugin's name is the convention.
'''

GITIGNORE = '''\
__pycache__/
*.egg-info/
build/
dist/
.venv/
'''
