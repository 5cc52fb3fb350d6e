"""The MQTT broker against paho-mqtt 2.x (3.1.1 and 5.0) over real sockets."""

from __future__ import annotations

import time

import pytest
from fluxmq_mqtt.codec import (
    Connect,
    Disconnect,
    Properties,
    Puback,
    Publish,
    Subscribe,
    SubscribeOptions,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PP
from paho.mqtt.reasoncodes import ReasonCode

from fluxmq_core.auth_file import set_password

WAIT = 5.0

V = [4, 5]


def wait_until(predicate, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.mark.parametrize("version", V)
def test_pubsub_all_qos_both_ways(broker, clients, version):
    port = broker.port()
    a = clients(port, version=version)
    b = clients(port, version=version)
    a.subscribe("x/#", 2)
    b.subscribe("y/+", 2)
    for qos in (0, 1, 2):
        b.publish("x/1", f"to-a{qos}", qos)
        a.publish("y/2", f"to-b{qos}", qos)
        ma, mb = a.get(), b.get()
        assert (ma.topic, ma.payload, ma.qos) == ("x/1", f"to-a{qos}".encode(), qos)
        assert (mb.topic, mb.payload, mb.qos) == ("y/2", f"to-b{qos}".encode(), qos)


@pytest.mark.parametrize("version", V)
def test_granted_qos_caps_delivery(broker, clients, version):
    port = broker.port()
    a = clients(port, version=version)
    a.subscribe("t", 1)
    clients(port, version=version).publish("t", "x", 2)
    assert a.get().qos == 1


@pytest.mark.parametrize("version", V)
def test_retained_set_clear_wildcard(broker, clients, version):
    port = broker.port()
    p = clients(port, version=version)
    p.publish("r/a", "A", 1, retain=True)
    p.publish("r/b/c", "C", 1, retain=True)
    s = clients(port, version=version)
    s.subscribe("r/#", 1)
    got = sorted((m.topic, m.payload, m.retain) for m in (s.get(), s.get()))
    assert got == [("r/a", b"A", True), ("r/b/c", b"C", True)]
    p.publish("r/a", "", 1, retain=True)  # clear; delivered live to s as empty
    assert s.get().payload == b""
    s2 = clients(port, version=version)
    s2.subscribe("r/+", 1)
    s2.nothing()
    # A live message to a subscriber is not flagged retained (3.1.1 and 5.0 without RAP).
    p.publish("r/a", "live", 0, retain=True)
    m = s2.get()
    assert m.payload == b"live" and not m.retain


@pytest.mark.parametrize("version", V)
def test_will_on_abrupt_close_not_after_disconnect(broker, clients, version, wait_connected):
    port = broker.port()
    w = clients(port, version=version)
    w.subscribe("will/#", 1)
    a = clients(port, version=version, will=("will/a", "gone", 1, False))
    a.drop()
    m = w.get()
    assert (m.topic, m.payload) == ("will/a", b"gone")
    b = clients(port, version=version, will=("will/b", "gone", 1, False))
    b.close()
    wait_connected(broker, 1)  # the broker handled b's DISCONNECT and close
    w.nothing()


def test_will_delay_and_cancel_on_reconnect(broker, clients, wait_connected):
    port = broker.port()
    w = clients(port)
    w.subscribe("will/#", 1)
    # delay 1 s, session lasts 60 s: the will waits, then goes out.
    a = clients(
        port,
        "delayed",
        connect_props={"SessionExpiryInterval": 60},
        will=("will/d", "late", 1, False),
        will_props={"WillDelayInterval": 1},
    )
    a.drop()
    wait_connected(broker, 1)  # the loss is handled: the will is scheduled, not sent
    w.nothing()
    assert w.get().topic == "will/d"
    # Reconnecting within the delay cancels it.
    b = clients(
        port,
        "cancel",
        connect_props={"SessionExpiryInterval": 60},
        will=("will/c", "never", 1, False),
        will_props={"WillDelayInterval": 2},
    )
    b.drop()
    wait_connected(broker, 1)
    clients(port, "cancel", clean=False, connect_props={"SessionExpiryInterval": 60})
    # A witness will with the same delay, scheduled later, is due after the
    # cancelled one: when it arrives, the cancelled one would have come first.
    witness = clients(
        port,
        "witness",
        connect_props={"SessionExpiryInterval": 60},
        will=("will/w", "witness", 1, False),
        will_props={"WillDelayInterval": 2},
    )
    witness.drop()
    assert w.get().topic == "will/w"
    # The session ends before the delay: the will goes out at the session end.
    c = clients(
        port,
        "short",
        connect_props={"SessionExpiryInterval": 0},
        will=("will/s", "now", 1, False),
        will_props={"WillDelayInterval": 30},
    )
    c.drop()
    assert w.get().topic == "will/s"


def test_disconnect_with_will_message_0x04(broker, clients):
    port = broker.port()
    w = clients(port)
    w.subscribe("will/#", 1)
    a = clients(port, will=("will/x", "x", 0, False))
    a.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    assert w.get().topic == "will/x"
    a.client.loop_stop()


@pytest.mark.parametrize("version", V)
def test_offline_queue_and_resume(broker, clients, version):
    port = broker.port()
    props = {"SessionExpiryInterval": 300} if version == 5 else None
    s = clients(port, "persist", version, clean=False, connect_props=props)
    s.subscribe("q/#", 1)
    s.close()
    p = clients(port, version=version)
    p.publish("q/1", "one", 1)
    p.publish("q/2", "two", 2)
    p.publish("q/0", "zero", 0)  # QoS 0 is not queued for offline sessions
    p.sync()  # handled (and dropped) before the session comes back
    s2 = clients(port, "persist", version, clean=False, connect_props=props, connect=False)
    flags, _rc, _props = s2.connect()
    assert flags.session_present
    got = [(m.topic, m.payload) for m in (s2.get(), s2.get())]
    assert got == [("q/1", b"one"), ("q/2", b"two")]
    s2.nothing()


@pytest.mark.parametrize("version", V)
def test_clean_start_discards_session(broker, clients, version):
    port = broker.port()
    props = {"SessionExpiryInterval": 300} if version == 5 else None
    s = clients(port, "c1", version, clean=False, connect_props=props)
    s.subscribe("q/#", 1)
    s.close()
    s2 = clients(port, "c1", version, clean=True, connect=False)
    flags, _rc, _p = s2.connect()
    assert not flags.session_present
    clients(port, version=version).publish("q/1", "x", 1)
    s2.nothing()


def test_session_expiry_zero_vs_positive(broker, clients):
    port = broker.port()
    a = clients(port, "e0", connect_props={"SessionExpiryInterval": 0})
    a.subscribe("e/#", 1)
    a.close()
    b = clients(port, "e0", clean=False, connect=False)
    assert not b.connect()[0].session_present
    b.close()
    c = clients(port, "e5", connect_props={"SessionExpiryInterval": 1})
    c.subscribe("e/#", 1)
    c.close()
    d = clients(port, "e5", clean=False, connect_props={"SessionExpiryInterval": 1}, connect=False)
    assert d.connect()[0].session_present
    d.close()
    time.sleep(1.5)  # the session outlives the connection by 1 s only
    e = clients(port, "e5", clean=False, connect=False)
    assert not e.connect()[0].session_present


def test_disconnect_updates_session_expiry(broker, clients):
    port = broker.port()
    a = clients(port, "upd", connect_props={"SessionExpiryInterval": 60})
    a.subscribe("u", 1)
    props = PP(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    a.client.disconnect(properties=props)
    a.client.loop_stop()
    b = clients(port, "upd", clean=False, connect=False)
    assert not b.connect()[0].session_present


def test_disconnect_expiry_after_zero_is_protocol_error(broker, raw):
    c = raw(broker.port())
    c.send_packet(Connect(client_id="z", properties=None, protocol_level=5))
    assert c.recv().reason_code == 0
    c.send_packet(Disconnect(0, Properties(session_expiry_interval=10)))
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x82
    assert c.closed()


@pytest.mark.parametrize("version", V)
def test_takeover(broker, clients, version):
    port = broker.port()
    a = clients(port, "same", version)
    clients(port, "same", version)
    rc = a.disconnects.get(timeout=WAIT)
    if version == 5:
        assert rc.value == 0x8E
    a.client.loop_stop()


def test_zero_length_client_id(broker, clients, raw):
    port = broker.port()
    a = clients(port, "", 5, connect=False)
    _f, _rc, props = a.connect()
    assert props.AssignedClientIdentifier.startswith("auto-")
    c = raw(port)
    c.send_packet(Connect(client_id="", protocol_level=5))
    ack = c.recv()
    assert ack.reason_code == 0 and ack.properties.assigned_client_identifier
    c3 = raw(port, version=4)
    c3.send_packet(Connect(client_id="", clean_start=False, protocol_level=4))
    assert c3.recv().reason_code == 2
    assert c3.closed()
    c4 = raw(port, version=4)
    c4.send_packet(Connect(client_id="", clean_start=True, protocol_level=4))
    assert c4.recv().reason_code == 0


def test_overlapping_subscriptions_one_copy(broker, clients):
    port = broker.port()
    s = clients(port)
    for i, (f, q) in enumerate([("o/#", 0), ("o/+", 2), ("o/a", 1)], start=1):
        pp = PP(PacketTypes.SUBSCRIBE)
        pp.SubscriptionIdentifier = i
        s.subscribe(f, q, properties=pp)
    clients(port).publish("o/a", "x", 2)
    m = s.get()
    assert m.qos == 2
    assert sorted(m.properties.SubscriptionIdentifier) == [1, 2, 3]
    s.nothing()


def test_no_local_and_retain_as_published(broker, clients):
    port = broker.port()
    s = clients(port)
    s.subscribe("nl", 1, noLocal=True)
    s.subscribe("rap", 1, retainAsPublished=True)
    s.publish("nl", "mine", 1)
    s.nothing()
    other = clients(port)
    other.subscribe("rap", 1)
    s.publish("rap", "r", 1, retain=True)
    assert s.get().retain is True
    assert other.get().retain is False


def test_retain_handling(broker, clients):
    port = broker.port()
    clients(port).publish("rh/t", "kept", 1, retain=True)
    s = clients(port)
    s.subscribe("rh/#", 1, retainHandling=0)
    assert s.get().payload == b"kept"
    s.subscribe("rh/#", 1, retainHandling=0)  # resubscribe: sent again
    assert s.get().payload == b"kept"
    s1 = clients(port)
    s1.subscribe("rh/#", 1, retainHandling=1)
    assert s1.get().payload == b"kept"
    s1.subscribe("rh/#", 1, retainHandling=1)  # existing subscription: not sent
    s1.nothing()
    s2 = clients(port)
    s2.subscribe("rh/#", 1, retainHandling=2)
    s2.nothing()


def test_shared_subscriptions_round_robin(broker, clients):
    port = broker.port()
    members = [clients(port) for _ in range(3)]
    for m in members:
        m.subscribe("$share/g/jobs/#", 1)
    p = clients(port)
    for i in range(9):
        p.publish("jobs/x", str(i), 1)
    counts = []
    for m in members:
        n = 0
        for _ in range(3):
            m.get()
            n += 1
        counts.append(n)
        m.nothing()
    assert counts == [3, 3, 3]


def test_message_expiry(broker, clients):
    port = broker.port()
    s = clients(port, "exp", clean=False, connect_props={"SessionExpiryInterval": 60})
    s.subscribe("ex/#", 1)
    s.close()
    p = clients(port)
    p.publish("ex/short", "gone", 1, props={"MessageExpiryInterval": 1})
    p.publish("ex/long", "kept", 1, props={"MessageExpiryInterval": 100})
    time.sleep(1.3)
    s2 = clients(port, "exp", clean=False, connect_props={"SessionExpiryInterval": 60})
    m = s2.get()
    assert m.payload == b"kept"
    assert 0 < m.properties.MessageExpiryInterval <= 99
    s2.nothing()


def test_properties_passthrough(broker, clients):
    port = broker.port()
    s = clients(port)
    s.subscribe("pp", 1)
    clients(port).publish(
        "pp",
        "{}",
        1,
        props={
            "UserProperty": [("a", "1"), ("b", "2")],
            "ContentType": "application/json",
            "CorrelationData": b"\x01\x02",
            "ResponseTopic": "reply/here",
            "PayloadFormatIndicator": 1,
        },
    )
    m = s.get()
    p = m.properties
    assert p.UserProperty == [("a", "1"), ("b", "2")]
    assert p.ContentType == "application/json"
    assert p.CorrelationData == b"\x01\x02"
    assert p.ResponseTopic == "reply/here"
    assert p.PayloadFormatIndicator == 1


def test_topic_alias_inbound(broker, clients, raw):
    port = broker.port()
    s = clients(port)
    s.subscribe("alias/t", 0)
    c = raw(port)
    c.send_packet(Connect(client_id="al", protocol_level=5))
    assert c.recv().reason_code == 0
    c.send_packet(Publish("alias/t", b"1", properties=Properties(topic_alias=3)))
    c.send_packet(Publish("", b"2", properties=Properties(topic_alias=3)))
    assert [s.get().payload, s.get().payload] == [b"1", b"2"]
    c.send_packet(Publish("", b"3", properties=Properties(topic_alias=4)))  # unknown
    d = c.recv()
    assert d.reason_code == 0x82
    assert c.closed()


def test_topic_alias_outbound(broker, clients, raw):
    port = broker.port()
    c = raw(port)
    c.send_packet(
        Connect(client_id="ao", protocol_level=5, properties=Properties(topic_alias_maximum=2))
    )
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("ta/#", SubscribeOptions(0)),)))
    c.recv()
    p = clients(port)
    for _ in range(2):
        p.publish("ta/x", "x", 0)
    first, second = c.recv(), c.recv()
    assert first.topic == "ta/x" and first.properties.topic_alias == 1
    assert second.topic == "" and second.properties.topic_alias == 1


