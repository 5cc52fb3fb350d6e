"""The third-party example plugin (docs/examples/fluxmq-example-plugin), installed
from its own directory like a user would, then discovered through its entry point.

It is installed into a throw-away target directory (``uv pip install --target`` or
``pip install --target``) put on ``PYTHONPATH``/``sys.path``, so the project's own
environment is never modified by the test run.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.testing import BrokerThread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "fluxmq-example-plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: Any) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site")
    uv = shutil.which("uv")
    if uv:
        cmd = [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE),
            "--python",
            sys.executable,
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE),
        ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("fluxmq_example")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def test_fluxmq_plugins_lists_the_installed_example(installed_example: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(installed_example), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-m", "fluxmq_core.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    example = plugins["example"]
    assert example["distribution"] == "fluxmq-example-plugin"
    assert example["enabled"] and example["error"] is None
    assert set(example["hooks"]) >= {
        "fluxmq_add_config",
        "fluxmq_register_servers",
        "fluxmq_client_connected",
    }


def test_example_plugin_hooks_run_in_a_broker(installed_example: Path) -> None:
    with BrokerThread(plugins=["example"]) as broker:
        import fluxmq_example.plugin as example_plugin

        before = example_plugin.CONNECTIONS.get("example", 0)
        with socket.create_connection(broker.address("example.bind"), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"SUB a/+\nPUB a/b hi\n")
            data = b""
            while data.count(b"\n") < 3:
                chunk = s.recv(1024)
                assert chunk
                data += chunk
        assert data.splitlines() == [b"OK", b"MSG a/b hi", b"OK"]
        assert example_plugin.CONNECTIONS["example"] == before + 1


def test_example_plugin_own_tests_pass(installed_example: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(installed_example), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=EXAMPLE,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
