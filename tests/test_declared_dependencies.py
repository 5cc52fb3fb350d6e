"""No declared dependency goes unused: every runtime requirement of the core and of
each plugin is imported by that distribution's own code."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = [ROOT] + sorted(
    p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()
)


def _imported(source_root: Path) -> set[str]:
    roots: set[str] = set()
    for path in source_root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for dotted in names:  # "a.b.c" counts as a, a.b and a.b.c
                parts = dotted.split(".")
                roots.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return roots


# Distributions whose import name is not their name with "-" as "_" (namespace
# packages such as OpenTelemetry's): the module each one provides.
IMPORT_NAMES = {
    "grpcio": "grpc",
    "protobuf": "google.protobuf",
    "opentelemetry-api": "opentelemetry.trace",
    "opentelemetry-sdk": "opentelemetry.sdk",
    "opentelemetry-exporter-otlp-proto-http": "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry-exporter-otlp-proto-grpc": "opentelemetry.exporter.otlp.proto.grpc",
}


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda p: p.name)
def test_every_runtime_dependency_is_imported(dist: Path) -> None:
    meta = tomllib.loads((dist / "pyproject.toml").read_text())["project"]
    source = dist / "fluxmq_core" if dist == ROOT else dist / "src"
    imported = _imported(source)
    for requirement in meta.get("dependencies", []):
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        if name.startswith("fluxmq-"):
            continue  # the core or a sibling, checked by test_dependencies.py
        module = IMPORT_NAMES.get(name.lower(), name.lower().replace("-", "_"))
        assert module in imported, f"{dist.name} declares {name!r} but never imports {module}"


def test_uvloop_is_a_core_dependency_on_linux() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("uvloop") and "sys_platform == 'linux'" in d for d in deps)
