"""Cross-plugin: the web console's Cluster page on a real two-node cluster (two
broker processes with the etcd plugin on a real etcd): both nodes alive with their
address, the local one marked, each node's session count following real paho
clients, and a stopped node leaving the list once its lease expires.

Debian's Chromium driven by Playwright (never a browser Playwright downloads);
skipped, saying why, without Chromium, Playwright, etcd or a plugin."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from fluxmq_core.testing.broker import BrokerProcess

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
expect = sync_api.expect

WAIT = 20.0


def _chromium() -> str:
    path = os.environ.get("FLUXMQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip("Chromium not found: `apt-get install chromium` to run the browser tests")
    return path


def _start(etcd: Any, name: str) -> BrokerProcess:
    proc = BrokerProcess(
        ["--plugins", "mqtt,etcd,dashboard"],
        env={
            "FLUXMQ_CLUSTER__DRIVER": "etcd",
            "FLUXMQ_CLUSTER__NODE_ID": name,
            "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint,
            "FLUXMQ_CLUSTER__LEASE_TTL": "3",
            "FLUXMQ_CLUSTER__ETCD_TIMEOUT": "2",
            "FLUXMQ_STORAGE__DRIVER": "memory",
        },
    )
    proc.bound = proc.start(timeout=30)  # type: ignore[attr-defined]
    return proc


def _stop(proc: BrokerProcess) -> None:
    try:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.signal(15)
            proc.wait(15)
    finally:
        proc.close()


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, BrokerProcess]]:
    if importlib.util.find_spec("fluxmq_dashboard") is None:
        pytest.skip("the dashboard plugin is not installed")
    reason = etcd_testing.etcd_missing_reason()
    if reason:
        pytest.skip(f"{reason} (Debian/Ubuntu: apt-get install etcd-server)")
    with etcd_testing.EtcdServer() as etcd:
        procs: dict[str, BrokerProcess] = {}
        try:
            for name in ("a", "b"):
                procs[name] = _start(etcd, name)
            yield procs
        finally:
            for proc in procs.values():
                _stop(proc)


@pytest.fixture(scope="module")
def page(nodes: dict[str, BrokerProcess]) -> Iterator[Any]:
    path = _chromium()
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=path,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            viewport={"width": 1280, "height": 900},
        )
        ctx.set_default_timeout(WAIT * 1000)
        try:
            p = ctx.new_page()
            p.errors = []
            p.on("pageerror", lambda e: p.errors.append(str(e)))
            # No admin token configured: the console is served to loopback only.
            host, port = nodes["a"].bound["http.bind"]  # type: ignore[attr-defined]
            p.goto(f"http://{host}:{port}/ui/#/cluster")
            p.wait_for_selector("main h1")
            yield p
            assert p.errors == []
        finally:
            ctx.close()


def _paho(bound: dict[str, tuple[str, int]]) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="dash-" + uuid.uuid4().hex[:8],
        protocol=mqtt.MQTTv5,
    )
    c.connect(*bound["mqtt.tcp"])
    c.loop_start()
    return c


def test_cluster_page_lists_both_nodes_with_their_sessions(
    page: Any, nodes: dict[str, BrokerProcess]
) -> None:
    a, b = page.locator("tr[data-node=a]"), page.locator("tr[data-node=b]")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cluster")
    expect(page.get_by_text("Single node")).to_have_count(0)
    for row in (a, b):
        expect(row.locator("td").nth(1)).to_have_text("alive")
    expect(a.locator("td").nth(2)).to_have_text("yes")  # the node serving the page
    expect(b.locator("td").nth(2)).to_have_text("no")
    clients = [_paho(nodes["b"].bound) for _ in range(2)]  # type: ignore[attr-defined]
    try:
        # Node b's record carries its connected sessions (rewritten on its keepalive).
        expect(b.locator("[data-sessions]")).to_have_text("2")
        expect(a.locator("[data-sessions]")).to_have_text("0")
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
    expect(b.locator("[data-sessions]")).to_have_text("0")
    # A stopped node leaves the list once its lease (3 s) is gone.
    _stop(nodes.pop("b"))
    expect(b).to_have_count(0)
    expect(page.locator("tbody tr[data-node]")).to_have_count(1)
