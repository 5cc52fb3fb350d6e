"""The examples of docs/client.md (python blocks) and docs/cli.md (console blocks) run
against our broker, its port in place of 1883; console output is compared."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"


def blocks(name: str, lang: str) -> list[str]:
    path = DOCS / name
    if not path.is_file():
        pytest.skip(f"{name} is not next to this distribution (installed elsewhere)")
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


def test_client_md_examples_run(broker):
    found = blocks("client.md", "python")
    assert len(found) >= 4
    for code in found:
        code = code.replace("1883", str(broker.port()))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{code}\n---\n{r.stderr}"


def test_cli_md_examples_run(broker):
    found = blocks("cli.md", "console")
    assert len(found) >= 3
    ran = 0
    for block in found:
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        for command, expected in steps:
            argv = shlex.split(command.replace("1883", str(broker.port())))
            if argv[0] != "fluxmq":
                continue
            r = subprocess.run(
                [sys.executable, "-m", "fluxmq_core.cli", *argv[1:]],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, f"{command}: {r.stderr}"
            assert r.stdout.splitlines() == expected, command
            ran += 1
    assert ran >= 8


def test_cli_md_lists_the_shared_connection_options():
    """The 'Connection options (both commands)' table of docs/cli.md names every option
    `fluxmq pub` and `fluxmq sub` share, and each one is in both commands' help."""
    from fluxmq_client.cli import CONNECTION_OPTIONS

    path = DOCS / "cli.md"
    if not path.is_file():
        pytest.skip("cli.md is not next to this distribution (installed elsewhere)")
    text = path.read_text()
    table = text.split("### Connection options (both commands)", 1)[1].split("\n###", 1)[0]
    documented = set(re.findall(r"`(-{1,2}[a-zA-Z][-a-zA-Z]*)", table))
    declared = set()
    for _, option in CONNECTION_OPTIONS.values():
        declared.update(option.param_decls)
    declared.add("-q")  # the QoS of either command, also in the table
    missing = declared - documented
    assert not missing, f"not in docs/cli.md: {sorted(missing)}"
    for command in ("pub", "sub"):
        r = subprocess.run(
            [sys.executable, "-m", "fluxmq_core.cli", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        shown = set(re.findall(r"(?<![\w-])(-{1,2}[a-zA-Z][-a-zA-Z]*)", r.stdout))
        assert documented <= shown, f"{command}: {sorted(documented - shown)}"
