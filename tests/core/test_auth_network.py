"""Secure defaults seen from the network, with real clients: paho-mqtt (5.0) and raw
3.1.1 bytes for MQTT, pika for AMQP 0.9.1, http.client for HTTP.

Each broker listens on ``0.0.0.0`` (an ephemeral port), and each client connects once
through loopback and once through this machine's own non-loopback IPv4 address, so the
broker sees a peer that is not on loopback without any other host being involved. The
tests skip, saying why, on a machine with no such address.
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import socket
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest
from paho.mqtt.client import CallbackAPIVersion

from fluxmq_core.auth_file import set_password
from fluxmq_core.testing.net import host_ipv4

WAIT = 5.0
ANY = "0.0.0.0:0"


HOST_IP = host_ipv4()

pytestmark = pytest.mark.skipif(
    HOST_IP is None, reason="this machine has no non-loopback IPv4 address to connect from"
)


@pytest.fixture
def passwd(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "wonderland", iterations=1000)
    return str(path)


def start(factory: Any, plugins: list[str], auth: dict[str, Any] | None = None) -> Any:
    config: dict[str, Any] = {"http": {"bind": ANY}}
    if "mqtt" in plugins:
        config["mqtt"] = {"tcp": ANY}
    if "amqp091" in plugins:
        config["amqp091"] = {"bind": ANY}
    if auth:
        config["auth"] = auth
    return factory(plugins=plugins, config=config)


# --- MQTT ------------------------------------------------------------------------------------


def paho_connect(
    host: str, port: int, username: str | None = None, password: str | None = None
) -> tuple[int, mqtt.Client]:
    """Connect with MQTT 5; return the CONNACK reason code and the running client."""
    acks: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=uuid.uuid4().hex[:12],
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    client.on_connect = lambda _c, _u, _f, rc, _p: acks.put(rc)
    if username is not None:
        client.username_pw_set(username, password)
    client.connect(host, port)
    client.loop_start()
    rc = acks.get(timeout=WAIT)
    return rc.value, client


def mqtt5_code(
    host: str, port: int, username: str | None = None, password: str | None = None
) -> int:
    code, client = paho_connect(host, port, username, password)
    client.disconnect()
    client.loop_stop()
    return code


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def mqtt311_code(
    host: str, port: int, username: str | None = None, password: str | None = None
) -> int:
    """Send a 3.1.1 CONNECT by hand and return the CONNACK return code byte."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _utf8("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big") + _utf8("raw311")
    if username is not None:
        body += _utf8(username)
    if password is not None:
        body += _utf8(password)
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            assert chunk, "connection closed before CONNACK"
            connack += chunk
    assert connack[:3] == b"\x20\x02\x00"
    return connack[3]


def test_mqtt_anonymous_local_only_by_default(fluxmq_broker_factory, passwd):
    broker = start(fluxmq_broker_factory, ["mqtt"], {"password_file": passwd})
    port = broker.port("mqtt.tcp")
    assert mqtt5_code("127.0.0.1", port) == 0
    assert mqtt311_code("127.0.0.1", port) == 0
    assert mqtt5_code(HOST_IP, port) == 0x87  # not authorized
    assert mqtt311_code(HOST_IP, port) == 5  # 3.1.1: not authorized
    # Credentials get in from anywhere; a wrong password does not.
    assert mqtt5_code(HOST_IP, port, "alice", "wonderland") == 0
    assert mqtt311_code(HOST_IP, port, "alice", "wonderland") == 0
    assert mqtt5_code(HOST_IP, port, "alice", "nope") == 0x86
    assert mqtt311_code(HOST_IP, port, "alice", "nope") == 4


def ws_code(host: str, port: int, username: str | None = None, password: str | None = None) -> int:
    """MQTT 5 over WebSocket with paho; the CONNACK reason code."""
    acks: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=uuid.uuid4().hex[:12],
        protocol=mqtt.MQTTv5,
        transport="websockets",
        reconnect_on_failure=False,
    )
    client.ws_set_options(path="/mqtt")
    client.on_connect = lambda _c, _u, _f, rc, _p: acks.put(rc)
    if username is not None:
        client.username_pw_set(username, password)
    client.connect(host, port)
    client.loop_start()
    try:
        return acks.get(timeout=WAIT).value
    finally:
        client.disconnect()
        client.loop_stop()


def test_mqtt_over_websocket_anonymous_local_only(fluxmq_broker_factory, passwd):
    broker = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "http": {"bind": ANY},
            "mqtt": {"tcp": ANY, "websocket": ANY},
            "auth": {"password_file": passwd},
        },
    )
    port = broker.port("mqtt.websocket")
    assert ws_code("127.0.0.1", port) == 0
    assert ws_code(HOST_IP, port) == 0x87  # not authorized
    assert ws_code(HOST_IP, port, "alice", "wonderland") == 0


