"""``$SYS/broker/...`` topics (published by the core) reach MQTT clients that
subscribe to them, and never clients subscribed to ``#`` or ``+/...`` (MQTT 3.1.1
4.7.2: wildcards at the first level do not match topics starting with ``$``)."""

from __future__ import annotations

import queue

import pytest

WANTED = {
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
}


@pytest.mark.parametrize("version", [4, 5])
def test_sys_topics_reach_a_sys_subscriber_and_not_hash(fluxmq_broker_factory, clients, version):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"sys": {"interval": 0.2}})
    port = b.port()
    everything = clients(port, version=version)
    everything.subscribe("#", 0)
    everything.subscribe("+/broker/#", 0)
    sys_sub = clients(port, version=version)
    sys_sub.subscribe("$SYS/#", 0)
    seen: dict[str, bytes] = {}
    for _ in range(200):  # bounded: several intervals' worth of updates
        if WANTED <= set(seen) and seen["$SYS/broker/clients/connected"] != b"0":
            break  # every topic seen, and an update made after our clients connected
        try:
            m = sys_sub.get(timeout=5)
        except queue.Empty:
            break
        seen[m.topic] = m.payload
    assert WANTED <= set(seen), sorted(WANTED - set(seen))
    assert seen["$SYS/broker/version"].startswith(b"FluxMQ ")
    assert int(seen["$SYS/broker/clients/connected"]) == 2
    everything.client.publish("plain/x", "x", 0)
    while True:  # only the plain message, never a $SYS one
        m = everything.get()
        assert not m.topic.startswith("$"), m.topic
        if m.topic == "plain/x":
            break
    # Two more $SYS rounds reach the $SYS subscriber; each was routed to every
    # subscriber at once, so the round trip below covers them for ``everything``.
    rounds = 0
    for _ in range(200):  # bounded
        if sys_sub.get(timeout=5).topic == "$SYS/broker/uptime":
            rounds += 1
            if rounds == 2:
                break
    assert rounds == 2
    everything.nothing()  # no $SYS message matched ``#`` or ``+/broker/#``
