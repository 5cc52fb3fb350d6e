"""MQTT over WebSocket: paho-mqtt's ``transport="websockets"`` (3.1, 3.1.1 and 5.0)
and raw bytes (bad upgrades, packets split across frames, several packets in one
frame, ping/pong, close codes), plus the secure variant (wss)."""

from __future__ import annotations

import base64
import os
import queue
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Decoder,
    Publish,
    Subscribe,
    SubscribeOptions,
    encode,
)
from paho.mqtt.client import CallbackAPIVersion
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request

WAIT = 5.0


class WSPaho:
    """A paho client over WebSocket, messages in a queue; every wait bounded."""

    def __init__(
        self,
        port: int,
        version: int = 5,
        *,
        path: str = "/mqtt",
        tls_ca: str | None = None,
        client_id: str | None = None,
    ) -> None:
        proto = {5: mqtt.MQTTv5, 4: mqtt.MQTTv311, 3: mqtt.MQTTv31}[version]
        self.version = version
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or uuid.uuid4().hex[:12],
            protocol=proto,
            transport="websockets",
        )
        self.client.ws_set_options(path=path)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[Any] = queue.Queue()
        c = self.client
        c.on_message = lambda _c, _u, m: self.messages.put(m)
        c.on_connect = lambda _c, _u, flags, rc, props: self.connack.put(rc)
        c.on_subscribe = lambda _c, _u, mid, rcs, props: self.subacks.put(rcs)
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        rc = self.connack.get(timeout=WAIT)
        assert not rc.is_failure, rc

    def subscribe(self, topic: str, qos: int) -> Any:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos, retain).wait_for_publish(WAIT)

    def get(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


@pytest.fixture
def ws_clients():
    made: list[WSPaho] = []

    def factory(*args: Any, **kwargs: Any) -> WSPaho:
        c = WSPaho(*args, **kwargs)
        made.append(c)
        return c

    yield factory
    for c in made:
        try:
            c.close()
        except Exception:
            pass


@pytest.mark.parametrize("version", [3, 4, 5])
def test_paho_pubsub_qos_0_1_2_over_websocket(broker, ws_clients, version):
    port = broker.port("mqtt.websocket")
    sub = ws_clients(port, version)
    pub = ws_clients(port, version)
    sub.subscribe("ws/#", 2)
    for qos in (0, 1, 2):
        pub.publish("ws/t", f"m{qos}".encode() * 50, qos)
        m = sub.get()
        assert (m.topic, m.payload, m.qos) == ("ws/t", f"m{qos}".encode() * 50, qos)


@pytest.mark.parametrize("version", [4, 5])
def test_retained_message_over_websocket(broker, ws_clients, version):
    port = broker.port("mqtt.websocket")
    ws_clients(port, version).publish("ws/retained", b"kept", 1, retain=True)
    late = ws_clients(port, version)
    late.subscribe("ws/retained", 1)
    m = late.get()
    assert (m.payload, m.retain) == (b"kept", True)


def test_websocket_and_tcp_clients_talk_to_each_other(broker, ws_clients, clients):
    tcp = clients(broker.port(), version=5)
    ws = ws_clients(broker.port("mqtt.websocket"), 5)
    tcp.subscribe("mix/a", 1)
    ws.subscribe("mix/b", 1)
    ws.publish("mix/a", b"from-ws", 1)
    tcp.publish("mix/b", b"from-tcp", 1)
    assert tcp.get().payload == b"from-ws"
    assert ws.get().payload == b"from-tcp"


# --- raw bytes --------------------------------------------------------------------------


class RawWS:
    """A socket plus wsproto's client side; packets decoded with our codec."""

    def __init__(self, port: int, subprotocols: list[str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Any] = []
        self.sock.sendall(
            self.ws.send(
                Request(host="127.0.0.1", target="/mqtt", subprotocols=subprotocols or ["mqtt"])
            )
        )
        ev = self.event()
        assert isinstance(ev, AcceptConnection), ev
        self.subprotocol = ev.subprotocol
        self.decoder = Decoder(version=5, role="client")

    def event(self) -> Any:
        while not self.events:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.events.extend(self.ws.events())
        return self.events.pop(0)

    def send_frames(self, *chunks: bytes, message_finished: bool = True) -> None:
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self.sock.sendall(
                self.ws.send(BytesMessage(data=chunk, message_finished=last and message_finished))
            )

    def packets(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            ev = self.event()
            assert isinstance(ev, BytesMessage), ev
            out.extend(self.decoder.packets(ev.data))
        return out

    def close_code(self) -> int:
        while True:
            ev = self.event()
            if isinstance(ev, CloseConnection):
                return int(ev.code)


def connect_bytes(cid: str) -> bytes:
    return encode(Connect(client_id=cid, keepalive=30, clean_start=True), 5)


def test_packet_split_across_frames_and_several_packets_in_one_frame(broker):
    ws = RawWS(broker.port("mqtt.websocket"))
    assert ws.subprotocol == "mqtt"
    data = connect_bytes("raw-ws")
    ws.send_frames(data[:3], data[3:7], data[7:])  # one packet over three frames
    assert isinstance(ws.packets(1)[0], Connack)
    # Two PUBLISH packets in one frame, and one split over two frames.
    p1 = encode(Publish(topic="a", payload=b"1", qos=0), 5)
    p2 = encode(Publish(topic="b", payload=b"2", qos=0), 5)
    p3 = encode(Publish(topic="c", payload=b"3", qos=0), 5)
    sub = RawWS(broker.port("mqtt.websocket"))
    sub.send_frames(connect_bytes("raw-sub"))
    sub.packets(1)
    sub.send_frames(
        encode(Subscribe(packet_id=1, subscriptions=(("#", SubscribeOptions(qos=0)),)), 5)
    )
    sub.packets(1)
    ws.send_frames(p1 + p2 + p3[:2])
    ws.send_frames(p3[2:])
    got = sub.packets(3)
    assert [(p.topic, p.payload) for p in got] == [("a", b"1"), ("b", b"2"), ("c", b"3")]


def test_ping_pong_and_mqttv31_subprotocol(broker):
    ws = RawWS(broker.port("mqtt.websocket"), subprotocols=["mqttv3.1"])
    assert ws.subprotocol == "mqttv3.1"
    ws.sock.sendall(ws.ws.send(Ping(payload=b"hi")))
    ev = ws.event()
    assert isinstance(ev, Pong) and ev.payload == b"hi"


def test_mqtt_protocol_error_closes_with_1000_after_the_broker_closes(broker):
    ws = RawWS(broker.port("mqtt.websocket"))
    ws.send_frames(b"\xf0\x00")  # reserved packet type: the MQTT layer closes
    assert ws.close_code() == 1000


def test_shutdown_sends_1001(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["mqtt"])
    ws = RawWS(b.port("mqtt.websocket"))
    ws.send_frames(connect_bytes("going-away"))
    ws.packets(1)
    b.stop()
    codes = []
    while True:
        ev = ws.event()
        if isinstance(ev, CloseConnection):
            codes.append(int(ev.code))
            break
    assert codes == [1001]


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out and (chunk := s.recv(65536)):
            out += chunk
    return out  # the status line and headers (enough for these tests)


def upgrade(path: str = "/mqtt", headers: str = "Sec-WebSocket-Protocol: mqtt\r\n") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{headers}\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (upgrade("/ws"), b"404"),
        (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (upgrade(headers="Sec-WebSocket-Protocol: stomp\r\n"), b"400"),
    ],
    ids=["wrong-path", "missing-upgrade-headers", "bad-subprotocol"],
)
def test_bad_upgrades(broker, request_bytes, status):
    answer = raw_http(broker.port("mqtt.websocket"), request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer


def test_origin_allow_list(fluxmq_broker_factory):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": {"websocket_origins": ["https://app.example"], "websocket_path": "/x/mqtt"}
        },
    )
    port = b.port("mqtt.websocket")
    bad = raw_http(
        port, upgrade("/x/mqtt", "Sec-WebSocket-Protocol: mqtt\r\nOrigin: https://evil.example\r\n")
    )
    assert bad.startswith(b"HTTP/1.1 403"), bad
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(
            upgrade("/x/mqtt", "Sec-WebSocket-Protocol: mqtt\r\nOrigin: https://app.example\r\n")
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 101")


def test_websocket_listener_can_be_disabled(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"websocket": ""}})
    assert "mqtt.websocket" not in b.context.bound


