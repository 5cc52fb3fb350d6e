"""The dependency audit's verdicts (``.ci/audit.py``) on pip-audit reports: fail on
a vulnerability with a fix, report one without, skip only when nothing was audited."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dep(name: str, *vulns: dict[str, object]) -> dict[str, object]:
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


def test_a_vulnerability_with_a_fix_fails() -> None:
    status, lines = _audit().judge(
        {"dependencies": [_dep("ok"), _dep("bad", {"id": "PYSEC-1", "fix_versions": ["1.1"]})]}
    )
    assert status == "fail"
    assert any("bad 1.0: PYSEC-1, fixed in 1.1" in line for line in lines)


def test_a_vulnerability_without_a_fix_is_reported_not_failed() -> None:
    status, lines = _audit().judge(
        {"dependencies": [_dep("meh", {"id": "GHSA-x", "fix_versions": []})]}
    )
    assert status == "ok"
    assert any("GHSA-x" in line and "no fix" in line for line in lines)


def test_nothing_audited_is_a_skip_and_a_clean_lock_passes() -> None:
    audit = _audit()
    skipped = {"dependencies": [{"name": "a", "skip_reason": "not found on PyPI"}]}
    assert audit.judge(skipped)[0] == "skip"
    assert audit.judge({"dependencies": [_dep("a"), _dep("b")]})[0] == "ok"


def test_ci_runs_the_audit_and_the_linters_before_the_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    order = [script.index(step) for step in ("ruff check", "ruff format --check", "mypy")]
    order.append(script.index(".ci/audit.py"))
    assert order == sorted(order)
    assert order[-1] < script.rindex("pytest")
