"""Audit the locked dependencies with pip-audit.

Exports every locked package (all extras and groups, not the workspace's own
distributions) with ``uv export``, asks pip-audit's vulnerability service about each
pinned version and:

- fails (exit 1) on a known vulnerability that has a fixed version: upgrade the
  locked package (``uv lock --upgrade-package NAME``) and run again;
- reports a known vulnerability without a fix and goes on;
- skips with a clear message (exit 0) only when no service could be reached or the
  one reached could audit no package (a registry mirror without PyPI's JSON API).

Usage: ``uv run --frozen python .ci/audit.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UV = os.environ.get("UV") or shutil.which("uv") or "uv"
SERVICES = ("pypi", "osv")
# What a pip-audit run that could not talk to its service prints.
NETWORK_ERRORS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


def judge(report: dict[str, Any]) -> tuple[str, list[str]]:
    """``("fail" | "skip" | "ok", lines to print)`` for one pip-audit JSON report."""
    deps = report.get("dependencies", [])
    audited = [d for d in deps if not d.get("skip_reason")]
    if deps and not audited:
        reason = deps[0]["skip_reason"]
        return "skip", [f"the service audited none of {len(deps)} packages (first: {reason})"]
    fixable: list[str] = []
    unfixable: list[str] = []
    for dep in audited:
        for vuln in dep.get("vulns", []):
            where = f"{dep['name']} {dep['version']}: {vuln['id']}"
            fixes = vuln.get("fix_versions") or []
            if fixes:
                fixable.append(f"{where}, fixed in {', '.join(fixes)}")
            else:
                unfixable.append(f"{where}, no fixed version yet")
    lines = [f"audited {len(audited)} of {len(deps)} locked packages"]
    lines += [f"skipped {d['name']}: {d['skip_reason']}" for d in deps if d.get("skip_reason")]
    lines += [f"known vulnerability (no fix): {u}" for u in unfixable]
    lines += [f"VULNERABLE, upgrade the lock: {f}" for f in fixable]
    return ("fail" if fixable else "ok"), lines


def audit(requirements: Path, service: str) -> tuple[str, list[str]]:
    """Run pip-audit once against ``service``; a network failure is a ``skip``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "-r",
            str(requirements),
            "--disable-pip",  # pins come from the lock: no resolver, no install
            "--no-deps",
            "--progress-spinner",
            "off",
            "-s",
            service,
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    if report is None:
        err = proc.stderr.strip().splitlines()
        if any(marker in proc.stderr for marker in NETWORK_ERRORS):
            return "skip", [f"cannot reach the {service} vulnerability service: {err[-1]}"]
        return "fail", [f"pip-audit failed (exit {proc.returncode}):", *err[-20:]]
    return judge(report)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fluxmq-audit-") as tmp:
        req = Path(tmp) / "requirements.txt"
        subprocess.run(
            [
                UV,
                "export",
                "--frozen",
                "--no-hashes",
                "--no-emit-workspace",
                "--all-extras",
                "--all-groups",
                "--quiet",
                "-o",
                str(req),
            ],
            cwd=ROOT,
            check=True,
        )
        skips: list[str] = []
        for service in SERVICES:
            status, lines = audit(req, service)
            if status == "skip":
                skips += [f"{service}: {line}" for line in lines]
                continue
            for line in lines:
                print(f"pip-audit ({service}): {line}")
            return 1 if status == "fail" else 0
    print("pip-audit: SKIPPED, no vulnerability service could be reached from here:")
    for line in skips:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
