"""rhea (the Node.js AMQP 1.0 client, from npm) against the broker: unsettled sends
and hand-settled receives, at-most-once both ways, every receiver outcome, a
receiver that grants its own credit (and drains), request/response over a dynamic
reply-to with the anonymous relay, and a JMS selector on a browser and a consumer.

The scenarios are ``tests/js/client.js``; its dependencies are locked in
``tests/js/package-lock.json`` and installed with ``npm ci --prefix <that dir>``
(``.ci/run`` does it). Skipped, saying why, without node or without that install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.testing.broker import BrokerThread

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js (node) is not installed"),
    pytest.mark.skipif(
        not (JS / "node_modules" / "rhea").is_dir(),
        reason="rhea is not installed: run `npm ci --prefix plugins/fluxmq-amqp1/tests/js`",
    ),
]


def run(broker: BrokerThread, scenario: str, address: str) -> dict[str, Any]:
    """Run one client.js scenario (bounded in time) and return what it printed."""
    assert NODE is not None
    proc = subprocess.run(
        [NODE, str(JS / "client.js"), scenario, str(broker.port("amqp1.bind")), address],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"rhea {scenario} failed: {proc.stderr.strip()}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def address() -> str:
    return f"$queue/rhea-{uuid.uuid4().hex[:8]}"


def test_unsettled_send_and_hand_settled_receive(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "settle", address())
    assert got["accepted"] == 4
    received = got["received"]
    # with credit for all, the four were on the wire before the release: the released
    # first one comes back after them, its delivery-count unchanged
    assert [r["body"] for r in received] == ["m0", "m1", "m2", "m3", "m0"]
    assert [r["count"] for r in received] == [0, 0, 0, 0, 0]


def test_receiver_gets_exactly_the_credit_it_grants(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "credit", address())
    # two credits: two messages, then drained with nothing owed; ten more with drain:
    # the three left, then the rest of the credit drained
    assert got["drained"] == [{"got": 2, "credit": 0}, {"got": 5, "credit": 0}]


def test_request_response_with_dynamic_reply_to(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "rpc", address())
    assert got["body"] == "HELLO" and got["correlation_id"] == "req-1"
    assert got["reply_to"].startswith("$queue/amq.dyn-")
    assert "ANONYMOUS-RELAY" in got["offered"]


def test_presettled_both_ways(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "presettled", address())
    assert [r["body"] for r in got["received"]] == ["p0", "p1", "p2"]
    assert all(r["settled"] for r in got["received"]) and got["snd_settle_mode"] == 1


def test_every_receiver_outcome(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "outcomes", address())
    received = [(r["body"], r["count"]) for r in got["received"]]
    # m0 rejected (never back), m1 modified with delivery-failed (back, counted), m2
    # released (back, not counted); a redelivery goes before newer messages
    assert received == [("m0", 0), ("m1", 0), ("m1", 1), ("m2", 0), ("m2", 0), ("m3", 0)]
    assert got["dead"] == "m0"


def test_selector_on_a_browser_and_a_consumer(amqp1_broker: BrokerThread) -> None:
    got = run(amqp1_broker, "selector", address())
    assert got["browsed"] == ["red-1", "red-3"]
    assert got["selected"] == ["red-1", "red-3"]
    assert got["rest"] == ["blue-0", "green-2"]
