"""Interop with libcoap's command-line client (Debian ``libcoap3-bin``): POST, GET,
observe for a few seconds, and block-wise POST and PUT with a small block size. Skipped,
with the reason, when the client is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from fluxmq_coap.testing import WAIT, Collector

from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread

CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")
pytestmark = pytest.mark.skipif(
    CLIENT is None,
    reason="libcoap's coap-client is not installed (Debian: apt-get install libcoap3-bin)",
)


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["coap"]) as b:
        yield b


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CLIENT is not None
    return subprocess.run([CLIENT, *args], capture_output=True, timeout=15, check=False)


def base(broker: BrokerThread) -> str:
    return f"coap://127.0.0.1:{broker.port('coap.bind')}"


def test_post_and_get(broker):
    got = Collector()
    broker.call_soon(broker.context.router.subscribe, got, "lc/t")
    r = run("-m", "post", "-e", "hello", "-t", "50", base(broker) + "/ps/lc/t?retain&qos=1")
    assert r.returncode == 0, r.stderr
    (m,) = got.wait(1)
    assert (m.payload, m.qos, m.retain, m.content_type) == (b"hello", 1, True, "application/json")
    r = run("-m", "get", base(broker) + "/ps/lc/t")
    assert r.returncode == 0 and r.stdout.strip() == b"hello"


@pytest.mark.parametrize("method", ["post", "put"])
def test_blockwise_publish_with_small_blocks(broker, tmp_path, method):
    data = bytes(range(256)) * 8  # 2 KiB in 32 blocks of 64 bytes
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    got = Collector(f"collector-{method}")
    topic = f"lc/big-{method}"
    broker.call_soon(broker.context.router.subscribe, got, topic)
    r = run("-m", method, "-b", "64", "-f", str(f), base(broker) + f"/ps/{topic}?retain")
    assert r.returncode == 0, r.stderr
    msg = broker.call_soon(broker.context.router.get_retained, topic)
    assert msg is not None and msg.payload == data
    out = tmp_path / "got.bin"
    r = run("-m", "get", "-b", "64", "-o", str(out), base(broker) + f"/ps/{topic}")
    assert r.returncode == 0 and out.read_bytes() == data
    # One message once every block was in (not one per block), after that round trip.
    assert [m.payload for m in got.wait(1)] == [data]


def test_observe_a_wildcard_for_a_few_seconds(broker):
    broker.call_soon(broker.context.publish, Message("lco/r", b"retained", retain=True))
    server = broker.context.extras["coap"]
    assert CLIENT is not None
    proc = subprocess.Popen(
        [CLIENT, "-m", "get", "-s", "3", "-w", base(broker) + "/ps/lco/%23"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not server.observers and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.observers, "coap-client did not register"
        for i in range(3):
            broker.call_soon(broker.context.publish, Message("lco/live", b"n%d" % i))
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in out.split(b"\n") if line]
    assert lines == [b"retained", b"n0", b"n1", b"n2"], (out, err)
