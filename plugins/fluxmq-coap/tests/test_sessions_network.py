"""Observers in the admin API and stats, the end of observations (operator kick,
broker shutdown), `$queue/` deliveries given back by RST, and the anonymous policy
seen from a non-loopback address of this machine."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest
from fluxmq_coap.testing import ACK, CON, RST, WAIT, decode, encode, path_options

from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread
from fluxmq_core.testing.net import host_ipv4

GET, POST = 1, 2
CONTENT, CHANGED, UNAUTHORIZED, SERVICE_UNAVAILABLE = 0x45, 0x44, 0x81, 0xA3


class Raw:
    def __init__(self, port: int, host: str = "127.0.0.1", source: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(WAIT)
        self.sock.connect((host, port))

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def recv_until(self, pred: Any) -> dict[str, Any]:
        while True:
            m = decode(self.sock.recv(65536))
            if pred(m):
                return m

    def close(self) -> None:
        self.sock.close()


def observe(raw: Raw, token: bytes, mid: int, path: str) -> dict[str, Any]:
    raw.send(encode(CON, GET, mid, token, [(6, b"")] + path_options(path)))
    return raw.recv_until(lambda m: m["mid"] == mid)


def until(pred: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def api(broker: BrokerThread, method: str, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=WAIT)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def test_admin_api_lists_and_kicks_observers(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["coap"])
    if "http.bind" not in b.context.bound:
        pytest.skip("the HTTP listener is not bound")
    raw = Raw(b.port("coap.bind"))
    try:
        before = api(b, "GET", "/api/v1/stats")[1]["broker"]
        assert observe(raw, b"a1", 1, "/ps/adm/#?client_id=dev-7")["code"] == CONTENT
        assert observe(raw, b"a2", 2, "/ps/adm2/x?client_id=dev-7")["code"] == CONTENT
        status, body = api(b, "GET", "/api/v1/sessions?protocol=coap")
        assert status == 200
        (s,) = body["sessions"]
        assert s["client_id"] == "dev-7" and s["connected"] is True
        assert s["subscriptions"] == {"adm/#": 0, "adm2/x": 0}
        assert s["extra"]["observers"] == 2
        stats = api(b, "GET", "/api/v1/stats")[1]
        assert stats["broker"]["clients_connected"] == before["clients_connected"] + 2
        assert "coap" in stats["protocols"] and "coap.bind" in stats["listeners"]
        status, _ = api(b, "DELETE", "/api/v1/sessions/dev-7")
        assert status == 200
        finals = {
            raw.recv_until(lambda m: m["code"] == SERVICE_UNAVAILABLE)["token"] for _ in range(2)
        }
        assert finals == {b"a1", b"a2"}
        assert until(lambda: not b.context.extras["coap"].observers)
        assert api(b, "GET", "/api/v1/sessions?protocol=coap")[1]["sessions"] == []
    finally:
        raw.close()


def test_shutdown_sends_a_final_5_03_and_new_requests_get_5_03(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["coap"])
    raw = Raw(b.port("coap.bind"))
    try:
        observe(raw, b"s1", 1, "/ps/down/t")
        b.stop()
        final = raw.recv_until(lambda m: m["token"] == b"s1")
        assert final["code"] == SERVICE_UNAVAILABLE and b"shutting down" in final["payload"]
    finally:
        raw.close()


def test_rst_gives_a_queue_delivery_back(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["coap"])
    queues = b.context.queues
    b.call_soon(queues.declare, "rstq")
    first, second = Raw(b.port("coap.bind")), Raw(b.port("coap.bind"))
    try:
        assert observe(first, b"q1", 1, "/ps/$queue/rstq/#")["code"] == CONTENT
        b.call_soon(b.context.publish, Message("$queue/rstq/k", b"job"))
        d = first.recv_until(lambda m: m["token"] == b"q1")
        assert d["mtype"] == CON and d["payload"] == b"job"
        first.send(encode(RST, 0, d["mid"]))  # refuse it: it goes back to the group
        assert observe(second, b"q2", 2, "/ps/$queue/rstq/#")["code"] == CONTENT
        again = second.recv_until(lambda m: m["token"] == b"q2")
        assert again["payload"] == b"job"
        second.send(encode(ACK, 0, again["mid"]))
        assert until(lambda: b.call_soon(lambda: queues.ready_count("rstq")) == 0)
    finally:
        first.close()
        second.close()


HOST_IP = host_ipv4()


@pytest.mark.skipif(HOST_IP is None, reason="this machine has no non-loopback IPv4 address")
def test_anonymous_only_from_loopback_by_default(fluxmq_broker_factory, tmp_path):
    from fluxmq_core.auth_file import set_password

    assert HOST_IP is not None
    pw = tmp_path / "passwd"
    set_password(pw, "dev", "pw", iterations=1000)
    b = fluxmq_broker_factory(
        plugins=["coap"],
        config={"coap": {"bind": "0.0.0.0:0"}, "auth": {"password_file": str(pw)}},
    )
    port = b.port("coap.bind")
    remote = Raw(port, host=HOST_IP, source=HOST_IP)
    local = Raw(port)
    try:
        remote.send(encode(CON, POST, 1, b"r", path_options("/ps/net/t"), b"x"))
        refused = remote.recv_until(lambda m: m["mid"] == 1)
        assert refused["code"] == UNAUTHORIZED and b"this machine" in refused["payload"]
        remote.send(
            encode(CON, POST, 2, b"r", path_options("/ps/net/t?username=dev&password=pw"), b"x")
        )
        assert remote.recv_until(lambda m: m["mid"] == 2)["code"] == CHANGED
        local.send(encode(CON, POST, 3, b"l", path_options("/ps/net/t"), b"x"))
        assert local.recv_until(lambda m: m["mid"] == 3)["code"] == CHANGED
    finally:
        remote.close()
        local.close()


def test_max_observers_refuses_more_with_5_03(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["coap"], config={"coap": {"max_observers": 1}})
    raw = Raw(b.port("coap.bind"))
    try:
        assert observe(raw, b"m1", 1, "/ps/max/a")["code"] == CONTENT
        refused = observe(raw, b"m2", 2, "/ps/max/b")
        assert refused["code"] == SERVICE_UNAVAILABLE and b"max_observers" in refused["payload"]
    finally:
        raw.close()
