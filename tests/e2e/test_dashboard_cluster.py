"""Cross-plugin: the web console's Cluster page on a real two-node cluster (two
broker processes with the etcd plugin on a real etcd): both nodes alive with their
address, the local one marked, each node's session count following real paho
clients, and a stopped node leaving the list once its lease expires.

Debian's Chromium driven by Playwright (never a browser Playwright downloads);
skipped, saying why, without Chromium, Playwright, etcd or a plugin."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from tests.e2e._cluster import Nodes, http_url, need_etcd, start_nodes, stop_nodes
from tests.e2e._console import browser_page

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
expect = sync_api.expect

WAIT = 20.0


@pytest.fixture(scope="module")
def nodes() -> Iterator[Nodes]:
    if importlib.util.find_spec("fluxmq_dashboard") is None:
        pytest.skip("the dashboard plugin is not installed")
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="3", plugins="mqtt,etcd,dashboard")
        try:
            yield procs
        finally:
            stop_nodes(procs)


@pytest.fixture(scope="module")
def page(nodes: Nodes) -> Iterator[Any]:
    with browser_page(WAIT) as p:
        # No admin token configured: the console is served to loopback only.
        p.goto(http_url(nodes["a"][1]) + "/ui/#/cluster")
        p.wait_for_selector("main h1")
        yield p


def _paho(bound: dict[str, tuple[str, int]]) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="dash-" + uuid.uuid4().hex[:8],
        protocol=mqtt.MQTTv5,
    )
    c.connect(*bound["mqtt.tcp"])
    c.loop_start()
    return c


def test_cluster_page_lists_both_nodes_with_their_sessions(page: Any, nodes: Nodes) -> None:
    a, b = page.locator("tr[data-node=a]"), page.locator("tr[data-node=b]")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cluster")
    expect(page.get_by_text("Single node")).to_have_count(0)
    for row in (a, b):
        expect(row.locator("td").nth(1)).to_have_text("alive")
    expect(a.locator("td").nth(2)).to_have_text("yes")  # the node serving the page
    expect(b.locator("td").nth(2)).to_have_text("no")
    clients = [_paho(nodes["b"][1]) for _ in range(2)]
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
    stop_nodes({"b": nodes.pop("b")})
    expect(b).to_have_count(0)
    expect(page.locator("tbody tr[data-node]")).to_have_count(1)
