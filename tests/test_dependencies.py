"""The one rule of the house: dependencies point inward.

The core imports no plugin; a plugin imports the core and never another plugin;
sans-IO modules import no asyncio. Checked on the source, so a violation fails
here before it can surprise a user who installed only some distributions.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Modules that hold protocol logic apart from the event loop (DESIGN.md section 5).
SANS_IO_MODULES = {
    "connection.py",
    "state.py",
    "session.py",
    "outbound.py",
    "limits.py",
    "subscribe.py",
    "channel.py",
}
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def plugin_packages() -> dict[str, Path]:
    out = {}
    for plugin in PLUGINS:
        for pkg in (plugin / "src").iterdir():
            if (pkg / "__init__.py").is_file():
                out[pkg.name] = plugin
    return out


def test_core_imports_no_plugin() -> None:
    packages = set(plugin_packages())
    for path in (ROOT / "fluxmq_core").rglob("*.py"):
        bad = imported_roots(path) & packages
        assert not bad, f"{path.relative_to(ROOT)} imports plugin package(s) {bad}"


def test_plugins_do_not_import_each_other() -> None:
    packages = plugin_packages()
    for name, plugin in packages.items():
        others = set(packages) - {name}
        for path in plugin.rglob("*.py"):
            bad = imported_roots(path) & others
            assert not bad, f"{path.relative_to(ROOT)} imports other plugin(s) {bad}"


def test_plugins_declare_the_core_and_an_entry_point() -> None:
    for plugin in PLUGINS:
        meta = tomllib.loads((plugin / "pyproject.toml").read_text())
        project = meta["project"]
        assert project["name"] == plugin.name
        deps = [
            d.split(">")[0].split("=")[0].split("<")[0].strip()
            for d in project.get("dependencies", [])
        ]
        assert "fluxmq-core" in deps, f"{plugin.name} must depend on fluxmq-core"
        eps = project.get("entry-points", {})
        assert eps.get("fluxmq") or any(g.startswith("fluxmq.") for g in eps), (
            f"{plugin.name} registers no fluxmq entry point"
        )
        assert (plugin / "README.md").is_file() and (plugin / "tests").is_dir()


def test_sans_io_modules_import_no_asyncio() -> None:
    checked = 0
    for plugin in PLUGINS:
        for path in plugin.glob("src/*/**/*.py"):
            rel = path.relative_to(plugin / "src")
            if "codec" in rel.parts or path.name in SANS_IO_MODULES:
                assert "asyncio" not in imported_roots(path), (
                    f"{path.relative_to(ROOT)} imports asyncio"
                )
                checked += 1
    assert checked > 0
