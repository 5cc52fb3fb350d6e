"""fluxmq_client against our broker (in-process, real sockets) and Mosquitto."""

from __future__ import annotations

import asyncio
import socket

import pytest
from fluxmq_client import (
    MQTT_3_1_1,
    Client,
    ConnectError,
    ConnectionLost,
    InvalidTopic,
    InvalidURL,
    Properties,
    client_from_options,
    parse_url,
)

from fluxmq_core.testing.tls import make_test_certs


@pytest.mark.parametrize("version", [5, MQTT_3_1_1])
async def test_qos_0_1_2_round_trip(broker, version):
    async with Client("127.0.0.1", broker.port(), version=version) as c:
        sub = await c.subscribe("t/#", qos=2)
        for qos in (0, 1, 2):
            assert await c.publish("t/x", f"m{qos}", qos=qos) == 0
            m = await sub.get(5)
            assert (m.topic, m.payload, m.qos) == ("t/x", f"m{qos}".encode(), qos)


async def test_typed_properties_and_request_response(broker):
    async with (
        Client("127.0.0.1", broker.port()) as server,
        Client("127.0.0.1", broker.port()) as caller,
    ):
        requests = await server.subscribe("svc/echo", qos=1)

        async def serve() -> None:
            req = await requests.get(5)
            assert req.properties is not None and req.properties.response_topic
            await server.respond(req, req.payload.upper())

        task = asyncio.create_task(serve())
        reply = await caller.request("svc/echo", "ping", timeout=5)
        await task
        assert reply.payload == b"PING"
        sub = await caller.subscribe("p/x", qos=1)
        props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
        await caller.publish("p/x", "y", qos=1, properties=props)
        m = await sub.get(5)
        assert m.properties.content_type == "text/plain"
        assert m.user_properties == {"k": "v"}


async def test_queue_publish_consume_ack_nack_reject(broker):
    async with Client("127.0.0.1", broker.port()) as c:
        consumer = c.consume("jobs", group="workers")
        first = asyncio.ensure_future(consumer.__anext__())
        await asyncio.sleep(0)  # subscribe goes out before the publish
        for body in ("a", "b"):
            await c.publish_to_queue("jobs", body, key="eu")
        m = await asyncio.wait_for(first, 5)
        assert (m.message_id, m.offset, m.delivery_count, m.group) == ("jobs:0", 0, 1, "workers")
        assert m.routing_key == "eu"
        await m.nack(delay=0)
        seen = {}
        while len(seen) < 2:
            nxt = await asyncio.wait_for(consumer.__anext__(), 5)
            seen[nxt.offset] = nxt
            if nxt.offset == 1:
                await nxt.reject("bad")
            else:
                await nxt.ack()
        assert seen[0].delivery_count == 2
        await consumer.aclose()
    async with Client("127.0.0.1", broker.port()) as c:
        sub = await c.subscribe("$dlq/jobs/#", qos=1)
        dead = await sub.get(5)
        assert dead.payload == b"b"
        assert dead.user_properties.get("_dlq_reason") == "rejected"
        assert dead.user_properties.get("_dlq_original_id") == "jobs:1"


async def test_reconnect_after_restart_without_qos1_loss(mqtt_broker_factory):
    """The broker goes down; a QoS 1 publish made meanwhile stays in flight and is
    delivered after both clients reconnected (the subscription is re-made: the memory
    store keeps no session across a restart, so the message is retained to not depend
    on which client is back first)."""
    broker = mqtt_broker_factory()
    port = broker.port()
    async with (
        Client("127.0.0.1", port, client_id="resumer", reconnect_delay=0.05) as c,
        Client("127.0.0.1", port, client_id="pub", reconnect_delay=0.05) as p,
    ):
        sub = await c.subscribe("r/#", qos=1)
        await p.publish("r/1", "before", qos=1)
        assert (await sub.get(5)).payload == b"before"
        await asyncio.to_thread(broker.stop)
        sending = asyncio.create_task(p.publish("r/2", "after", qos=1, retain=True))
        await asyncio.to_thread(broker.start)
        assert await asyncio.wait_for(sending, 20) in (0x00, 0x10)  # 0x10: no subscriber yet
        got = await sub.get(20)
        assert got.payload == b"after"
        assert c.reconnects >= 1 and p.reconnects >= 1 and p.in_flight == 0


