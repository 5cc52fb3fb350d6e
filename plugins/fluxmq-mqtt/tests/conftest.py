"""Shared helpers for the MQTT tests: a paho wrapper with queues and a raw-socket
client that speaks bytes through our own codec. Every wait is bounded.

Negative checks ("nothing arrived") never wait a fixed time: :meth:`Paho.nothing`
makes a round trip through the broker (a marker message to the client itself), so a
message the broker sent before the check cannot arrive after it unnoticed."""

from __future__ import annotations

import queue
import socket
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fluxmq_mqtt.codec import Decoder, MQTTProtocolError, Pingreq, Pingresp, encode
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

WAIT = 5.0

# Marker payloads start with this; every client files them apart from its messages
# (a wildcard subscriber may see another client's marker on a custom topic).
# Both are short: a marker must fit a client's small Maximum Packet Size.
MARKER = b"~marker:"
# ``$`` topics are matched by no ``#`` or ``+`` filter, so markers stay private.
MARKER_TOPIC = "$marker/"


class Paho:
    """A paho-mqtt 2.x client on its own network thread, messages in a queue."""

    def __init__(
        self,
        port: int,
        client_id: str | None = None,
        version: int = 5,
        *,
        clean: bool = True,
        connect_props: dict[str, Any] | None = None,
        will: tuple | None = None,
        will_props: dict[str, Any] | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        connect: bool = True,
    ) -> None:
        proto = {5: mqtt.MQTTv5, 4: mqtt.MQTTv311, 3: mqtt.MQTTv31}[version]
        self.version = version
        cid = uuid.uuid4().hex[:12] if client_id is None else client_id
        kwargs: dict[str, Any] = {}
        if version < 5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=proto,
            # No reconnect behind a test's back; and after drop()
            # the network thread ends at once instead of
            # sleeping a reconnect delay that tests would wait out.
            reconnect_on_failure=False,
            **kwargs,
        )
        self.port = port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[tuple] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[list] = queue.Queue()
        self.pubacks: queue.Queue[tuple] = queue.Queue()
        self.markers: queue.Queue[bytes] = queue.Queue()
        self._marker_topic: str | None = None
        c = self.client
        c.on_message = self._on_message
        c.on_connect = lambda _c, _u, flags, rc, props: self.connack.put((flags, rc, props))
        c.on_disconnect = lambda _c, _u, flags, rc, props: self.disconnects.put(rc)
        c.on_subscribe = lambda _c, _u, mid, rcs, props: self.subacks.put(rcs)
        c.on_publish = lambda _c, _u, mid, rc, props: self.pubacks.put((mid, rc))
        if username is not None:
            c.username_pw_set(username, password)
        if will is not None:
            wp = None
            if will_props:
                wp = PahoProperties(PacketTypes.WILLMESSAGE)
                for k, v in will_props.items():
                    setattr(wp, k, v)
            c.will_set(*will, properties=wp)
        self._props = None
        self._clean = clean
        if connect_props:
            self._props = PahoProperties(PacketTypes.CONNECT)
            for k, v in connect_props.items():
                setattr(self._props, k, v)
        self.keepalive = keepalive
        if connect:
            self.connect()

    def connect(self, expect_ok: bool = True) -> tuple:
        kwargs: dict[str, Any] = {"keepalive": self.keepalive}
        if self.version == 5:
            kwargs["clean_start"] = self._clean
            kwargs["properties"] = self._props
        self.client.connect("127.0.0.1", self.port, **kwargs)
        self.client.loop_start()
        flags, rc, props = self.connack.get(timeout=WAIT)
        if expect_ok:
            assert not rc.is_failure, rc
        return flags, rc, props

    def subscribe(self, topic: str, qos: int = 0, **opts: Any) -> list:
        props = opts.pop("properties", None)
        if self.version == 5:
            options = mqtt.SubscribeOptions(qos=qos, **opts)
            self.client.subscribe(topic, options=options, properties=props)
        else:
            self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        props: dict[str, Any] | None = None,
    ) -> Any:
        p = None
        if props:
            p = PahoProperties(PacketTypes.PUBLISH)
            for k, v in props.items():
                setattr(p, k, v)
        info = self.client.publish(topic, payload, qos, retain, properties=p)
        info.wait_for_publish(WAIT)
        return info

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        if m.payload.startswith(MARKER):
            self.markers.put(m.payload)
            self.client.ack(m.mid, m.qos)  # a no-op unless manual acks are on
        else:
            self.messages.put(m)

    def sync(self, topic: str | None = None, timeout: float = WAIT) -> None:
        """Round trip through the broker: publish a unique marker to a topic this
        client subscribes to and wait until it comes back.

        The broker handles one connection's packets in order and writes to one
        connection in order, so afterwards every publish this client sent before
        has been routed, and every message the broker sent this client before the
        marker is in :attr:`messages`. ``topic`` replaces the private ``$`` marker
        topic for clients whose ACL refuses it (it must be one they may subscribe
        and publish to)."""
        topic = topic or self._marker_topic or MARKER_TOPIC + uuid.uuid4().hex[:12]
        if self._marker_topic != topic:
            rcs = self.subscribe(topic, 1)
            code = rcs[0] if isinstance(rcs[0], int) else rcs[0].value
            if code >= 0x80:
                raise AssertionError(
                    f"marker subscription to {topic!r} refused ({code:#x}): "
                    "pass a topic this client may use, nothing(topic=...)"
                )
            self._marker_topic = topic
        marker = MARKER + uuid.uuid4().hex[:12].encode()
        self.publish(topic, marker, 1)
        deadline = time.monotonic() + timeout
        while True:  # earlier markers (duplicates, another client's) are skipped
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"marker on {topic!r} did not come back in {timeout} s")
            try:
                if self.markers.get(timeout=left) == marker:
                    return
            except queue.Empty:
                continue

    def nothing(self, *, topic: str | None = None) -> None:
        """Assert the broker has sent this client no message (a round trip, not a
        fixed wait: see :meth:`sync`). A message caused by another client counts
        only once that client's publish was handled: acknowledged (QoS 1 and 2) or
        followed by that client's own :meth:`sync` (QoS 0)."""
        self.sync(topic)
        try:
            m = self.messages.get_nowait()
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m.topic} {m.payload!r}")

    def drop(self) -> None:
        """Close the socket without DISCONNECT (the broker sees a lost connection)."""
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.client.loop_stop()

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def _wait_connected(broker: Any, n: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while broker.call_soon(lambda: broker.context.stats.clients_connected) != n:
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker did not reach {n} connected clients in time")
        time.sleep(0.02)


@pytest.fixture
def wait_connected():
    """``wait_connected(broker, n)``: wait (bounded) until the broker counts ``n``
    connected clients.

    A connection counts as gone only after the broker handled its end (will
    published or scheduled, session ended or kept), so a negative check after this
    cannot race the broker noticing a close."""
    return _wait_connected


class Raw:
    """A raw TCP client: send bytes or packets, read decoded packets (bounded)."""

    def __init__(self, port: int, version: int | None = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.settimeout(WAIT)
        self.decoder = Decoder(version=version, role="client")
        self.version = version or 4
        self.pending: list[Any] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_packet(self, packet: Any) -> None:
        self.sock.sendall(encode(packet, self.version))

    def recv(self, timeout: float = WAIT) -> Any:
        """The next packet; raises EOFError when the broker closed the connection."""
        self.sock.settimeout(timeout)
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.pending.extend(self.decoder.packets(data))
        return self.pending.pop(0)

    def nothing(self) -> None:
        """Assert the broker sent nothing (and did not close): a PINGREQ round trip.

        The broker writes one connection's packets in order, so a packet it sent
        before handling the PINGREQ arrives before the PINGRESP; no fixed wait."""
        assert not self.pending, f"unexpected packet {self.pending[0]!r}"
        self.send_packet(Pingreq())
        packet = self.recv()
        assert isinstance(packet, Pingresp), f"unexpected packet {packet!r}"

    def closed(self, timeout: float = WAIT) -> bool:
        """True once the broker closed the connection (packets before are skipped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                try:
                    self.pending.extend(self.decoder.packets(data))
                except MQTTProtocolError:
                    pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw():
    """``raw(port, version=5) -> Raw``; all closed at the end."""
    made: list[Raw] = []

    def factory(port: int, version: int | None = 5) -> Raw:
        r = Raw(port, version)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


@pytest.fixture
def broker(fluxmq_broker_factory):
    return fluxmq_broker_factory(plugins=["mqtt"])


@pytest.fixture
def clients():
    """Collects Paho clients and closes them at the end."""
    made: list[Paho] = []

    class Factory:
        def __call__(self, port: int, *args: Any, **kwargs: Any) -> Paho:
            c = Paho(port, *args, **kwargs)
            made.append(c)
            return c

    yield Factory()
    for c in made:
        try:
            c.close()
        except Exception:
            pass
