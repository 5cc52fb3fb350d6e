"""Observe with shared subscriptions and the ACL: ``$share/<group>/<filter>``
observers (several CoAP observers, an MQTT subscriber when the MQTT plugin is
installed, a core subscriber) share each message, one member each and no retained
messages; every notification is checked against the observer's read rights, and a
reload of the ACL stops what it no longer allows (the topic's notifications, or the
whole observation with a final 4.03)."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, Collector, broker_plugins, coap_url, until

from fluxmq_core.auth_file import set_password
from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread


def publish(broker: Any, topic: str, payload: bytes, **kw: Any) -> None:
    broker.call_soon(broker.context.publish, Message(topic, payload, **kw))


class Observation:
    """Every notification of one aiocoap observation (its async iterator keeps
    only the latest state); an ending error is queued too."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            request.observation.register_callback(self.queue.put_nowait)
            request.observation.register_errback(self.queue.put_nowait)

    async def next(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    def cancel(self) -> None:
        self.request.observation.cancel()


async def observe(ctx: aiocoap.Context, broker: Any, path: str) -> tuple[Observation, Any]:
    request = ctx.request(aiocoap.Message(code=Code.GET, uri=coap_url(broker, path), observe=0))
    obs = Observation(request)
    return obs, await asyncio.wait_for(request.response, WAIT)


def coap_observers(broker: Any) -> int:
    return len(broker.context.extras["coap"].observers)


# --- $share ------------------------------------------------------------------------------


class _Paho:
    """An MQTT 5 subscriber (paho, its own thread) recording payloads."""

    def __init__(self, broker: Any, client_id: str, topic_filter: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: list[bytes] = []
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.on_message = lambda _c, _u, m: self.got.append(m.payload)
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect("127.0.0.1", broker.port("mqtt.tcp"))
        c.loop_start()
        c.subscribe(topic_filter, 0)
        assert subscribed.wait(WAIT), "no SUBACK"
        self.client = c

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def share_broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=broker_plugins()) as b:
        yield b


@pytest.mark.parametrize("with_mqtt", [False, True], ids=["core", "mqtt"])
async def test_share_group_of_coap_observers_and_another_protocol(share_broker, with_mqtt):
    b = share_broker
    group = f"g-{with_mqtt}"
    topic = f"sh{int(with_mqtt)}"
    publish(b, f"{topic}/r", b"retained", retain=True)  # before any member exists
    other: Any
    if with_mqtt:
        pytest.importorskip("paho.mqtt.client")
        if "mqtt.tcp" not in b.context.bound:
            pytest.skip("the fluxmq-mqtt plugin is not installed")
        other = _Paho(b, f"share-mqtt-{topic}", f"$share/{group}/{topic}/#")
        other_got: Any = lambda: other.got  # noqa: E731
    else:
        other = Collector(f"share-core-{topic}")
        b.call_soon(b.context.router.subscribe, other, f"$share/{group}/{topic}/#")
        other_got = lambda: [m.payload for m in other.messages]  # noqa: E731
    contexts = [await aiocoap.Context.create_client_context(transports=["udp6"]) for _ in range(2)]
    try:
        members = []
        for ctx in contexts:
            obs, first = await observe(ctx, b, f"/ps/$share/{group}/{topic}/%23")
            assert first.code == Code.CONTENT
            assert first.payload == b"", "a shared observation gets no retained message"
            members.append(obs)
        coap_got: list[list[bytes]] = [[], []]

        async def drain(i: int) -> None:
            while True:
                n = await members[i].queue.get()
                coap_got[i].append(n.payload)

        tasks = [asyncio.create_task(drain(i)) for i in range(2)]
        try:
            sent = [f"m{i}".encode() for i in range(12)]
            for p in sent:
                publish(b, f"{topic}/{p.decode()}", p)

            def everything(expected: list[bytes]) -> bool:
                seen = coap_got[0] + coap_got[1] + other_got()
                return set(expected) <= set(seen)

            assert await until(lambda: everything(sent)), (coap_got, other_got())
            # Three more: once they arrived, any duplicate of the first twelve (sent
            # to a member before these) would have arrived too.
            tail = [f"t{i}".encode() for i in range(3)]
            for p in tail:
                publish(b, f"{topic}/{p.decode()}", p)
            assert await until(lambda: everything(sent + tail))
            seen = coap_got[0] + coap_got[1] + other_got()
            assert sorted(seen) == sorted(sent + tail), "each message to exactly one member"
            assert coap_got[0] and coap_got[1] and other_got(), "every member gets its turn"
            assert b"retained" not in seen
        finally:
            for t in tasks:
                t.cancel()
        for obs in members:
            obs.cancel()
    finally:
        for ctx in contexts:
            await ctx.shutdown()
        if with_mqtt:
            other.close()
        else:
            b.call_soon(b.context.router.unsubscribe_all, other)


# --- ACL per notification and on reload -------------------------------------------------

ACL_BOB = (
    'default = "deny"\n'
    '[[rule]]\npermission = "allow"\ntopic = "#"\nusers = ["alice"]\n'
    '[[rule]]\npermission = "allow"\naction = "subscribe"\ntopic = "acl/ok/#"\nusers = ["bob"]\n'
    '[[rule]]\npermission = "allow"\naction = "subscribe"\ntopic = "acl/still/#"\n'
    'users = ["bob"]\n'
)
BOB = "?username=bob&password=hunter2&client_id=bob1"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[BrokerThread, Path]]:
    pw = tmp_path / "passwd"
    set_password(pw, "alice", "s3cret")
    set_password(pw, "bob", "hunter2")
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL_BOB)
    config = {"auth": {"password_file": str(pw), "acl_file": str(acl), "anonymous": False}}
    with BrokerThread(plugins=["coap"], config=config) as b:
        yield b, acl


