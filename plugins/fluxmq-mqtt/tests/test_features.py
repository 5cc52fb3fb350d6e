"""Feature switches and their visible effects, checked against the letter of the
specs: CONNACK capabilities advertised truthfully, ``max_qos`` granting less in
SUBACK, Request Problem Information, Response Information, retained messages with
expiry, and MQTT 3.1 (``MQIsdp``) clients."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Publish,
    Suback,
    Subscribe,
    SubscribeOptions,
)

from fluxmq_core.clock import ManualClock

OFF = {
    "max_qos": 0,
    "retain_available": False,
    "wildcard_subscriptions": False,
    "shared_subscriptions": False,
    "subscription_identifiers": False,
    "topic_alias_maximum": 0,
}


def _connect(raw, port, cid, version=5, props=None, **kw):
    c = raw(port, version=version)
    c.send_packet(Connect(client_id=cid, protocol_level=version, properties=props, **kw))
    ack = c.recv()
    assert isinstance(ack, Connack)
    return c, ack


def test_connack_advertises_defaults(broker, raw):
    _c, ack = _connect(raw, broker.port(), "caps")
    p = ack.properties
    assert p.maximum_qos is None  # absent = 2
    assert p.retain_available == 1
    assert p.wildcard_subscription_available == 1
    assert p.shared_subscription_available == 1
    assert p.subscription_identifier_available == 1
    assert p.topic_alias_maximum == 64
    assert p.receive_maximum == 1024 and p.maximum_packet_size == 1024 * 1024


def test_connack_advertises_what_is_switched_off_and_it_is_enforced(fluxmq_broker_factory, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": OFF})
    port = b.port()
    c, ack = _connect(raw, port, "off")
    p = ack.properties
    assert p.maximum_qos == 0 and p.retain_available == 0
    assert p.wildcard_subscription_available == 0 and p.shared_subscription_available == 0
    assert p.subscription_identifier_available == 0
    assert p.topic_alias_maximum is None  # absent = 0: no aliases accepted
    c.send_packet(
        Subscribe(
            1,
            (
                ("a/+", SubscribeOptions(0)),
                ("$share/g/a", SubscribeOptions(0)),
                ("a/b", SubscribeOptions(1)),
            ),
        )
    )
    assert c.recv() == Suback(
        1, (0xA2, 0x9E, 0), Properties(reason_string="some subscriptions were refused")
    )
    c.send_packet(
        Subscribe(2, (("x", SubscribeOptions(0)),), Properties(subscription_identifiers=(5,)))
    )
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0xA1
    c2, _ = _connect(raw, port, "alias")
    c2.send_packet(Publish("t", b"x", 0, properties=Properties(topic_alias=1)))
    assert c2.recv().reason_code == 0x94
    _c3, ack3 = _connect(raw, port, "will", will_topic="w", will_payload=b"x", will_retain=True)
    assert ack3.reason_code == 0x9A
    _c4, ack4 = _connect(raw, port, "will1", will_topic="w", will_payload=b"x", will_qos=1)
    assert ack4.reason_code == 0x9B


@pytest.mark.parametrize("version", [4, 5])
def test_max_qos_downgrades_suback_and_deliveries(fluxmq_broker_factory, clients, version):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"max_qos": 1}})
    port = b.port()
    sub = clients(port, version=version)
    assert [rc.value for rc in sub.subscribe("mq/#", 2)] == [1]
    pub = clients(port, version=version)
    pub.publish("mq/x", "one", 1)
    m = sub.get()
    assert m.payload == b"one" and m.qos == 1


def test_request_problem_information_0_suppresses_reason_strings(
    fluxmq_broker_factory, raw, tmp_path
):
    acl = tmp_path / "acl.toml"
    acl.write_text('default = "deny"\n[[rule]]\npermission = "allow"\ntopic = "ok/#"\n')
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth": {"acl_file": str(acl)}})
    port = b.port()
    for info, expect_reason in ((0, False), (1, True)):
        c, _ = _connect(raw, port, f"rpi{info}", props=Properties(request_problem_information=info))
        c.send_packet(Publish("no/x", b"x", 1, packet_id=1))
        ack = c.recv()
        assert ack.reason_code == 0x87
        assert (
            ack.properties is not None and ack.properties.reason_string is not None
        ) == expect_reason
        c.send_packet(Publish("no/x", b"x", 2, packet_id=2))
        rec = c.recv()
        assert rec.reason_code == 0x87
        assert (rec.properties is not None) == expect_reason
        c.send_packet(Subscribe(3, (("no/#", SubscribeOptions(1)),)))
        suback = c.recv()
        assert suback.reason_codes == (0x87,)
        assert (suback.properties is not None) == expect_reason
        c.send_packet(
            Publish(
                "ok/x", b"\xff", 1, packet_id=4, properties=Properties(payload_format_indicator=1)
            )
        )
        bad = c.recv()
        assert bad.reason_code == 0x99 and (bad.properties is not None) == expect_reason


def test_response_information(fluxmq_broker_factory, broker, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"response_information": "rsp/"}})
    _c, ack = _connect(raw, b.port(), "asks", props=Properties(request_response_information=1))
    assert ack.properties.response_information == "rsp/asks"
    _c, ack = _connect(raw, b.port(), "silent")
    assert ack.properties.response_information is None
    _c, ack = _connect(raw, broker.port(), "asks", props=Properties(request_response_information=1))
    assert ack.properties.response_information is None  # not configured: never returned


def test_retained_message_expiry(fluxmq_broker_factory, clients):
    clock = ManualClock()
    b = fluxmq_broker_factory(plugins=["mqtt"], clock=clock)
    port = b.port()
    pub = clients(port)
    pub.publish("rx/short", "s", 1, retain=True, props={"MessageExpiryInterval": 5})
    pub.publish("rx/long", "l", 1, retain=True, props={"MessageExpiryInterval": 100})
    clock.advance(3)
    s1 = clients(port)
    s1.subscribe("rx/#", 1)
    got = {m.topic: m for m in (s1.get(), s1.get())}
    assert got["rx/short"].retain and got["rx/short"].properties.MessageExpiryInterval == 2
    assert got["rx/long"].properties.MessageExpiryInterval == 97  # rewritten on send
    clock.advance(3)
    s2 = clients(port)
    s2.subscribe("rx/#", 1)
    m = s2.get()
    assert m.topic == "rx/long" and m.properties.MessageExpiryInterval == 94
    s2.nothing()  # the short one expired


def test_mqtt_3_1_client_with_paho_mqttv31(broker, clients, raw):
    port = broker.port()
    watcher = clients(port, version=3)
    watcher.subscribe("v31/#", 2)
    w = clients(port, "v31-will", version=3, will=("v31/will", "bye", 1, False))
    pub = clients(port, version=3)
    for qos in (0, 1, 2):
        pub.publish("v31/x", f"q{qos}", qos)
        m = watcher.get()
        assert (m.topic, m.payload, m.qos) == ("v31/x", f"q{qos}".encode(), qos)
    w.drop()
    assert watcher.get().payload == b"bye"
    # 3.1 limits client ids to 23 characters and has no empty ones: return code 2.
    for cid in ("x" * 24, ""):
        c = raw(port, version=3)
        c.send_packet(Connect(client_id=cid, protocol_level=3, protocol_name="MQIsdp"))
        ack = c.recv()
        assert ack.reason_code == 2
        assert c.closed()


def test_reason_strings_left_out_beyond_the_clients_maximum_packet_size(
    fluxmq_broker_factory, raw, tmp_path
):
    acl = tmp_path / "acl.toml"
    acl.write_text('default = "deny"\n')
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth": {"acl_file": str(acl)}})
    big, _ = _connect(raw, b.port(), "big")
    big.send_packet(Publish("no", b"x", 1, packet_id=1))
    assert big.recv().properties.reason_string == "not authorized"
    small, _ = _connect(raw, b.port(), "small", props=Properties(maximum_packet_size=16))
    small.send_packet(Publish("no", b"x", 1, packet_id=1))
    ack = small.recv()
    assert ack.reason_code == 0x87
    assert ack.properties is None or ack.properties.reason_string is None
    small.send_packet(Publish("t", b"x", 0, properties=Properties(topic_alias=999)))
    d = small.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x94
    assert d.properties is None or d.properties.reason_string is None