async def test_session_resume_across_restart(mqtt_broker_factory):
    """With the durable store the broker keeps the session: messages published while
    the subscriber was away arrive after its reconnect, with session present."""
    pytest.importorskip("fluxmq_badgerlike", reason="the durable store is not installed")
    broker = mqtt_broker_factory(config={"storage": {"driver": "badgerlike"}})
    port = broker.port()
    async with Client(
        "127.0.0.1", port, client_id="durable", session_expiry=3600, reconnect_delay=0.05
    ) as c:
        sub = await c.subscribe("d/#", qos=1)
        await asyncio.to_thread(broker.restart)
        async with Client("127.0.0.1", port) as p:
            await p.publish("d/1", "kept", qos=1)
        assert (await sub.get(20)).payload == b"kept"
        assert c.session_present


async def test_tls_and_websocket(mqtt_broker_factory, tmp_path):
    certs = make_test_certs(tmp_path)
    broker = mqtt_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": {
                "tls_cert": certs["server.pem"],
                "tls_key": certs["server.key"],
                "tls": "127.0.0.1:0",
                "websocket": "127.0.0.1:0",
                "wss": "127.0.0.1:0",
            }
        },
    )
    urls = [
        f"mqtts://127.0.0.1:{broker.port('mqtt.tls')}",
        f"ws://127.0.0.1:{broker.port('mqtt.websocket')}/mqtt",
        f"wss://127.0.0.1:{broker.port('mqtt.wss')}/mqtt",
    ]
    for url in urls:
        c = client_from_options(url, cafile=certs["ca.pem"])
        async with c:
            sub = await c.subscribe("s/x", qos=1)
            await c.publish("s/x", url, qos=1)
            assert (await sub.get(5)).payload == url.encode()
    bad = client_from_options(urls[0])  # the system CAs do not know our test CA
    with pytest.raises(ConnectError, match="TLS failure"):
        await bad.connect()


async def test_bad_input_names_the_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError, match="connection refused"):
        await Client("127.0.0.1", port, reconnect=False).connect()
    with pytest.raises(InvalidURL, match="scheme"):
        parse_url("http://x")
    with pytest.raises(InvalidURL, match="bad broker URL"):
        parse_url("mqtt://host:notaport")