def test_maximum_packet_size_of_client(broker, clients):
    port = broker.port()
    s = clients(port, connect_props={"MaximumPacketSize": 100})
    s.subscribe("mp", 1)
    p = clients(port)
    p.publish("mp", b"x" * 500, 1)
    p.publish("mp", b"small", 1)
    assert s.get().payload == b"small"
    s.nothing()


def test_receive_maximum_window(broker, clients, raw):
    port = broker.port()
    c = raw(port)
    c.send_packet(
        Connect(client_id="rm", protocol_level=5, properties=Properties(receive_maximum=2))
    )
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("rm", SubscribeOptions(1)),)))
    c.recv()
    p = clients(port)
    for i in range(5):
        p.publish("rm", str(i), 1)
    got = [c.recv(), c.recv()]
    c.nothing()  # the window is full: nothing more until an ack (all 5 were acked)
    for m in got:
        c.send_packet(Puback(m.packet_id))
    got += [c.recv(), c.recv()]
    c.send_packet(Puback(got[2].packet_id))
    got.append(c.recv())
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]


def test_keepalive_timeout_publishes_will(broker, clients, raw):
    port = broker.port()
    w = clients(port)
    w.subscribe("ka", 0)
    c = raw(port)
    c.send_packet(
        Connect(
            client_id="ka", keepalive=1, protocol_level=5, will_topic="ka", will_payload=b"timeout"
        )
    )
    assert c.recv().reason_code == 0
    d = c.recv(timeout=WAIT)  # no PINGREQ: after 1.5 s the broker gives up
    assert d.reason_code == 0x8D
    assert w.get().payload == b"timeout"


