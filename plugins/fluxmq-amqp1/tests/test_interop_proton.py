"""Qpid Proton (its BlockingConnection) against the broker over real sockets:
topics and queues, credit, every settlement outcome, multi-frame messages, the
anonymous relay, clear refusals of what is not built, and MQTT <-> AMQP 1.0."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from proton import Delivery, Described, Message, symbol
from proton.reactor import Copy, Filter, LinkOption, Selector
from proton.utils import LinkDetached, SendException

WAIT = 5.0


def name(prefix: str = "q") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_topic_round_trip_keeps_the_message(connect: Any) -> None:
    c = connect()
    topic = f"topic/{name('t')}/x"
    r = c.create_receiver(topic, credit=10)
    s = c.create_sender(topic)
    sent = Message(
        body={"k": [1, 2.5, "v"]},
        id="id-1",
        correlation_id=uuid.UUID(int=3),
        subject="subj",
        content_type="application/json",
        reply_to="topic/replies",
        properties={"p": 7, "flag": True},
        annotations={symbol("x-opt-a"): "b"},
        durable=True,
        priority=6,
    )
    s.send(sent)
    got = r.receive(timeout=WAIT)
    r.accept()
    assert got.body == {"k": [1, 2.5, "v"]}
    assert (got.id, got.correlation_id, got.subject) == ("id-1", uuid.UUID(int=3), "subj")
    assert got.content_type == "application/json" and got.reply_to == "topic/replies"
    assert got.properties == {"p": 7, "flag": True}
    assert got.annotations == {"x-opt-a": "b"} and got.durable and got.priority == 6


def test_routing_key_and_mqtt_wildcards(connect: Any) -> None:
    c = connect()
    base = name("w")
    r1 = c.create_receiver(f"/topics/{base}.*", credit=10)
    r2 = c.create_receiver(f"topic/{base}/#", credit=10)
    s = c.create_sender(f"/exchanges/amq.topic/{base}.a")
    s.send(Message(body=b"one"))
    assert r1.receive(timeout=WAIT).body == b"one"
    assert r2.receive(timeout=WAIT).body == b"one"
    r1.accept()
    r2.accept()


def test_queue_send_and_consume_in_order(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name()}"
    s = c.create_sender(q)
    for i in range(5):
        s.send(Message(body=f"m{i}"))  # raises unless the outcome is accepted
    r = c.create_receiver(q, credit=10)
    bodies = []
    for _ in range(5):
        bodies.append(r.receive(timeout=WAIT).body)
        r.accept()
    assert bodies == [f"m{i}" for i in range(5)]


def test_queue_outcomes_accept_reject_release_modified(connect: Any) -> None:
    c = connect()
    qn = name()
    s = c.create_sender(f"/queues/{qn}")
    for b in ("a", "b", "c", "d"):
        s.send(Message(body=b))
    r = c.create_receiver(f"$queue/{qn}")
    assert r.receive(timeout=WAIT).body == "a"
    r.accept()
    assert r.receive(timeout=WAIT).body == "b"
    r.reject()
    assert r.receive(timeout=WAIT).body == "c"
    r.release(delivered=False)  # released
    got = r.receive(timeout=WAIT)
    # the released message comes back before new ones
    assert got.body == "c"
    r.release(delivered=True)  # modified(delivery-failed)
    again = r.receive(timeout=WAIT)
    assert again.body in ("c", "d")
    r.accept()
    rest = r.receive(timeout=WAIT)
    r.accept()
    assert {again.body, rest.body} == {"c", "d"}
    dlq = c.create_receiver(f"$dlq/{qn}")
    assert dlq.receive(timeout=WAIT).body == "b"
    dlq.accept()


def test_released_keeps_the_delivery_count_and_modified_failed_counts(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name()}"
    c.create_sender(q).send(Message(body="c"))
    r = c.create_receiver(q, credit=5)
    counts = []
    for outcome in ("released", "released", "modified", "failed", "accepted"):
        got = r.receive(timeout=WAIT)
        assert got.body == "c"
        counts.append(got.delivery_count)
        if outcome == "accepted":
            r.accept()
        elif outcome == "released":
            r.release(delivered=False)
        else:
            r.fetcher.unsettled[0].local.failed = outcome == "failed"
            r.settle(Delivery.MODIFIED)
    # releases and a plain modified are not delivery attempts; delivery-failed is
    assert counts == [0, 0, 0, 0, 1]


def test_modified_undeliverable_here_goes_to_another_consumer(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name()}"
    s = c.create_sender(q)
    a = c.create_receiver(q, credit=10, name="a")
    b = c.create_receiver(q, credit=0, name="b")  # in the group, no credit yet
    s.send(Message(body="x"))
    assert a.receive(timeout=WAIT).body == "x"
    d = a.fetcher.unsettled[0]
    d.local.undeliverable = True
    a.settle(Delivery.MODIFIED)
    s.send(Message(body="y"))
    # a still has credit, but x waits for b (another consumer of the group): a gets y
    assert a.receive(timeout=WAIT).body == "y"
    a.accept()
    got = b.receive(timeout=WAIT)  # grants b one credit
    assert got.body == "x" and got.delivery_count == 0
    b.accept()


def test_link_credit_bounds_queue_deliveries(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name()}"
    s = c.create_sender(q)
    for i in range(4):
        s.send(Message(body=i))
    slow = c.create_receiver(q, name="slow")  # no credit until receive() grants one
    assert slow.receive(timeout=WAIT).body == 0  # held unsettled, credit spent
    fast = c.create_receiver(q, credit=10, name="fast")
    # with no credit left, the slow receiver gets nothing more: the rest go to fast
    assert [fast.receive(timeout=WAIT).body for _ in range(3)] == [1, 2, 3]
    fast.accept()
    slow.accept()


def test_multi_frame_messages_both_ways(connect: Any) -> None:
    c = connect()
    big = bytes(range(256)) * 1200  # 300 KB, several 64 KB frames each way
    q = f"$queue/{name()}"
    c.create_sender(q).send(Message(body=big))
    r = c.create_receiver(q, credit=2)
    assert r.receive(timeout=WAIT).body == big
    r.accept()


def test_anonymous_relay_routes_by_to(connect: Any) -> None:
    c = connect()
    topic = f"topic/{name('relay')}"
    r = c.create_receiver(topic, credit=5)
    s = c.create_sender(None)
    s.send(Message(address=topic, body="via relay"))
    assert r.receive(timeout=WAIT).body == "via relay"
    r.accept()
    with pytest.raises(SendException):
        s.send(Message(body="nowhere"))  # no `to`: rejected


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c.create_receiver("topic/browse", options=Copy()),
    ],
    ids=["browse-topic"],
)
def test_not_built_yet_is_refused_clearly(connect: Any, make: Any) -> None:
    c = connect()
    with pytest.raises(LinkDetached) as info:
        make(c)
    cond = info.value.link.remote_condition
    assert (
        cond is not None
        and cond.name == "amqp:not-implemented"
        and "not implemented" in cond.description
    )


def test_dynamic_reply_queue_request_response(connect: Any) -> None:
    c = connect()
    service = f"$queue/{name('svc')}"
    replies = c.create_receiver(None, dynamic=True, credit=5)
    reply_to = replies.link.remote_source.address
    assert reply_to.startswith("$queue/amq.dyn-")
    c.create_sender(service).send(Message(body="ping", reply_to=reply_to, correlation_id="c1"))
    worker = c.create_receiver(service, credit=1)
    req = worker.receive(timeout=WAIT)
    worker.accept()
    c.create_sender(req.reply_to).send(Message(body="pong", correlation_id=req.correlation_id))
    resp = replies.receive(timeout=WAIT)
    replies.accept()
    assert (resp.body, resp.correlation_id) == ("pong", "c1")
    replies.close()
    with pytest.raises(LinkDetached) as info:  # the temporary queue went with its link
        c.create_sender(reply_to, name="late")
    assert info.value.link.remote_condition.name == "amqp:not-found"


class DynamicTarget(LinkOption):
    def apply(self, link: Any) -> None:
        link.target.dynamic = True

    def test(self, link: Any) -> bool:
        return bool(link.is_sender)


def test_dynamic_target_is_a_temporary_queue(connect: Any) -> None:
    c = connect()
    s = c.create_sender(None, name="dyn-out", options=DynamicTarget())
    address = s.link.remote_target.address
    assert address.startswith("$queue/amq.dyn-") and s.link.remote_target.dynamic
    s.send(Message(body="into the node"))
    r = c.create_receiver(address, credit=1, name="dyn-in")
    assert r.receive(timeout=WAIT).body == "into the node"
    r.accept()
    _detaching(s.close, r)  # the node goes with the link that asked for it, and its receiver
    assert _remote_condition(c, r).name == "amqp:resource-deleted"
    with pytest.raises(LinkDetached) as info:
        c.create_sender(address, name="late")
    assert info.value.link.remote_condition.name == "amqp:not-found"


def test_acl_applies_to_links_and_relayed_messages(
    fluxmq_broker_factory: Any, tmp_path: Any
) -> None:
    from proton.utils import BlockingConnection

    acl = tmp_path / "acl.toml"
    acl.write_text(
        'default = "deny"\n'
        '[[rule]]\npermission = "allow"\ntopic = "open/#"\n'
        '[[rule]]\npermission = "allow"\naction = "publish"\ntopic = "$queue/inbox"\n'
    )
    broker = fluxmq_broker_factory(plugins=["amqp1"], config={"auth": {"acl_file": str(acl)}})
    c = BlockingConnection(f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", timeout=WAIT)
    try:
        r = c.create_receiver("topic/open/a", credit=2)
        c.create_sender("topic/open/a").send(Message(body="fine"))
        assert r.receive(timeout=WAIT).body == "fine"
        r.accept()
        c.create_sender("$queue/inbox").send(Message(body="in"))
        for address, make in (
            ("topic/closed/a", c.create_receiver),
            ("topic/closed/b", c.create_sender),
            ("$queue/inbox", c.create_receiver),
        ):
            with pytest.raises(LinkDetached) as info:
                make(address)
            assert info.value.link.remote_condition.name == "amqp:unauthorized-access"
        # A wildcard link that is only partly readable gets only what it may read
        # ([auth] acl_subscribe = "filter"): closed/z (published past the ACL, from
        # the broker itself) is dropped, the open/z after it arrives first.
        from fluxmq_core.message import Message as CoreMessage

        wild = c.create_receiver("topic/#", credit=5, name="wild")
        broker.call_soon(broker.context.publish, CoreMessage("closed/z", b"secret"))
        broker.call_soon(broker.context.publish, CoreMessage("open/z", b"readable"))
        assert wild.receive(timeout=WAIT).body == b"readable"
        wild.accept()
        relay = c.create_sender(None)
        relay.send(Message(address="topic/open/a", body="relayed"))
        assert r.receive(timeout=WAIT).body == "relayed"
        r.accept()
        with pytest.raises(SendException):
            relay.send(Message(address="topic/closed/x", body="no"))
    finally:
        c.close()


class Props(LinkOption):
    """Link properties (consumer-group, cursor) on a receiver."""

    def __init__(self, **props: Any) -> None:
        self.props = {symbol(k): v for k, v in props.items()}

    def apply(self, link: Any) -> None:
        link.properties = self.props


def test_stream_cursor_and_consumer_groups(connect: Any, amqp1_broker: Any) -> None:
    stream = name("ev")
    amqp1_broker.call_soon(amqp1_broker.context.queues.declare, stream, {"type": "stream"})
    c = connect()
    s = c.create_sender(f"$queue/{stream}")
    for i in range(4):
        s.send(Message(body=i))
    # two groups each read the whole stream from the start
    for group in ("g1", "g2"):
        r = c.create_receiver(
            f"$queue/{stream}",
            credit=10,
            name=group,
            options=Props(**{"consumer-group": group, "cursor": "earliest"}),
        )
        got = []
        for _ in range(4):
            got.append(r.receive(timeout=WAIT).body)
            r.accept()
        assert got == [0, 1, 2, 3]
    # a cursor at an offset starts there
    r = c.create_receiver(
        f"$queue/{stream}",
        credit=10,
        name="g3",
        options=Props(**{"consumer-group": "g3", "cursor": 2}),
    )
    assert r.receive(timeout=WAIT).body == 2
    r.accept()
    # browsing a stream copies every retained record
    b = c.create_receiver(f"$queue/{stream}", credit=10, name="br", options=Copy())
    assert [b.receive(timeout=WAIT).body for _ in range(4)] == [0, 1, 2, 3]


def test_legacy_topic_binding_filters_a_queue_by_routing_key(connect: Any) -> None:
    c = connect()
    qn = name("bind")
    s = c.create_sender(f"$queue/{qn}")  # the rest of the address is the routing key
    for key in ("a/x", "b/y", "a/z"):
        c.create_sender(f"$queue/{qn}/{key}", name=f"s-{key}").send(Message(body=key))
    s.close()
    binding = Described(symbol("apache.org:legacy-amqp-topic-binding:string"), "a.*")
    r = c.create_receiver(
        f"$queue/{qn}",
        credit=5,
        name="bound",
        options=[Filter({symbol("topic-filter"): binding}), Props(**{"consumer-group": "ga"})],
    )
    got = [r.receive(timeout=WAIT).body for _ in range(2)]
    r.accept()
    r.accept()
    assert got == ["a/x", "a/z"]


def test_legacy_bindings_on_the_topic_exchange_subscribe_their_key(connect: Any) -> None:
    c = connect()
    base = name("ex")
    topic_binding = Described(symbol("apache.org:legacy-amqp-topic-binding:string"), f"{base}.*")
    direct = Described(symbol("apache.org:legacy-amqp-direct-binding:string"), f"{base}.b")
    r1 = c.create_receiver(
        "/exchanges/amq.topic", credit=5, name="ex-t", options=Filter({symbol("f"): topic_binding})
    )
    r2 = c.create_receiver(
        "/exchange/amq.topic", credit=5, name="ex-d", options=Filter({symbol("f"): direct})
    )
    s = c.create_sender(f"topic/{base}/a", name="ex-a")
    s.send(Message(body="a"))
    c.create_sender(f"/exchanges/amq.topic/{base}.b", name="ex-b").send(Message(body="b"))
    assert [r1.receive(timeout=WAIT).body for _ in range(2)] == ["a", "b"]
    r1.accept()
    assert r2.receive(timeout=WAIT).body == "b"  # "a" did not match the direct key
    r2.accept()
    s.send(Message(body="a2"))  # a round trip: r2 still has nothing for topic a
    assert r1.receive(timeout=WAIT).body == "a2"
    r1.accept()
    assert r2.link.queued == 0


def test_legacy_binding_refused_where_it_does_not_fit(connect: Any) -> None:
    c = connect()
    binding = Described(symbol("apache.org:legacy-amqp-topic-binding:string"), "a.*")
    with pytest.raises(LinkDetached) as info:  # the address already names the topic
        c.create_receiver("topic/x/y", name="both", options=Filter({symbol("f"): binding}))
    cond = info.value.link.remote_condition
    assert cond.name == "amqp:invalid-field" and "/exchanges/amq.topic" in cond.description
    with pytest.raises(LinkDetached) as info:  # the exchange without a key
        c.create_receiver("/exchanges/amq.topic", name="no-key")
    cond = info.value.link.remote_condition
    assert cond.name == "amqp:invalid-field" and "routing key" in cond.description


def test_browse_reads_a_queue_without_consuming(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name('br')}"
    s = c.create_sender(q)
    for body in ("a", "b", "c"):
        s.send(Message(body=body))
    worker = c.create_receiver(q, name="worker")
    assert worker.receive(timeout=WAIT).body == "a"
    worker.accept()  # a is consumed; b and c stay
    worker.close()
    browser = c.create_receiver(q, credit=10, name="browser", options=Copy())
    assert [browser.receive(timeout=WAIT).body for _ in range(2)] == ["b", "c"]
    assert browser.link.remote_snd_settle_mode == 1  # copies come settled
    # browsing took nothing away
    again = c.create_receiver(q, credit=10, name="again")
    assert [again.receive(timeout=WAIT).body for _ in range(2)] == ["b", "c"]
    again.accept()
    again.accept()


def test_jms_selector_on_a_topic_link(connect: Any) -> None:
    c = connect()
    topic = f"topic/{name('sel')}"
    r = c.create_receiver(
        topic, credit=10, name="picky", options=Selector("color = 'red' AND size > 2")
    )
    s = c.create_sender(topic)
    for color, size in (("blue", 5), ("red", 1), ("red", 3)):
        s.send(Message(body=f"{color}-{size}", properties={"color": color, "size": size}))
    assert r.receive(timeout=WAIT).body == "red-3"  # the first two were not selected
    r.accept()
    with pytest.raises(LinkDetached) as info:
        c.create_receiver(topic, name="bad", options=Selector("color = "))
    assert info.value.link.remote_condition.name == "amqp:invalid-field"


def test_jms_selector_on_a_queue_leaves_the_rest_to_other_consumers(connect: Any) -> None:
    c = connect()
    q = f"$queue/{name('qsel')}"
    s = c.create_sender(q)
    for i, color in enumerate(("blue", "red", "green", "red")):
        s.send(Message(body=f"{color}-{i}", properties={"color": color}))
    # a browser with the selector copies only what it selects
    browser = c.create_receiver(
        q, credit=10, name="peek", options=[Copy(), Selector("color = 'red'")]
    )
    assert [browser.receive(timeout=WAIT).body for _ in range(2)] == ["red-1", "red-3"]
    red = c.create_receiver(q, credit=10, name="red", options=Selector("color = 'red'"))
    assert [red.receive(timeout=WAIT).body for _ in range(2)] == ["red-1", "red-3"]
    red.accept()
    # what the selective link declined stayed in the queue, never delivered
    rest = c.create_receiver(q, credit=10, name="rest")
    got = [rest.receive(timeout=WAIT) for _ in range(2)]
    assert [m.body for m in got] == ["blue-0", "green-2"]
    assert [m.delivery_count for m in got] == [0, 0]
    rest.accept()
    with pytest.raises(LinkDetached) as info:
        c.create_receiver(q, name="bad", options=Selector("color IN ("))
    assert info.value.link.remote_condition.name == "amqp:invalid-field"


def test_jms_selector_on_a_stream(connect: Any, amqp1_broker: Any) -> None:
    stream = name("ssel")
    amqp1_broker.call_soon(amqp1_broker.context.queues.declare, stream, {"type": "stream"})
    c = connect()
    s = c.create_sender(f"$queue/{stream}")
    for i, color in enumerate(("blue", "red", "green", "red")):
        s.send(Message(body=f"{color}-{i}", properties={"color": color}))
    red = c.create_receiver(
        f"$queue/{stream}",
        credit=10,
        name="red",
        options=[Selector("color = 'red'"), Props(**{"consumer-group": "r", "cursor": "earliest"})],
    )
    assert [red.receive(timeout=WAIT).body for _ in range(2)] == ["red-1", "red-3"]
    red.accept()
    # the records this group passed over stay in the stream: another group reads all
    every = c.create_receiver(
        f"$queue/{stream}",
        credit=10,
        name="every",
        options=Props(**{"consumer-group": "all", "cursor": "earliest"}),
    )
    got = [every.receive(timeout=WAIT).body for _ in range(4)]
    assert got == ["blue-0", "red-1", "green-2", "red-3"]
    every.accept()


def test_jms_selector_on_a_priority_queue(connect: Any, amqp1_broker: Any) -> None:
    qn = name("psel")
    amqp1_broker.call_soon(amqp1_broker.context.queues.declare, qn, {"max_priority": 9})
    c = connect()
    s = c.create_sender(f"$queue/{qn}")
    for color, prio in (("blue", 1), ("red", 1), ("red", 9), ("blue", 9)):
        s.send(Message(body=f"{color}-{prio}", priority=prio, properties={"color": color}))
    red = c.create_receiver(
        f"$queue/{qn}", credit=10, name="red", options=Selector("color = 'red'")
    )
    assert [red.receive(timeout=WAIT).body for _ in range(2)] == ["red-9", "red-1"]
    red.accept()
    rest = c.create_receiver(f"$queue/{qn}", credit=10, name="rest")
    got = [rest.receive(timeout=WAIT) for _ in range(2)]
    assert [m.body for m in got] == ["blue-9", "blue-1"]  # by priority, never delivered
    assert [m.delivery_count for m in got] == [0, 0]
    rest.accept()


def test_browse_with_a_routing_key_filter(connect: Any) -> None:
    c = connect()
    qn = name("brf")
    for key in ("a/x", "b/y", "a/z"):
        c.create_sender(f"$queue/{qn}/{key}", name=f"s-{key}").send(Message(body=key))
    b = c.create_receiver(f"$queue/{qn}/a/#", credit=10, name="peek", options=Copy())
    assert [b.receive(timeout=WAIT).body for _ in range(2)] == ["a/x", "a/z"]
    # nothing was consumed
    r = c.create_receiver(f"$queue/{qn}", credit=10, name="all")
    assert [r.receive(timeout=WAIT).body for _ in range(3)] == ["a/x", "b/y", "a/z"]
    r.accept()


def test_management_node_creates_reads_queries_and_deletes_queues(connect: Any) -> None:
    c = connect()
    replies = c.create_receiver(None, dynamic=True, credit=10, name="mgmt-replies")
    reply_to = replies.link.remote_source.address
    mgmt = c.create_sender("$management")
    qn = name("m")

    def ask(operation: str, body: Any = None, **props: Any) -> Message:
        mgmt.send(
            Message(
                id=f"req-{operation}",
                reply_to=reply_to,
                body=body,
                properties={"operation": operation, "type": "queue", **props},
            )
        )
        resp = replies.receive(timeout=WAIT)
        replies.accept()
        assert resp.correlation_id == f"req-{operation}"
        return resp

    created = ask("CREATE", {"type": "classic", "max_depth": 100}, name=qn)
    assert created.properties["statusCode"] == 201 and created.body["name"] == qn
    c.create_sender(f"$queue/{qn}").send(Message(body="one"))
    read = ask("READ", name=qn)
    assert read.properties["statusCode"] == 200 and read.body["depth"] == 1
    assert read.body["type"] == "classic"
    listed = ask("QUERY")
    assert qn in [q["name"] for q in listed.body]
    assert ask("DELETE", name=qn).properties["statusCode"] == 204
    assert ask("READ", name=qn).properties["statusCode"] == 404
    bad = ask("CREATE", {"type": "no-such-type"}, name=name("m"))
    assert bad.properties["statusCode"] == 400
    assert ask("PATCH", name=qn).properties["statusCode"] == 501


def test_management_replies_on_a_management_receiver(connect: Any) -> None:
    c = connect()
    replies = c.create_receiver("$management", credit=2, name="mgmt-rx")
    c.create_sender("$management").send(
        Message(id="q1", reply_to="mgmt-rx", properties={"operation": "QUERY", "type": "queue"})
    )
    resp = replies.receive(timeout=WAIT)
    replies.accept()
    assert resp.properties["statusCode"] == 200 and isinstance(resp.body, list)


def test_ten_megabytes_over_small_frames(fluxmq_broker_factory: Any) -> None:
    from proton.utils import BlockingConnection

    broker = fluxmq_broker_factory(plugins=["amqp1"], config={"amqp1": {"max_frame_size": 16384}})
    c = BlockingConnection(
        f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", timeout=WAIT * 3, max_frame_size=16384
    )
    try:
        big = bytes(range(256)) * (10 * 4096)  # 10 MiB: 640 frames of 16 KiB each way
        q = f"$queue/{name('big')}"
        c.create_sender(q).send(Message(body=big))
        r = c.create_receiver(q, credit=1)
        got = r.receive(timeout=WAIT * 3)
        r.accept()
        assert got.body == big
    finally:
        c.close()


def _detaching(action: Any, r: Any) -> None:
    """Run a blocking ``action`` during which the broker may detach receiver ``r``
    (the blocking API then raises LinkDetached for ``r``, only for ``r``)."""
    try:
        action()
    except LinkDetached as exc:
        assert exc.link.name == r.link.name, f"another link was detached: {exc}"


def _remote_condition(c: Any, r: Any) -> Any:
    """Wait (bounded) until the broker detaches receiver ``r``; its error condition
    (the blocking API raises LinkDetached for each link detached with an error,
    ``r`` or another one being detached with it)."""
    from proton import Endpoint

    for _ in range(5):
        try:
            c.wait(lambda: bool(r.link.state & Endpoint.REMOTE_CLOSED), timeout=WAIT)
            break
        except LinkDetached:
            continue
    return r.link.remote_condition


def test_receiver_of_a_dynamic_target_is_detached_when_the_node_goes(connect: Any) -> None:
    c = connect()
    s = c.create_sender(None, name="dyn-out2", options=DynamicTarget())
    address = s.link.remote_target.address
    r = c.create_receiver(address, credit=1, name="dyn-in2")
    other = c.create_receiver(f"$queue/{name('keep')}", credit=1, name="unrelated")
    _detaching(s.close, r)
    cond = _remote_condition(c, r)
    assert cond is not None and cond.name == "amqp:resource-deleted"
    assert address.removeprefix("$queue/") in cond.description
    # a receiver on another queue stays attached and still works
    other_address = other.link.remote_source.address
    c.create_sender(other_address, name="to-other").send(Message(body="still here"))
    assert other.receive(timeout=WAIT).body == "still here"
    other.accept()


def test_management_delete_detaches_the_queue_receivers(connect: Any) -> None:
    c = connect()
    qn = name("del")
    r = c.create_receiver(f"$queue/{qn}", credit=1, name="doomed")
    b = c.create_receiver(f"$queue/{qn}", credit=1, name="doomed-browser", options=Copy())
    admin = connect()  # another connection asks, so its calls see no detach
    replies = admin.create_receiver(None, dynamic=True, credit=2, name="del-replies")
    admin.create_sender("$management").send(
        Message(
            id="d1",
            reply_to=replies.link.remote_source.address,
            properties={"operation": "DELETE", "type": "queue", "name": qn},
        )
    )
    assert replies.receive(timeout=WAIT).properties["statusCode"] == 204
    replies.accept()
    assert _remote_condition(c, r).name == "amqp:resource-deleted"
    assert _remote_condition(c, b).name == "amqp:resource-deleted"


def test_queue_deleted_elsewhere_detaches_its_receivers(connect: Any, amqp1_broker: Any) -> None:
    c = connect()
    qn = name("gone")
    r = c.create_receiver(f"$queue/{qn}", credit=1, name="orphan")
    c.create_sender(f"$queue/{qn}", name="fill").send(Message(body="one"))
    assert r.receive(timeout=WAIT).body == "one"
    r.accept()  # settled: the queue may go
    other = c.create_receiver(f"$queue/{name('stays')}", credit=1, name="stays")
    queues = amqp1_broker.context.queues
    assert amqp1_broker.call_soon(queues.delete, qn) is True  # as the admin API would
    # no flow from the client: the broker's sweep finds the orphan
    assert _remote_condition(c, r).name == "amqp:resource-deleted"
    assert other.link.remote_condition is None
    # a receiver whose consumer group was deleted goes the same way, at its next flow
    # at the latest
    g = c.create_receiver(
        f"$queue/{qn}x", credit=1, name="grouped", options=Props(**{"consumer-group": "cg"})
    )
    assert amqp1_broker.call_soon(queues.delete_group, f"{qn}x", "cg") is True
    g.link.flow(1)
    assert _remote_condition(c, g).name == "amqp:resource-deleted"