# --- wss ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wss")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        cwd=d,
    )
    return d


def test_paho_over_wss(fluxmq_broker_factory, ws_clients, cert):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": {
                "tls_cert": str(cert / "cert.pem"),
                "tls_key": str(cert / "key.pem"),
                "tls": "127.0.0.1:0",
                "wss": "127.0.0.1:0",
            }
        },
    )
    port = b.port("mqtt.wss")
    sub = ws_clients(port, 5, tls_ca=str(cert / "cert.pem"))
    pub = ws_clients(port, 4, tls_ca=str(cert / "cert.pem"))
    sub.subscribe("secure/#", 1)
    pub.publish("secure/x", b"tls", 1)
    assert sub.get().payload == b"tls"


def test_admin_session_provider_lists_and_kicks(broker, ws_clients):
    ws = ws_clients(broker.port("mqtt.websocket"), 5, client_id="ws-admin-1")
    ws.subscribe("adm/#", 1)
    infos = broker.call_soon(broker.context.sessions.list, timeout=WAIT)
    mine = [i for i in infos if i.client_id == "ws-admin-1"]
    assert mine and mine[0].protocol == "mqtt" and mine[0].connected
    assert mine[0].subscriptions == {"adm/#": 1} and mine[0].version == "5.0"
    assert broker.call_soon(broker.context.sessions.disconnect, "ws-admin-1")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        info = broker.call_soon(broker.context.sessions.get, "ws-admin-1")
        if not info or not info[0].connected:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("client not disconnected")
