"""``fluxmq plugin new NAME``: a plugin distribution that installs and tests green.

The templates are the smallest complete plugin: a config section, a start-up hook
and an observer hook, with tests that start a real broker through the core's pytest
fixtures. They register the plugin module directly, so the tests pass before the
package is installed and keep passing after.
"""

from __future__ import annotations

import re
from pathlib import Path

from fluxmq_core import __version__

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


class ScaffoldError(Exception):
    """The name is not usable or the target exists."""


PYPROJECT = """\
[project]
name = "fluxmq-{dist}"
version = "0.1.0"
description = "A FluxMQ plugin"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["fluxmq-core>={core}"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.fluxmq]
{entry} = "fluxmq_{pkg}.plugin"

[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/fluxmq_{pkg}"]

[tool.pytest.ini_options]
pythonpath = ["src"]
"""

README = """\
# fluxmq-{dist}

A FluxMQ plugin. Install it next to the broker and it is discovered through the
`fluxmq` entry point:

    pip install -e .
    fluxmq plugins        # lists "{entry}"
    pytest                # runs its tests against a real broker
"""

INIT = '"""The fluxmq-{dist} plugin."""\n'

PLUGIN = '''\
"""Hookimpls of the fluxmq-{dist} plugin. Only hookimpls live here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fluxmq_core.config import setting
from fluxmq_core.hookspecs import hookimpl

log = logging.getLogger("fluxmq.{pkg}")


@dataclass
class {cls}Config:
    """[{entry}]: settings of this plugin."""

    greeting: str = setting("hello from {entry}", "Logged when the broker starts.")


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {{"{entry}": {cls}Config}}


@hookimpl
def fluxmq_startup(context: Any) -> None:
    greeting = context.config.section("{entry}").greeting
    context.extras["{entry}"] = {{"greeting": greeting, "connected": []}}
    log.info(greeting)


@hookimpl
def fluxmq_client_connected(context: Any, protocol: str, client_id: str, username: str | None, remote: str) -> None:
    context.extras["{entry}"]["connected"].append((protocol, client_id))
'''

TEST = '''\
"""Tests of fluxmq-{dist} against a real broker (fixtures from fluxmq-core)."""

from __future__ import annotations

import fluxmq_{pkg}.plugin as plugin


def test_startup_hook_reads_its_config(fluxmq_broker_factory) -> None:
    broker = fluxmq_broker_factory(
        plugins=[], extra_plugins=[("{entry}", plugin)], config={{"{entry}": {{"greeting": "hi"}}}}
    )
    assert broker.context.extras["{entry}"]["greeting"] == "hi"


def test_observer_hook_sees_connections(fluxmq_broker_factory) -> None:
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("{entry}", plugin)])
    broker.call_soon(broker.context.events.client_connected, "test", "c1", None, "127.0.0.1:1")
    assert broker.context.extras["{entry}"]["connected"] == [("test", "c1")]
'''


def scaffold_plugin(name: str, directory: Path) -> Path:
    """Create ``directory/fluxmq-<name>/`` and return its path."""
    name = name.removeprefix("fluxmq-").removeprefix("fluxmq_")
    if not _NAME.match(name):
        raise ScaffoldError(
            f"plugin name {name!r} must start with a letter and use only a-z, 0-9, '-' and '_'"
        )
    dist = name.replace("_", "-")
    pkg = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in pkg.split("_"))
    root = Path(directory) / f"fluxmq-{dist}"
    if root.exists():
        raise ScaffoldError(f"{root} already exists")
    fields = {"dist": dist, "pkg": pkg, "entry": pkg, "cls": cls, "core": __version__}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/fluxmq_{pkg}/__init__.py": INIT,
        f"src/fluxmq_{pkg}/plugin.py": PLUGIN,
        "tests/test_plugin.py": TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
    return root
