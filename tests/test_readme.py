"""The README's "What is in the box" table names exactly the distributions this
repository holds: the core and every plugin under ``plugins/``, no more, no less."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _box_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## What is in the box", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cells = [row.split("|")[1].strip() for row in rows[2:]]  # past header and rule
    names = []
    for cell in cells:
        match = re.match(r"`([^`]+)`", cell)
        assert match, f"README box row without a `distribution` cell: {cell!r}"
        names.append(match.group(1))
    return names


def _distribution(path: Path) -> str:
    return str(tomllib.loads((path / "pyproject.toml").read_text())["project"]["name"])


def test_readme_box_matches_the_repository() -> None:
    named = _box_rows()
    held = {"fluxmq-core": ROOT} | {
        f"plugins/{p.name}": p
        for p in sorted((ROOT / "plugins").iterdir())
        if (p / "pyproject.toml").is_file()
    }
    missing_from_repo = [n for n in named if n not in held]
    assert not missing_from_repo, (
        f"README names what the repository does not hold: {missing_from_repo}"
    )
    missing_from_readme = [n for n in held if n not in named]
    assert not missing_from_readme, f"README's table lacks: {missing_from_readme}"
    # A plugins/ folder is named after the distribution it holds.
    for name, path in held.items():
        assert _distribution(path) == name.removeprefix("plugins/"), name