async def test_not_authorized_has_the_reason_code(mqtt_broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("")
    broker = mqtt_broker_factory(
        plugins=["mqtt"], config={"auth": {"anonymous": False, "password_file": str(pw)}}
    )
    with pytest.raises(ConnectError) as info:
        await Client("127.0.0.1", broker.port(), username="x", password="y").connect()
    assert info.value.reason_code in (0x86, 0x87)
    assert "refused" in str(info.value)


@pytest.mark.parametrize("version", [5, MQTT_3_1_1])
async def test_against_mosquitto(mosquitto, version):
    async with Client("127.0.0.1", mosquitto, version=version) as c:
        sub = await c.subscribe("m/#", qos=2)
        for qos in (0, 1, 2):
            await c.publish("m/x", f"q{qos}", qos=qos, retain=qos == 2)
            assert (await sub.get(5)).payload == f"q{qos}".encode()
        if version == 5:
            reply = asyncio.create_task(c.request("m/req", "hi", timeout=5))
            req = await sub.get(5)
            await c.respond(req, "ho")
            assert (await reply).payload == b"ho"


async def test_scram_sha_256_enhanced_auth(mqtt_broker_factory, tmp_path):
    from fluxmq_core.passwords import set_password

    pw = tmp_path / "passwd"
    set_password(pw, "carol", "s3cret", scheme="scram-sha-256")
    broker = mqtt_broker_factory(config={"auth": {"password_file": str(pw)}})
    async with Client(
        "127.0.0.1", broker.port(), username="carol", password="s3cret", scram=True
    ) as c:
        sub = await c.subscribe("a/b", qos=1)
        await c.publish("a/b", "in", qos=1)
        assert (await sub.get(5)).payload == b"in"
        assert c.connack.properties.authentication_method == "SCRAM-SHA-256"
    with pytest.raises(ConnectError) as info:
        await Client(
            "127.0.0.1", broker.port(), username="carol", password="nope", scram=True
        ).connect()
    assert info.value.not_authorized


async def test_will_is_published_when_the_connection_breaks(broker):
    from fluxmq_client import Will

    async with Client("127.0.0.1", broker.port()) as watcher:
        sub = await watcher.subscribe("wills/#", qos=1)
        dying = Client(
            "127.0.0.1", broker.port(), reconnect=False, will=Will("wills/x", b"gone", 1)
        )
        await dying.connect()
        dying._stream._writer.transport.abort()  # no DISCONNECT: the broker sends the will
        m = await sub.get(10)
        assert (m.topic, m.payload) == ("wills/x", b"gone")
        await dying.close()


async def test_in_flight_survives_while_disconnected(broker):
    """A QoS 1 publish made while the connection is down is sent once it is back."""
    async with (
        Client("127.0.0.1", broker.port()) as watcher,
        Client("127.0.0.1", broker.port(), reconnect_delay=0.05) as c,
    ):
        sub = await watcher.subscribe("f/#", qos=1)
        c._stream._writer.transport.abort()
        await asyncio.wait_for(c.publish("f/1", "x", qos=1), 10)
        assert (await sub.get(5)).payload == b"x"
        assert c.reconnects >= 1


async def test_receive_maximum_bounds_what_is_in_flight(mqtt_broker_factory):
    """With [mqtt] receive_maximum = 2, 20 concurrent QoS 1 publishes all succeed and
    never more than 2 are unacknowledged at once (the broker would DISCONNECT 0x93)."""
    broker = mqtt_broker_factory(config={"mqtt": {"receive_maximum": 2}})
    async with Client("127.0.0.1", broker.port(), reconnect=False) as c:
        assert c.receive_maximum == 2
        peak = 0
        original = c._write

        async def watching(packet):
            nonlocal peak
            peak = max(peak, c.in_flight)
            await original(packet)

        c._write = watching
        results = await asyncio.gather(*(c.publish("rm/x", str(i), qos=1) for i in range(20)))
        assert results == [0x10] * 20 and peak == 2


async def test_session_taken_over_is_final(broker):
    first = Client("127.0.0.1", broker.port(), client_id="same", reconnect_delay=0.05)
    await first.connect()
    sub = await first.subscribe("x/#", qos=1)
    async with Client("127.0.0.1", broker.port(), client_id="same"):
        with pytest.raises(ConnectionLost, match="SESSION_TAKEN_OVER"):
            await sub.get(10)
        assert first.reconnects == 0
    await first.close()


async def test_bad_topics_are_refused_before_sending(broker):
    async with Client("127.0.0.1", broker.port()) as c:
        with pytest.raises(InvalidTopic):
            await c.publish("a/#", "x")
        with pytest.raises(InvalidTopic):
            await c.subscribe("a/#/b")
        assert (await c.publish("still/connected", "x", qos=1)) == 0x10


async def test_a_silent_broker_is_detected_by_keepalive():
    """A peer that answers CONNECT but never PINGREQ: the client closes and reconnects."""
    from fluxmq_core.mqtt_codec import Connack, Decoder, encode

    connections = asyncio.Queue()

    async def handle(reader, writer):
        decoder = Decoder(role="server")
        await connections.put(writer)
        while data := await reader.read(4096):
            for packet in decoder.packets(data):
                if type(packet).__name__ == "Connect":
                    writer.write(encode(Connack(), 5))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        c = Client("127.0.0.1", port, keepalive=1, reconnect_delay=0.05)
        await c.connect()
        await asyncio.wait_for(connections.get(), 5)
        await asyncio.wait_for(connections.get(), 15)  # the second connection
        await c.close()


async def test_stream_cursor_and_commit(mqtt_broker_factory):
    broker = mqtt_broker_factory(config={"queues": {"events": {"type": "stream"}}})
    async with Client("127.0.0.1", broker.port()) as c:
        for i in range(4):
            await c.publish_to_queue("events", f"e{i}")
        seen = []

        async def replay() -> None:
            async for m in c.consume("events", group="replay", cursor="offset:2"):
                seen.append((m.offset, m.payload))
                await m.ack()
                if m.offset == 3:
                    await m.commit()
                    return

        await asyncio.wait_for(replay(), 10)
        assert seen == [(2, b"e2"), (3, b"e3")]


async def test_queue_settlement_over_3_1_1(broker):
    """A 3.1.1 delivery carries no message id (no user properties): its PUBACK settles
    it, and nack()/reject() say they cannot work rather than send a control publish
    the broker refuses silently (3.1.1 has no negative PUBACK), after which the
    client's PUBACK would have acknowledged the message instead."""
    port = broker.port()
    async with Client("127.0.0.1", port, version=MQTT_3_1_1, client_id="w311") as c:
        consumer = c.consume("jobs311")
        first = asyncio.ensure_future(consumer.__anext__())
        for body in ("a", "b"):
            assert await c.publish_to_queue("jobs311", body) == 0
        m = await asyncio.wait_for(first, 10)
        assert (m.payload, m.message_id, m.offset, m.delivery_count) == (b"a", "", None, None)
        await m.ack()
        m = await asyncio.wait_for(consumer.__anext__(), 10)
        assert m.payload == b"b"
        with pytest.raises(NotImplementedError, match="MQTT 5"):
            await m.nack()
        with pytest.raises(NotImplementedError, match="MQTT 5"):
            await m.reject("bad")
        await consumer.aclose()  # leaves the group with "b" unacknowledged
    # The group (the client id) gets "b" again, and "c" after it: "a" was settled by
    # its PUBACK, or it would come back first.
    async with Client("127.0.0.1", port, version=MQTT_3_1_1, client_id="w311") as c:
        await c.publish_to_queue("jobs311", "c")
        seen = []
        async with asyncio.timeout(20):
            async for m in c.consume("jobs311"):
                seen.append(m.payload)
                await m.ack()
                if m.payload == b"c":
                    break
        assert seen == [b"b", b"c"]


def record_publishes(monkeypatch) -> list[tuple[str, int | None]]:
    """(topic, topic alias) of every PUBLISH the clients of this test encode."""
    import fluxmq_client.client as module

    from fluxmq_core.mqtt_codec import Publish

    sent: list[tuple[str, int | None]] = []
    original = module.encode

    def spy(packet, version):
        if isinstance(packet, Publish):
            props = packet.properties
            sent.append((packet.topic, props.topic_alias if props else None))
        return original(packet, version)

    monkeypatch.setattr(module, "encode", spy)
    return sent


async def wait_for(condition, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_topic_aliases_on_send(mqtt_broker_factory, monkeypatch):
    """Aliases up to the broker's Topic Alias Maximum (2 here), reused, the least
    recently used replaced when all are taken, and a fresh table after a reconnect;
    the subscriber sees every message under its full topic."""
    broker = mqtt_broker_factory(config={"mqtt": {"topic_alias_maximum": 2}})
    port = broker.port()
    async with (
        Client("127.0.0.1", port) as watcher,
        Client("127.0.0.1", port, reconnect_delay=0.05) as c,
    ):
        sub = await watcher.subscribe("al/#", qos=1)
        assert c.topic_alias_maximum == 2
        sent = record_publishes(monkeypatch)
        topics = ["al/a", "al/b", "al/a", "al/c", "al/b", "al/a"]
        for topic in topics:
            assert await c.publish(topic, topic, qos=1) == 0
        assert [(m.topic, m.payload) for m in [await sub.get(10) for _ in topics]] == [
            (t, t.encode()) for t in topics
        ]
        assert sent == [
            ("al/a", 1),
            ("al/b", 2),
            ("", 1),  # al/a again: the alias alone
            ("al/c", 2),  # replaces al/b, the least recently used
            ("al/b", 1),  # replaces al/a
            ("al/a", 2),  # replaces al/c
        ]
        sent.clear()
        c._stream._writer.transport.abort()
        await wait_for(lambda: c.reconnects >= 1 and c.connected)
        for _ in range(2):
            await c.publish("al/b", "again", qos=1)
        assert [(await sub.get(10)).topic for _ in range(2)] == ["al/b", "al/b"]
        assert sent == [("al/b", 1), ("", 1)]  # the new connection's table starts empty
    async with Client("127.0.0.1", port, topic_aliases=False) as plain:
        assert plain.topic_alias_maximum == 0
    async with Client("127.0.0.1", port, version=MQTT_3_1_1) as old:
        assert old.topic_alias_maximum == 0


async def test_topic_aliases_from_the_broker_are_resolved(broker):
    """With a Topic Alias Maximum in CONNECT the broker may send aliases; the client
    gives every message its full topic."""
    props = Properties(topic_alias_maximum=4)
    async with (
        Client("127.0.0.1", broker.port(), properties=props) as c,
        Client("127.0.0.1", broker.port()) as p,
    ):
        sub = await c.subscribe("in/#", qos=1)
        for i in range(3):
            await p.publish("in/x", str(i), qos=1)
        got = [await sub.get(10) for _ in range(3)]
        assert [(m.topic, m.payload) for m in got] == [("in/x", str(i).encode()) for i in range(3)]
        assert got[1].properties.topic_alias == got[0].properties.topic_alias is not None


async def test_topic_aliases_against_mosquitto(mosquitto, monkeypatch):
    async with Client("127.0.0.1", mosquitto) as c:
        assert c.topic_alias_maximum > 0  # Mosquitto advertises 10 by default
        sub = await c.subscribe("mal/#", qos=1)
        sent = record_publishes(monkeypatch)
        for i in range(3):
            await c.publish("mal/x", str(i), qos=1)
        got = [await sub.get(10) for _ in range(3)]
        assert [(m.topic, m.payload) for m in got] == [("mal/x", str(i).encode()) for i in range(3)]
        assert sent == [("mal/x", 1), ("", 1), ("", 1)]


async def test_a_resumed_sessions_messages_wait_for_the_subscription(broker):
    """Messages queued for a session arrive with (or right after) the CONNACK, before
    the application subscribes again: the first matching subscribe() gets them."""
    port = broker.port()
    async with Client("127.0.0.1", port, client_id="away", session_expiry=600) as c:
        await c.subscribe("away/#", qos=1)
    async with Client("127.0.0.1", port) as p:
        for i in range(3):
            await p.publish("away/x", str(i), qos=1)
    async with Client(
        "127.0.0.1", port, client_id="away", clean_start=False, session_expiry=600
    ) as c:
        assert c.session_present
        await wait_for(lambda: len(c._unclaimed) == 3)
        sub = await c.subscribe("away/#", qos=1)
        assert [(await sub.get(10)).payload for _ in range(3)] == [b"0", b"1", b"2"]
        assert not c._unclaimed


async def test_from_url_keeps_the_urls_credentials_unless_overridden(mqtt_broker_factory, tmp_path):
    """``username=None``/``password=None`` (what an option parser passes when a flag
    was not given) must not drop the URL's credentials; a real value still wins."""
    from fluxmq_core.passwords import set_password

    pw = tmp_path / "passwd"
    set_password(pw, "dave", "p@ss word")
    broker = mqtt_broker_factory(config={"auth": {"anonymous": False, "password_file": str(pw)}})
    url = f"mqtt://dave:p%40ss%20word@127.0.0.1:{broker.port()}"
    c = Client.from_url(url, username=None, password=None, ws_path=None, reconnect=False)
    assert (c.username, c.password, c.ws_path) == ("dave", b"p@ss word", "/mqtt")
    async with c:
        assert c.connected
    wrong = Client.from_url(url, password="not-it", reconnect=False)
    assert wrong.username == "dave" and wrong.password == b"not-it"
    with pytest.raises(ConnectError) as info:
        await wrong.connect()
    assert info.value.not_authorized


async def test_nack_with_a_delay_holds_the_message_back(broker):
    """nack(delay=60): the next delivery is a message published after the nack, not
    the nacked one (which an immediate nack would redeliver first)."""
    async with Client("127.0.0.1", broker.port()) as c:
        consumer = c.consume("later", group="g")
        first = asyncio.ensure_future(consumer.__anext__())
        await asyncio.sleep(0)  # subscribe goes out before the publish
        await c.publish_to_queue("later", "held")
        m = await asyncio.wait_for(first, 5)
        assert m.payload == b"held"
        await m.nack(delay=60)
        await c.publish_to_queue("later", "marker")
        nxt = await asyncio.wait_for(consumer.__anext__(), 5)
        assert (nxt.payload, nxt.offset) == (b"marker", 1)
        await nxt.ack()
        await consumer.aclose()
