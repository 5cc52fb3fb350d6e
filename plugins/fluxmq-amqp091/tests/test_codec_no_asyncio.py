"""The sans-IO modules import no asyncio of their own (the core services they call
may; what matters is that these layers never await or touch the loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import fluxmq_amqp091

SANS_IO = ("codec.py", "connection.py", "channel.py", "props.py")


def test_sans_io_modules_do_not_import_asyncio():
    root = Path(fluxmq_amqp091.__file__).parent
    for name in SANS_IO:
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "asyncio" for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "asyncio", name
            elif isinstance(node, (ast.Await, ast.AsyncFunctionDef)):
                raise AssertionError(f"{name} awaits (line {node.lineno})")