def test_mqtt_username_without_any_source_is_refused(fluxmq_broker_factory):
    broker = start(fluxmq_broker_factory, ["mqtt"])
    port = broker.port("mqtt.tcp")
    for host in ("127.0.0.1", HOST_IP):
        assert mqtt5_code(host, port, "anyone", "anything") == 0x86
        assert mqtt311_code(host, port, "anyone", "anything") == 4
    assert mqtt5_code("127.0.0.1", port) == 0  # no credentials, loopback: still fine


def test_mqtt_zero_length_username_is_anonymous(fluxmq_broker_factory, passwd):
    broker = start(fluxmq_broker_factory, ["mqtt"], {"password_file": passwd})
    port = broker.port("mqtt.tcp")
    assert mqtt311_code("127.0.0.1", port, "") == 0
    assert mqtt311_code("127.0.0.1", port, "", "pw") == 0
    assert mqtt5_code("127.0.0.1", port, "") == 0
    assert mqtt311_code(HOST_IP, port, "") == 5  # anonymous rules: not authorized
    assert mqtt5_code(HOST_IP, port, "") == 0x87


def test_mqtt_anonymous_true_and_false(fluxmq_broker_factory):
    open_broker = start(fluxmq_broker_factory, ["mqtt"], {"anonymous": True})
    port = open_broker.port("mqtt.tcp")
    assert mqtt5_code(HOST_IP, port) == 0
    assert mqtt5_code(HOST_IP, port, "anyone", "x") == 0  # Mosquitto 1.x behaviour
    closed = start(fluxmq_broker_factory, ["mqtt"], {"anonymous": False})
    assert mqtt5_code("127.0.0.1", closed.port("mqtt.tcp")) == 0x87


# --- ACL: acl_subscribe = "filter" | "strict" ---------------------------------------------------

WIDE_ACL = """
[[rule]]
permission = "deny"
action = "subscribe"
topic = "secret/#"
[[rule]]
permission = "allow"
topic = "#"
"""


def subscribe(client: mqtt.Client, topic: str) -> tuple[int, queue.Queue[Any]]:
    acks: queue.Queue[Any] = queue.Queue()
    messages: queue.Queue[Any] = queue.Queue()
    client.on_subscribe = lambda _c, _u, _mid, rcs, _p: acks.put(rcs)
    client.on_message = lambda _c, _u, m: messages.put(m)
    client.subscribe(topic, qos=1)
    return acks.get(timeout=WAIT)[0].value, messages


def publish(client: mqtt.Client, topic: str, payload: str) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(WAIT)


@pytest.mark.parametrize("mode", ["filter", "strict"])
def test_wide_subscription_and_per_message_reads(fluxmq_broker_factory, tmp_path, mode):
    acl = tmp_path / "acl.toml"
    acl.write_text(WIDE_ACL)
    broker = start(fluxmq_broker_factory, ["mqtt"], {"acl_file": str(acl), "acl_subscribe": mode})
    port = broker.port("mqtt.tcp")
    _, reader = paho_connect("127.0.0.1", port)
    _, writer = paho_connect("127.0.0.1", port)
    code, messages = subscribe(reader, "#")
    if mode == "strict":
        assert code == 0x87  # a deny rule on a subtree refuses the whole wildcard
        return
    assert code == 1
    publish(writer, "secret/x", "hidden")
    publish(writer, "public/x", "shown")
    publish(writer, "secret/y/z", "hidden")
    publish(writer, "public/y", "shown too")
    # Deliveries to one subscriber keep publish order: had a secret message been
    # delivered, it would have arrived before the public one after it.
    got = [messages.get(timeout=WAIT).topic for _ in range(2)]
    assert got == ["public/x", "public/y"]
    assert messages.empty()
    assert broker.context.stats.messages_dropped == 2  # published, not delivered
    # The decisions are cached per client and topic: the hot path is a dict lookup.
    auth = broker.context.auth
    cid = reader._client_id.decode()
    assert auth.authorize_cached(cid, None, "subscribe", "secret/x") is False
    assert auth.authorize_cached(cid, None, "subscribe", "public/x") is True
    for client in (reader, writer):
        client.disconnect()
        client.loop_stop()


