"""Guard tests that keep the documentation honest.

- The configuration reference in ``docs/configuration.md`` is exactly what
  ``fluxmq config reference`` prints for the plugins installed now, so adding a key
  (or changing a default or help text) without regenerating the page fails here.
- Every relative Markdown link in ``README.md`` and ``docs/*.md`` points to a file.
- Every ``fluxmq <command>`` named in the user guide exists in the typer app.

All in-process (typer's ``CliRunner``), so the whole file runs in well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluxmq_core.cli import app
from fluxmq_core.config import map_item, section_fields
from fluxmq_core.plugins import PluginRegistry

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BEGIN = "<!-- BEGIN CONFIG REFERENCE -->"
END = "<!-- END CONFIG REFERENCE -->"
REGENERATE = (
    "docs/configuration.md is stale: regenerate its reference with "
    "`uv run fluxmq config reference --write docs/configuration.md`"
)


def _reference_block() -> str:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, (
        f"docs/configuration.md needs one {BEGIN} and one {END}"
    )
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_config_reference_lists_every_key_of_every_installed_plugin() -> None:
    schema = PluginRegistry().config_schema()
    block = _reference_block()
    documented = set(re.findall(r"^\| `([a-z0-9_]+\.(?:<name>\.)?[a-z0-9_]+)` \|", block, re.M))
    # A map section ([queues.<name>]) documents its keys as `queues.<name>.key`.
    expected = {
        f"{name}.{'<name>.' if map_item(cls) is not None else ''}{key}"
        for name, cls in schema.items()
        for key in section_fields(cls)
    }
    missing = sorted(expected - documented)
    assert not missing, f"keys missing from docs/configuration.md: {missing}. {REGENERATE}"
    unknown = sorted(documented - expected)
    assert not unknown, (
        f"docs/configuration.md documents keys that no installed plugin declares: {unknown}. {REGENERATE}"
    )


def test_config_reference_block_equals_the_command_output() -> None:
    code, output = _run("config", "reference")
    assert code == 0, output
    assert _reference_block() == output.strip(), REGENERATE


def test_config_reference_escapes_pipes_in_cells() -> None:
    code, output = _run("config", "reference")
    assert code == 0
    # A Literal type ("text" | "json") must not split its table row into extra cells.
    for line in output.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) == 6, f"row does not have 4 cells: {line}"


# --- links -------------------------------------------------------------------------------

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page: Path) -> None:
    text = _INLINE_CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto: and in-page anchors
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


# --- commands named in the user guide ------------------------------------------------------

_COMMAND = re.compile(r"(?<![\w./-])fluxmq((?: [a-z][a-z-]*){1,2})")


def test_commands_in_the_user_guide_exist() -> None:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    mentioned = sorted({m.strip() for m in _COMMAND.findall(text)})
    assert mentioned, "docs/index.md names no fluxmq command?"
    bad = []
    for words in mentioned:
        # Extra trailing words are harmless: --help is eager, so only a word that must
        # be a command (the first, or the second under a group) can fail.
        code, output = _run(*words.split(), "--help")
        if code != 0:
            bad.append(f"fluxmq {words}")
    assert not bad, f"docs/index.md names commands that do not exist: {bad}"
