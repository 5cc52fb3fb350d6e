"""``fluxmq plugin new`` creates a plugin whose own tests pass out of the box."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxmq_core.scaffold import ScaffoldError, scaffold_plugin


def test_scaffolded_plugin_tests_pass(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxmq_core.cli",
            "plugin",
            "new",
            "audit-log",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    root = tmp_path / "fluxmq-audit-log"
    assert (root / "pyproject.toml").read_text().count('audit_log = "fluxmq_audit_log.plugin"') == 1
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root / "src")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


@pytest.mark.parametrize("name", ["1abc", "Bad", "a b", ""])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScaffoldError):
        scaffold_plugin(name, tmp_path)


def test_existing_target_is_refused(tmp_path: Path) -> None:
    scaffold_plugin("x", tmp_path)
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold_plugin("x", tmp_path)
