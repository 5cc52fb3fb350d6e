"""Interop of the codec with an independent implementation: paho-mqtt (v2 API).

A tiny single-connection server runs in a thread on an ephemeral port: it decodes what
paho sends with our `Decoder` and answers with our `encode`. The test then checks both
directions: our decoded packets carry what paho was asked to send, and paho's callbacks
receive what we encoded. Every wait is bounded by a timeout; nothing measures time.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho_client
import pytest
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Decoder,
    Disconnect,
    MQTTProtocolError,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    encode,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions as PahoSubscribeOptions

TIMEOUT = 10.0


class TinyServer:
    """One accepted connection, decoded with our Decoder, answered with our encoder."""

    def __init__(self, respond: Callable[[TinyServer, Any], list] | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.decoder = Decoder(role="server")
        self.received: queue.Queue = queue.Queue()
        self.errors: list[BaseException] = []
        self.respond = respond or default_respond
        self.conn: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tiny-mqtt-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:
            self.errors.append(exc)
            return
        self.conn = conn
        conn.settimeout(0.1)  # poll interval for the stop flag, not an assertion
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                packets = self.decoder.packets(data)
            except MQTTProtocolError as exc:
                self.errors.append(exc)
                break
            for packet in packets:
                self.received.put(packet)
                for reply in self.respond(self, packet):
                    self.send(reply)

    def send(self, packet: Any) -> None:
        assert self.conn is not None and self.decoder.version is not None
        data = encode(packet, self.decoder.version)
        with self._send_lock:
            self.conn.sendall(data)

    def expect(self, cls: type) -> Any:
        """The next received packet of type `cls` (others are skipped)."""
        while True:
            try:
                packet = self.received.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no {cls.__name__} received; errors: {self.errors}")
            if isinstance(packet, cls):
                return packet

    def close(self) -> None:
        self._stop.set()
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        self.thread.join(TIMEOUT)


def default_respond(server: TinyServer, packet: Any) -> list:
    v5 = server.decoder.version == 5
    if isinstance(packet, Connect):
        props = (
            Properties(
                topic_alias_maximum=4,
                receive_maximum=20,
                assigned_client_identifier="assigned",
                user_properties=(("server", "tiny"),),
                reason_string="welcome",
            )
            if v5
            else None
        )
        return [Connack(False, 0, props)]
    if isinstance(packet, Subscribe):
        codes = tuple(opts.qos for _, opts in packet.subscriptions)
        return [Suback(packet.packet_id, codes)]
    if isinstance(packet, Unsubscribe):
        return [Unsuback(packet.packet_id, (0x11,) * len(packet.topic_filters) if v5 else ())]
    if isinstance(packet, Publish) and packet.qos == 1:
        if v5:
            return [Puback(packet.packet_id, 0x10, Properties(reason_string="nobody listens"))]
        return [Puback(packet.packet_id)]
    if isinstance(packet, Publish) and packet.qos == 2:
        return [Pubrec(packet.packet_id)]
    if isinstance(packet, Pubrel):
        return [Pubcomp(packet.packet_id)]
    if isinstance(packet, Pubrec):  # paho acknowledging a QoS 2 PUBLISH we sent
        return [Pubrel(packet.packet_id)]
    if isinstance(packet, Pingreq):
        return [Pingresp()]
    return []


class PahoSide:
    """paho callbacks funnelled into queues so the test can wait with a timeout."""

    def __init__(self, protocol: int, client_id: str) -> None:
        self.client = paho_client.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.events: dict[str, queue.Queue] = {
            name: queue.Queue()
            for name in ("connect", "subscribe", "unsubscribe", "publish", "message", "disconnect")
        }
        c = self.client
        c.on_connect = lambda cl, ud, flags, rc, props: self.events["connect"].put(
            (flags, rc, props)
        )
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self.events["subscribe"].put(
            (mid, rcs, props)
        )
        c.on_unsubscribe = lambda cl, ud, mid, rcs, props: self.events["unsubscribe"].put(
            (mid, rcs, props)
        )
        c.on_publish = lambda cl, ud, mid, rc, props: self.events["publish"].put((mid, rc, props))
        c.on_message = lambda cl, ud, msg: self.events["message"].put(msg)
        c.on_disconnect = lambda cl, ud, flags, rc, props: self.events["disconnect"].put(
            (flags, rc, props)
        )

    def wait(self, name: str) -> Any:
        try:
            return self.events[name].get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"paho never reported {name}")

    def stop(self) -> None:
        self.client.loop_stop()


@pytest.fixture
def server():
    srv = TinyServer()
    yield srv
    srv.close()


def test_paho_v5_full_exchange(server):
    paho = PahoSide(paho_client.MQTTv5, "paho-five")
    c = paho.client
    try:
        will_props = PahoProperties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 15
        will_props.ContentType = "text/plain"
        will_props.UserProperty = ("w", "1")
        c.will_set(
            "clients/paho-five/status", b"offline", qos=1, retain=True, properties=will_props
        )
        c.username_pw_set("alice", "s3cret")
        connect_props = PahoProperties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 120
        connect_props.ReceiveMaximum = 10
        connect_props.MaximumPacketSize = 65536
        connect_props.UserProperty = [("k", "v"), ("k", "v2")]
        c.connect(
            "127.0.0.1", server.port, keepalive=30, clean_start=True, properties=connect_props
        )
        c.loop_start()

        connect = server.expect(Connect)
        assert connect.protocol_level == 5 and connect.protocol_name == "MQTT"
        assert connect.client_id == "paho-five" and connect.keepalive == 30 and connect.clean_start
        assert connect.username == "alice" and connect.password == b"s3cret"
        assert (
            connect.will_topic,
            connect.will_payload,
            connect.will_qos,
            connect.will_retain,
        ) == (
            "clients/paho-five/status",
            b"offline",
            1,
            True,
        )
        assert connect.will_properties == Properties(
            will_delay_interval=15, content_type="text/plain", user_properties=(("w", "1"),)
        )
        assert connect.properties == Properties(
            session_expiry_interval=120,
            receive_maximum=10,
            maximum_packet_size=65536,
            user_properties=(("k", "v"), ("k", "v2")),
        )

        flags, rc, props = paho.wait("connect")
        assert rc.value == 0 and not flags.session_present
        assert props.TopicAliasMaximum == 4 and props.ReceiveMaximum == 20
        assert props.AssignedClientIdentifier == "assigned" and props.ReasonString == "welcome"
        assert props.UserProperty == [("server", "tiny")]

        # SUBSCRIBE with every option and a subscription identifier.
        sub_props = PahoProperties(PacketTypes.SUBSCRIBE)
        sub_props.SubscriptionIdentifier = 7
        sub_props.UserProperty = ("group", "g1")
        _, mid = c.subscribe(
            [
                (
                    "sensors/+/temp",
                    PahoSubscribeOptions(
                        qos=2, noLocal=True, retainAsPublished=True, retainHandling=1
                    ),
                ),
                ("alerts/#", PahoSubscribeOptions(qos=1, retainHandling=2)),
            ],
            properties=sub_props,
        )
        subscribe = server.expect(Subscribe)
        assert subscribe.packet_id == mid
        assert subscribe.subscriptions == (
            ("sensors/+/temp", SubscribeOptions(2, True, True, 1)),
            ("alerts/#", SubscribeOptions(1, False, False, 2)),
        )
        assert subscribe.properties == Properties(
            subscription_identifiers=(7,), user_properties=(("group", "g1"),)
        )
        sub_mid, codes, _ = paho.wait("subscribe")
        assert sub_mid == mid and [code.value for code in codes] == [2, 1]

        # PUBLISH at each QoS with properties.
        pub_props = PahoProperties(PacketTypes.PUBLISH)
        pub_props.PayloadFormatIndicator = 1
        pub_props.MessageExpiryInterval = 60
        pub_props.ContentType = "application/json"
        pub_props.ResponseTopic = "replies/paho"
        pub_props.CorrelationData = b"\x01\x02"
        pub_props.UserProperty = [("trace", "abc"), ("trace", "def")]
        expected_props = Properties(
            payload_format_indicator=1,
            message_expiry_interval=60,
            content_type="application/json",
            response_topic="replies/paho",
            correlation_data=b"\x01\x02",
            user_properties=(("trace", "abc"), ("trace", "def")),
        )
        for qos in (0, 1, 2):
            info = c.publish(
                f"sensors/{qos}/temp",
                f'{{"qos": {qos}}}'.encode(),
                qos=qos,
                retain=qos == 1,
                properties=pub_props,
            )
            publish = server.expect(Publish)
            assert (
                publish.topic == f"sensors/{qos}/temp"
                and publish.payload == f'{{"qos": {qos}}}'.encode()
            )
            assert publish.qos == qos and publish.retain == (qos == 1) and not publish.dup
            assert publish.packet_id == (info.mid if qos else None)
            assert publish.properties == expected_props
            if qos == 2:
                assert server.expect(Pubrel).packet_id == info.mid
            mid, rc, _ = paho.wait("publish")
            assert mid == info.mid
            if qos == 1:
                assert rc.value == 0x10  # our PUBACK's reason code reached paho

        # PUBLISH from us to paho, QoS 1 and 2, with properties paho must decode.
        out_props = Properties(
            payload_format_indicator=1,
            content_type="text/plain",
            response_topic="replies/x",
            correlation_data=b"cid",
            subscription_identifiers=(7,),
            message_expiry_interval=30,
            user_properties=(("from", "fluxmq"), ("n", "1")),
        )
        server.send(
            Publish(
                "sensors/a/temp", b"21.5", qos=1, retain=True, packet_id=101, properties=out_props
            )
        )
        msg = paho.wait("message")
        assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("sensors/a/temp", b"21.5", 1, True)
        p = msg.properties
        assert p.ContentType == "text/plain" and p.ResponseTopic == "replies/x"
        assert p.CorrelationData == b"cid" and p.SubscriptionIdentifier == [7]
        assert p.MessageExpiryInterval == 30 and p.PayloadFormatIndicator == 1
        assert p.UserProperty == [("from", "fluxmq"), ("n", "1")]
        assert server.expect(Puback) == Puback(101)

        server.send(Publish("alerts/fire", b"\x00\xff", qos=2, packet_id=102))
        msg = paho.wait("message")
        assert (msg.topic, msg.payload, msg.qos) == ("alerts/fire", b"\x00\xff", 2)
        assert server.expect(Pubrec) == Pubrec(102)
        assert server.expect(Pubcomp) == Pubcomp(102)

        # UNSUBSCRIBE and the reason codes paho gets back.
        _, mid = c.unsubscribe(["sensors/+/temp", "alerts/#"])
        assert server.expect(Unsubscribe) == Unsubscribe(mid, ("sensors/+/temp", "alerts/#"))
        unsub_mid, codes, _ = paho.wait("unsubscribe")
        assert unsub_mid == mid and [code.value for code in codes] == [0x11, 0x11]

        # The server disconnects paho with a reason code and a reason string.
        server.send(Disconnect(0x8B, Properties(reason_string="maintenance")))
        _, rc, props = paho.wait("disconnect")
        assert rc.value == 0x8B
        assert server.errors == []
    finally:
        paho.stop()


def test_paho_v5_client_disconnect_with_reason(server):
    paho = PahoSide(paho_client.MQTTv5, "paho-bye")
    try:
        paho.client.connect("127.0.0.1", server.port, keepalive=0)
        paho.client.loop_start()
        server.expect(Connect)
        paho.wait("connect")
        disconnect_props = PahoProperties(PacketTypes.DISCONNECT)
        disconnect_props.SessionExpiryInterval = 0
        disconnect_props.ReasonString = "bye"
        paho.client.disconnect(
            reasoncode=PahoReasonCode(PacketTypes.DISCONNECT, identifier=0x04),
            properties=disconnect_props,
        )
        disconnect = server.expect(Disconnect)
        assert disconnect == Disconnect(
            0x04, Properties(session_expiry_interval=0, reason_string="bye")
        )
        assert server.errors == []
    finally:
        paho.stop()


def test_paho_v311_exchange(server):
    paho = PahoSide(paho_client.MQTTv311, "paho-311")
    c = paho.client
    try:
        c.will_set("status/paho-311", b"gone", qos=2, retain=False)
        c.username_pw_set("bob", None)
        c.connect("127.0.0.1", server.port, keepalive=45)
        c.loop_start()
        connect = server.expect(Connect)
        assert (connect.protocol_name, connect.protocol_level) == ("MQTT", 4)
        assert connect.client_id == "paho-311" and connect.keepalive == 45 and connect.clean_start
        assert connect.username == "bob" and connect.password is None
        assert (connect.will_topic, connect.will_payload, connect.will_qos) == (
            "status/paho-311",
            b"gone",
            2,
        )
        assert connect.properties is None and connect.will_properties is None
        _, rc, _ = paho.wait("connect")
        assert rc.value == 0

        _, mid = c.subscribe([("a/+", 1), ("b/#", 2)])
        assert server.expect(Subscribe) == Subscribe(
            mid, (("a/+", SubscribeOptions(1)), ("b/#", SubscribeOptions(2)))
        )
        assert [code.value for code in paho.wait("subscribe")[1]] == [1, 2]

        for qos in (0, 1, 2):
            info = c.publish("a/x", b"v" * (qos + 1), qos=qos)
            assert server.expect(Publish) == Publish(
                "a/x", b"v" * (qos + 1), qos, False, False, info.mid if qos else None
            )
            assert paho.wait("publish")[0] == info.mid

        server.send(Publish("b/long/topic", b"z" * 70_000, qos=1, packet_id=9))
        msg = paho.wait("message")
        assert (msg.topic, len(msg.payload), msg.qos) == ("b/long/topic", 70_000, 1)
        assert server.expect(Puback) == Puback(9)
        assert server.errors == []
    finally:
        paho.stop()


def test_paho_v311_connack_refused(server):
    server.respond = lambda srv, packet: (
        [Connack(False, 0x86)] if isinstance(packet, Connect) else []  # 5.0 code, mapped to 4
    )
    paho = PahoSide(paho_client.MQTTv311, "paho-refused")
    try:
        paho.client.connect("127.0.0.1", server.port)
        paho.client.loop_start()
        server.expect(Connect)
        _, rc, _ = paho.wait("connect")
        assert rc.value == 0x86  # paho maps 3.1.1 return code 4 to "Bad user name or password"
    finally:
        paho.stop()
