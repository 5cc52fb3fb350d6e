"""Shared helpers for the MQTT tests: a paho wrapper with queues and a raw-socket
client that speaks bytes through our own codec. Every wait is bounded."""

from __future__ import annotations

import queue
import socket
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fluxmq_mqtt.codec import Decoder, MQTTProtocolError, encode
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

WAIT = 5.0


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
        c = self.client
        c.on_message = lambda _c, _u, m: self.messages.put(m)
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

    def nothing(self, timeout: float = 0.3) -> None:
        """Assert no message arrives within ``timeout`` (only for negative checks)."""
        try:
            m = self.messages.get(timeout=timeout)
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
