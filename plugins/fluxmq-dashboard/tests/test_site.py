"""The console's files on the HTTP listener (no browser): redirects, headers, the
committed bundle (size, and the same bytes when rebuilt from the locked sources),
and the connect time the plugin adds to the admin API's sessions."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.testing.broker import BrokerThread

WAIT = 10.0
PLUGIN = Path(__file__).resolve().parents[1]
ASSETS = PLUGIN / "src" / "fluxmq_dashboard" / "assets"
BUNDLE = ("index.html", "app.js", "app.css")


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["mqtt", "dashboard"]) as b:
        yield b


def get(broker: BrokerThread, path: str, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection(*broker.address("http.bind"), timeout=WAIT)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_root_and_ui_redirect_to_the_console(broker: BrokerThread) -> None:
    for path in ("/", "/ui"):
        status, headers, _ = get(broker, path)
        assert status == 302 and headers["location"] == "/ui/", path


def test_console_files_are_served_with_a_strict_policy(broker: BrokerThread) -> None:
    status, headers, body = get(broker, "/ui/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == (ASSETS / "index.html").read_bytes()
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, body = get(broker, f"/ui/{name}")
        assert status == 200 and headers["content-type"].startswith(ctype)
        assert body == (ASSETS / name).read_bytes()
    status, _, body = get(broker, "/ui/nope.js")
    assert status == 404 and "nope.js" in json.loads(body)["error"]
    assert get(broker, "/ui/..%2Fplugin.py")[0] == 404


def test_the_openapi_document_lists_the_console_and_stays_valid(broker: BrokerThread) -> None:
    status, _, body = get(broker, "/api/v1/openapi.json")
    doc = json.loads(body)
    assert status == 200 and {"/", "/ui/", "/ui/app.js", "/ui/app.css"} <= set(doc["paths"])
    try:
        from openapi_spec_validator import validate
    except ImportError:  # a dev dependency, not in the plugin's test extra
        return
    validate(doc)


def test_the_page_refers_only_to_its_own_files() -> None:
    html = (ASSETS / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(refs) == ["app.css", "app.js", "data:,"]
    css = (ASSETS / "app.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_bundle_is_under_200_kb_gzipped() -> None:
    total = sum(len(gzip.compress((ASSETS / n).read_bytes(), 9)) for n in BUNDLE)
    assert total < 200 * 1024, f"the console is {total} bytes gzipped"


def test_sessions_carry_the_connect_time(broker: BrokerThread) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="timed-1")
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(*broker.address("mqtt.tcp"))
    c.loop_start()
    try:
        assert connected.wait(WAIT)
        status, _, body = get(broker, "/api/v1/sessions/timed-1")
        info = json.loads(body)
        assert status == 200 and info["connected"]
        assert abs(info["extra"]["connected_at"] - time.time()) < 60
    finally:
        c.disconnect()
        c.loop_stop()


def test_committed_bundle_matches_a_rebuild(tmp_path: Path) -> None:
    """`npm ci && npm run build` from the committed lock gives the committed bytes."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are not installed: the committed bundle is not rebuilt")
    web = tmp_path / "web"
    shutil.copytree(PLUGIN / "web", web, ignore=shutil.ignore_patterns("node_modules", "*.log"))
    out = tmp_path / "out"
    env = {**os.environ, "FLUXMQ_DASHBOARD_OUT": str(out)}
    run = {"cwd": web, "env": env, "capture_output": True, "text": True, "timeout": 300}
    ci = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], **run)  # type: ignore[call-overload]
    if ci.returncode != 0:
        if "ENOTFOUND" in ci.stderr or "EAI_AGAIN" in ci.stderr or "ETIMEDOUT" in ci.stderr:
            pytest.skip(f"the npm registry cannot be reached: {ci.stderr.strip()[-300:]}")
        pytest.fail(f"npm ci failed:\n{ci.stderr[-2000:]}")
    build = subprocess.run([npm, "run", "build"], **run)  # type: ignore[call-overload]
    assert build.returncode == 0, build.stderr[-2000:]
    for name in BUNDLE:
        assert (out / name).read_bytes() == (ASSETS / name).read_bytes(), (
            f"{name} differs from a rebuild: run `npm ci && npm run build` in "
            "plugins/fluxmq-dashboard/web and commit the result"
        )
