"""Fixtures of the dashboard tests: Debian's Chromium driven by Playwright (never a
browser Playwright downloads), and paho clients that are always closed."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fluxmq_core.testing.broker import BrokerThread

WAIT = 10.0
ROOT = Path(__file__).resolve().parents[3]
#: Every run's screenshots (git-ignored); FLUXMQ_UPDATE_SCREENSHOTS=1 also writes the
#: committed ones of docs/images/.
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
DOC_IMAGES = ROOT / "docs" / "images"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    path = os.environ.get("FLUXMQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """One Chromium per test module, a fresh profile, 1280x900."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium not found (looked for FLUXMQ_CHROMIUM, `chromium` on PATH and "
            "/usr/bin/chromium): `apt-get install chromium` to run the browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=path,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        ctx.set_default_timeout(WAIT * 1000)
        try:
            yield ctx
        finally:
            ctx.close()


def _screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(out), full_page=full_page)
    if os.environ.get("FLUXMQ_UPDATE_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, DOC_IMAGES / f"{name}.png")
    return out


@pytest.fixture(scope="session")
def screenshot() -> Callable[..., Path]:
    """``screenshot(page, name, full_page=True)``: a PNG under test-artifacts/."""
    return _screenshot


@pytest.fixture(scope="module")
def mqtt_clients() -> Iterator[Callable[..., mqtt.Client]]:
    made: list[mqtt.Client] = []

    def connect(broker: BrokerThread, client_id: str, **kw: Any) -> mqtt.Client:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kw
        )
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.connect(*broker.address("mqtt.tcp"))
        c.loop_start()
        made.append(c)
        assert connected.wait(WAIT), f"{client_id} did not connect"
        return c

    yield connect
    for c in made:
        try:
            c.disconnect()
        except Exception:
            pass
        c.loop_stop()
