"""Run each plugin's tests alone: a fresh virtualenv holding only fluxmq-core, that
plugin and the plugin's declared test extras (pinned by uv.lock), with pytest started
inside the plugin's directory so only its own configuration applies.

This is what "every plugin's tests run alone" means for a user who installs
``fluxmq-core`` and one plugin. Usage: ``uv run python .ci/isolated.py [plugin ...]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `uv run` tells its children where uv is; fall back to PATH.
UV = os.environ.get("UV") or shutil.which("uv") or "uv"


def run(cmd: list[str], **kw: Any) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def main(names: list[str]) -> int:
    plugins = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
    plugins_all = list(plugins)
    if names:
        plugins = [p for p in plugins if p.name in names]
    with tempfile.TemporaryDirectory(prefix="fluxmq-isolated-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        text = subprocess.run(
            [UV, "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--all-groups"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        constraints.write_text(text)
        failed = []
        for plugin in plugins:
            meta = tomllib.loads((plugin / "pyproject.toml").read_text())
            extras = meta["project"].get("optional-dependencies", {})
            target = f"{plugin}[test]" if "test" in extras else str(plugin)
            # A test extra may name another workspace distribution (fluxmq-client's
            # tests need the MQTT plugin as their broker): install it from the tree.
            siblings = {p.name: p for p in plugins_all}
            local = [
                arg
                for req in extras.get("test", [])
                if (name := req.split("[")[0].split(">")[0].split("=")[0].strip()) in siblings
                and name != plugin.name
                for arg in ("-e", str(siblings[name]))
            ]
            venv = Path(tmp) / plugin.name
            run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)])
            py = str(venv / "bin" / "python")
            run(
                [
                    UV,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    py,
                    "-c",
                    str(constraints),
                    "-e",
                    str(ROOT),
                    "-e",
                    target,
                    *local,
                ]
            )
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            result = subprocess.run(
                [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=plugin, env=env
            )
            if result.returncode != 0:
                failed.append(plugin.name)
        if failed:
            print(f"plugins whose tests fail alone: {', '.join(failed)}")
            return 1
        print(f"all {len(plugins)} plugin test suites pass alone")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
