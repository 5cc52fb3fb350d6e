"""The codec (in the core, re-exported as `fluxmq_mqtt.codec`) is sans-IO: importing it must not import asyncio, and no module of it
may mention asyncio (or another I/O framework) in an import statement."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

from fluxmq_core import mqtt_codec as codec

CODEC_DIR = Path(codec.__file__).parent
MODULES = sorted(f"fluxmq_core.mqtt_codec.{m.name}" for m in pkgutil.iter_modules([str(CODEC_DIR)]))
FORBIDDEN = {"asyncio", "anyio", "trio", "socket", "selectors", "uvloop", "time", "threading"}


def test_codec_has_the_expected_modules():
    names = {m.rsplit(".", 1)[1] for m in MODULES}
    assert {"decoder", "encoder", "packets", "properties", "reasons", "errors"} <= names


def test_importing_the_codec_does_not_import_asyncio():
    script = (
        "import sys\n"
        f"for name in {MODULES!r}:\n"
        "    __import__(name)\n"
        "bad = sorted(m for m in ('asyncio', 'anyio', 'trio', 'uvloop') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_no_io_imports_in_the_source():
    for path in CODEC_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"