async def reload(b: BrokerThread) -> None:
    """The broker's reload (SIGHUP, POST /api/v1/reload), run on its loop."""
    await asyncio.to_thread(b.call, b.context.reload())


async def test_each_notification_is_checked_and_a_reload_narrows_it(client, acl_broker):
    b, acl = acl_broker
    obs, first = await observe(client, b, f"/ps/acl/%23{BOB}")
    assert first.code == Code.CONTENT  # acl/# overlaps what bob may read
    for topic in ("acl/secret/1", "acl/ok/1", "acl/secret/2", "acl/ok/2"):
        publish(b, topic, topic.encode())
    got = [(await obs.next()).payload for _ in range(2)]
    # In order on one observation: the secret ones in between were never sent.
    assert got == [b"acl/ok/1", b"acl/ok/2"]
    denied = b.context.stats.authz_denied
    # The ACL changes: bob may no longer read acl/ok/, still acl/still/.
    acl.write_text(ACL_BOB.replace("acl/ok/#", "acl/gone/#"))
    await reload(b)
    assert coap_observers(b) == 1  # acl/# still overlaps acl/still/#
    for topic in ("acl/ok/3", "acl/still/1"):
        publish(b, topic, topic.encode())
    assert (await obs.next()).payload == b"acl/still/1"
    assert b.context.stats.authz_denied == denied
    obs.cancel()


async def test_a_reload_ends_an_observation_no_longer_allowed_with_4_03(client, acl_broker):
    b, acl = acl_broker
    obs, first = await observe(client, b, f"/ps/acl/ok/%23{BOB}")
    assert first.code == Code.CONTENT
    publish(b, "acl/ok/a", b"before")
    assert (await obs.next()).payload == b"before"
    denied = b.context.stats.authz_denied
    acl.write_text(ACL_BOB.replace("acl/ok/#", "acl/gone/#"))
    await reload(b)
    final = await obs.next()
    message = getattr(final, "coapmessage", final)  # aiocoap may wrap it in an error
    assert message.code == Code.FORBIDDEN, final
    assert b"no longer allowed" in message.payload
    assert await until(lambda: coap_observers(b) == 0)
    assert b.context.stats.authz_denied == denied + 1
    publish(b, "acl/ok/b", b"after")
    # A new observation of the same filter is refused outright now.
    msg = aiocoap.Message(code=Code.GET, uri=coap_url(b, f"/ps/acl/ok/%23{BOB}"), observe=0)
    refused = await asyncio.wait_for(client.request(msg).response, WAIT)
    assert refused.code == Code.FORBIDDEN
    later = []
    while not obs.queue.empty():
        later.append(obs.queue.get_nowait())
    # Nothing after the final 4.03 (aiocoap may note the end of the observation).
    assert not [n for n in later if getattr(n, "payload", None) == b"after"], later