def _auth_files(tmp_path):
    pw = tmp_path / "passwd"
    set_password(pw, "alice", "secret")
    set_password(pw, "bob", "hunter2")
    acl = tmp_path / "acl.toml"
    acl.write_text(
        'default = "deny"\n'
        '[[rule]]\npermission = "allow"\ntopic = "open/#"\n'
        '[[rule]]\npermission = "allow"\ntopic = "alice/#"\nusers = ["alice"]\n'
    )
    return {"auth": {"password_file": str(pw), "acl_file": str(acl), "anonymous": False}}


def test_password_file(fluxmq_broker_factory, clients, tmp_path):
    b = fluxmq_broker_factory(plugins=["mqtt"], config=_auth_files(tmp_path))
    port = b.port()
    clients(port, username="alice", password="secret")
    bad = clients(port, username="alice", password="nope", connect=False)
    _f, rc, _p = bad.connect(expect_ok=False)
    assert rc.value == 0x86
    anon = clients(port, version=4, connect=False)
    _f, rc, _p = anon.connect(expect_ok=False)
    assert rc.is_failure


def test_acl_v5_and_v311(fluxmq_broker_factory, clients, tmp_path):
    b = fluxmq_broker_factory(plugins=["mqtt"], config=_auth_files(tmp_path))
    port = b.port()
    alice = clients(port, username="alice", password="secret")
    bob = clients(port, username="bob", password="hunter2")
    assert alice.subscribe("alice/#", 1)[0].value == 1
    assert bob.subscribe("alice/#", 1)[0].value == 0x87
    bob3 = clients(port, version=4, username="bob", password="hunter2")
    assert [rc.value for rc in bob3.subscribe("alice/#", 1)] == [0x80]
    bob.publish("alice/x", "denied", 1)
    mid_rc = bob.pubacks.get(timeout=WAIT)
    assert mid_rc[1].value == 0x87
    alice.nothing(topic="alice/marker")  # her ACL refuses the private marker topic
    bob3.publish("alice/x", "dropped", 1)  # 3.1.1: acked, silently dropped
    alice.nothing()
    bob.publish("open/x", "ok", 1)
    alice.subscribe("open/#", 1)
    bob.publish("open/y", "ok", 1)
    assert alice.get().topic == "open/y"