def test_filter_mode_also_filters_retained_messages(fluxmq_broker_factory, tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(WIDE_ACL)
    broker = start(fluxmq_broker_factory, ["mqtt"], {"acl_file": str(acl)})
    port = broker.port("mqtt.tcp")
    _, writer = paho_connect("127.0.0.1", port)
    for topic in ("secret/r", "public/r"):
        writer.publish(topic, "kept", qos=1, retain=True).wait_for_publish(WAIT)
    _, reader = paho_connect("127.0.0.1", port)
    code, messages = subscribe(reader, "#")
    assert code == 1
    first = messages.get(timeout=WAIT)
    publish(writer, "public/after", "live")  # a round trip after the retained ones
    second = messages.get(timeout=WAIT)
    assert (first.topic, second.topic) == ("public/r", "public/after")
    for client in (reader, writer):
        client.disconnect()
        client.loop_stop()


# --- AMQP 0.9.1 --------------------------------------------------------------------------------


def amqp_open(host: str, port: int, user: str = "guest", password: str = "guest") -> Any:
    params = pika.ConnectionParameters(
        host=host,
        port=port,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=WAIT,
        blocked_connection_timeout=WAIT,
    )
    return pika.BlockingConnection(params)


def amqp_refusal(host: str, port: int, user: str = "guest", password: str = "guest") -> Any:
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        amqp_open(host, port, user, password).close()
    return info.value


def test_amqp_guest_local_only_and_credentials_from_anywhere(fluxmq_broker_factory, passwd):
    broker = start(fluxmq_broker_factory, ["amqp091"], {"password_file": passwd})
    port = broker.port("amqp091.bind")
    conn = amqp_open("127.0.0.1", port)  # pika's default guest/guest, from loopback
    conn.channel().queue_declare("q-local")
    conn.close()
    refused = amqp_refusal(HOST_IP, port)
    assert "403" in repr(refused) or "ACCESS_REFUSED" in repr(refused)
    conn = amqp_open(HOST_IP, port, "alice", "wonderland")
    conn.channel().queue_declare("q-remote")
    conn.close()
    assert "403" in repr(amqp_refusal(HOST_IP, port, "alice", "nope"))


def test_amqp_username_without_any_source_is_refused(fluxmq_broker_factory):
    broker = start(fluxmq_broker_factory, ["amqp091"])
    port = broker.port("amqp091.bind")
    assert "403" in repr(amqp_refusal("127.0.0.1", port, "someone", "anything"))
    amqp_open("127.0.0.1", port).close()  # guest/guest is no credentials: local is fine


# --- HTTP --------------------------------------------------------------------------------------


def http_call(
    host: str, port: int, method: str, path: str, body: Any = None, auth: str | None = None
):
    conn = http.client.HTTPConnection(host, port, timeout=WAIT)
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    conn.request(method, path, body=json.dumps(body).encode() if body else None, headers=headers)
    resp = conn.getresponse()
    status, challenge = resp.status, resp.getheader("WWW-Authenticate")
    resp.read()
    conn.close()
    return status, challenge


PUBLISH = {"topic": "t/1", "payload": base64.b64encode(b"hi").decode(), "qos": 0}


def test_http_publish_and_subscribe_refuse_remote_anonymous(fluxmq_broker_factory, passwd):
    broker = start(fluxmq_broker_factory, [], {"password_file": passwd})
    port = broker.port("http.bind")
    assert http_call("127.0.0.1", port, "POST", "/publish", PUBLISH)[0] == 200
    status, challenge = http_call(HOST_IP, port, "POST", "/publish", PUBLISH)
    assert status == 401 and challenge and challenge.startswith("Basic")
    assert http_call(HOST_IP, port, "GET", "/subscribe?filter=%23")[0] == 401
    ok = http_call(HOST_IP, port, "POST", "/publish", PUBLISH, auth="alice:wonderland")
    assert ok[0] == 200
    assert http_call(HOST_IP, port, "POST", "/publish", PUBLISH, auth="alice:nope")[0] == 401


def test_http_username_without_any_source_is_refused(fluxmq_broker_factory):
    broker = start(fluxmq_broker_factory, [])
    port = broker.port("http.bind")
    assert http_call("127.0.0.1", port, "POST", "/publish", PUBLISH, auth="bob:x")[0] == 401


def test_start_up_log_names_listeners_reachable_from_outside(fluxmq_broker_factory, caplog):
    with caplog.at_level("INFO", logger="fluxmq.auth"):
        start(fluxmq_broker_factory, ["mqtt"])
    (line,) = [r.getMessage() for r in caplog.records if r.name == "fluxmq.auth"]
    assert "mqtt.tcp (0.0.0.0:" in line and "http.bind (0.0.0.0:" in line
    assert "No authentication source" in line


def test_sse_stream_is_filtered_per_message(fluxmq_broker_factory, tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(WIDE_ACL)
    broker = start(fluxmq_broker_factory, [], {"acl_file": str(acl)})
    port = broker.port("http.bind")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", "/subscribe?filter=%23")
    resp = conn.getresponse()
    assert resp.status == 200
    for _ in range(50):  # the stream says when it is subscribed
        if resp.fp.readline().startswith(b": subscribed"):
            break
    for topic in ("secret/x", "public/x"):
        body = {"topic": topic, "payload": base64.b64encode(b"p").decode()}
        assert http_call("127.0.0.1", port, "POST", "/publish", body)[0] == 200
    topic = None
    while topic is None:
        line = resp.fp.readline()
        assert line, "stream ended"
        if line.startswith(b"data: "):
            topic = json.loads(line[6:])["topic"]
    assert topic == "public/x"  # secret/x, published first, was not delivered
    resp.close()
    conn.close()
