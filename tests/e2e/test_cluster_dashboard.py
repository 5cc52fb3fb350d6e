"""The web console's Cluster page on a real two-node cluster (two broker processes
on a real etcd), in Debian's headless Chromium driven by Playwright: both nodes are
listed, alive, with their addresses, this node marked local, and a client connected
to the other node counted in that node's row. Skipped, saying why, when Chromium,
Playwright, etcd or a plugin is missing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fluxmq_core.testing.broker import BrokerProcess

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
pytest.importorskip("fluxmq_dashboard", reason="fluxmq-dashboard is not installed")
pytest.importorskip("fluxmq_mqtt", reason="fluxmq-mqtt is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

WAIT = 15.0
TOKEN = "cluster-console-s3cret"
Bound = dict[str, tuple[str, int]]
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


def api(bound: Bound, path: str) -> Any:
    host, port = bound["http.bind"]
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def until(predicate: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, Bound]]:
    reason = etcd_testing.etcd_missing_reason()
    if reason:
        pytest.skip(f"{reason} (Debian/Ubuntu: apt-get install etcd-server)")
    if chromium_path() is None:
        pytest.skip(
            "Chromium not found (looked for FLUXMQ_CHROMIUM, `chromium` on PATH and "
            "/usr/bin/chromium): `apt-get install chromium` to run the browser tests"
        )
    with etcd_testing.EtcdServer() as etcd:
        procs: dict[str, BrokerProcess] = {}
        bound: dict[str, Bound] = {}
        try:
            for n in ("a", "b"):
                procs[n] = BrokerProcess(
                    ["--plugins", "mqtt,dashboard,etcd"],
                    env={
                        "FLUXMQ_CLUSTER__DRIVER": "etcd",
                        "FLUXMQ_CLUSTER__NODE_ID": n,
                        "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint,
                        "FLUXMQ_CLUSTER__LEASE_TTL": "3",
                        "FLUXMQ_STORAGE__DRIVER": "memory",
                        "FLUXMQ_HTTP__ADMIN_TOKEN": TOKEN,
                    },
                )
                bound[n] = procs[n].start(timeout=30)
            for n in ("a", "b"):
                until(lambda n=n: len(api(bound[n], "/api/v1/cluster")["nodes"]) == 2)
            yield bound
        finally:
            for p in procs.values():
                if p.proc is not None and p.proc.poll() is None:
                    p.signal(15)
            for p in procs.values():
                try:
                    if p.proc is not None:
                        p.wait(15)
                finally:
                    p.close()


@pytest.fixture(scope="module")
def page(nodes: dict[str, Bound]) -> Iterator[Any]:
    """A headless Chromium tab on node a's console, the admin token in its session
    storage; page errors are recorded."""
    path = chromium_path()
    assert path is not None
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
            p = ctx.new_page()
            p.errors = []  # type: ignore[attr-defined]
            p.on("pageerror", lambda e: p.errors.append(str(e)))
            host, port = nodes["a"]["http.bind"]
            p.goto(f"http://{host}:{port}/ui/#/cluster")
            p.evaluate(f"sessionStorage.setItem('fluxmq.admin_token', {TOKEN!r})")
            p.reload()
            p.wait_for_selector("main h1")
            yield p
        finally:
            ctx.close()


def test_the_cluster_page_shows_both_nodes(page: Any, nodes: dict[str, Bound]) -> None:
    expect(page.locator("main h1")).to_have_text("Cluster")
    a, b = page.locator("tr[data-node='a']"), page.locator("tr[data-node='b']")
    for row, name in ((a, "a"), (b, "b")):
        expect(row).to_contain_text("alive")
        _host, port = nodes[name]["cluster.bind"]
        expect(row).to_contain_text(f"{port}")  # its node-to-node address
    expect(a.locator("td").nth(2)).to_have_text("yes")  # Local: the node serving the page
    expect(b.locator("td").nth(2)).to_have_text("no")
    expect(page.get_by_text("Single node")).to_have_count(0)
    # A client connected to node b shows in b's row (its record, through etcd).
    connected = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="console-b", protocol=mqtt.MQTTv5)
    c.on_connect = lambda *args: connected.set()
    c.connect(*nodes["b"]["mqtt.tcp"])
    c.loop_start()
    try:
        assert connected.wait(WAIT)
        expect(b.locator("[data-sessions]")).to_have_text("1", timeout=WAIT * 1000)
        expect(a.locator("[data-sessions]")).to_have_text("0")
    finally:
        c.disconnect()
        c.loop_stop()
    assert page.errors == []  # type: ignore[attr-defined]
