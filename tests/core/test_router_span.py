"""The tracing hook at the router's delivery point: ``Router.publish`` with a
:class:`DeliverySpan` delivers exactly what it delivers without one (same counts,
same shared-group turns) and tells the span the match, each delivery and the counts.
Also the core metric registry."""

from __future__ import annotations

from typing import Any

from fluxmq_core.message import Message
from fluxmq_core.metrics import MetricSpec, metric_specs, register_metrics
from fluxmq_core.router import Delivery, Router, SubscriptionOptions


class Recorder:
    def __init__(self, client_id: str, protocol: str = "mqtt", fail: bool = False) -> None:
        self.client_id = client_id
        self.protocol = protocol
        self.fail = fail
        self.got: list[tuple[str, Delivery]] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.got.append((message.topic, delivery))


def _setup() -> tuple[Router, list[Recorder]]:
    router = Router()
    subs = [Recorder(n) for n in ("me", "a", "b", "c")] + [Recorder("bad", fail=True)]
    me, a, b, c, bad = subs
    router.subscribe(me, "t/#", SubscriptionOptions(qos=1, no_local=True, subscription_id=3))
    router.subscribe(me, "t/+", SubscriptionOptions(qos=2, subscription_id=4))
    router.subscribe(a, "t/x", SubscriptionOptions(retain_as_published=True))
    router.subscribe(b, "$share/g/t/#", SubscriptionOptions(qos=1))
    router.subscribe(c, "$share/g/t/#", SubscriptionOptions(qos=0))
    router.subscribe(bad, "t/x")
    return router, subs


MESSAGES = [
    Message("t/x", b"1", retain=True, origin_client="me", origin_protocol="mqtt"),
    Message("t/x", b"2", origin_client="you", origin_protocol="mqtt"),
    Message("t/y/z", b"3", origin_client="me", origin_protocol="amqp091"),
    Message("t/x", b"4", expires_at=0.0),
    Message("u", b"5"),
]


class Span:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def routing(self) -> None:
        self.calls.append(("routing", None))

    def matched(self, subscribers: int, groups: list[str]) -> None:
        self.calls.append(("matched", (subscribers, groups)))

    def delivering(self, subscriber: Any, qos: int, group: str | None) -> None:
        self.calls.append(("delivering", (subscriber.client_id, qos, group)))

    def delivered(self, failed: bool) -> None:
        self.calls.append(("delivered", failed))

    def shared_elsewhere(self, deliveries: int) -> None:
        self.calls.append(("shared_elsewhere", deliveries))

    def routed(self, delivered: int, failed: int) -> None:
        self.calls.append(("routed", (delivered, failed)))


def test_publish_with_a_span_delivers_as_without() -> None:
    plain_router, plain = _setup()
    span_router, spanned = _setup()
    spans = [Span() for _ in MESSAGES]
    counts = [plain_router.publish(m) for m in MESSAGES]
    counts_span = [span_router.publish(m, s) for m, s in zip(MESSAGES, spans, strict=True)]
    assert counts == counts_span
    assert [s.got for s in plain] == [s.got for s in spanned]
    assert span_router.retained_count == plain_router.retained_count == 1
    # t/x from "me": No Local drops me's t/# but t/+ still matches (qos 2), a,
    # bad (raises) and one share member.
    first = spans[0].calls
    assert first[0] == ("routing", None)
    assert first[1] == ("matched", (3, ["g"]))
    assert first[-1] == ("routed", (counts[0], 1))  # "bad" raised, survived
    pairs = [
        (first[i][1], first[i + 1][1]) for i in range(len(first)) if first[i][0] == "delivering"
    ]
    assert sorted(p for p in pairs if p[0][2] is None) == [
        (("a", 0, None), False),
        (("bad", 0, None), True),
        (("me", 2, None), False),
    ]
    assert [p[0][0] for p in pairs if p[0][2] == "g"] in (["b"], ["c"])
    assert counts[0] == sum(1 for p in pairs if not p[1]) == 3
    # expired: routing told, no match, no delivery
    assert spans[3].calls == [("routing", None), ("routed", (0, 0))]
    # nobody subscribed: matched nothing
    assert spans[4].calls == [("routing", None), ("matched", (0, [])), ("routed", (0, 0))]


def test_no_local_drops_the_subscriber_from_the_span_too() -> None:
    router = Router()
    me = Recorder("me")
    router.subscribe(me, "n/#", SubscriptionOptions(no_local=True))
    span = Span()
    assert (
        router.publish(Message("n/a", b"x", origin_client="me", origin_protocol="mqtt"), span) == 0
    )
    assert span.calls == [("routing", None), ("matched", (1, [])), ("routed", (0, 0))]


def test_the_span_is_told_the_share_group_member_picked() -> None:
    router, subs = _setup()
    picked = []
    for body in (b"1", b"2"):
        span = Span()
        router.publish(Message("t/q", body), span)
        shared = [c[1] for c in span.calls if c[0] == "delivering" and c[1][2] is not None]
        assert len(shared) == 1 and shared[0][2] == "g"
        picked.append(shared[0][:2])
    # the member named is the one that got the message, and the turn moved on
    b, c = subs[2], subs[3]
    assert sorted(picked) == [("b", 1), ("c", 0)]
    assert len(b.got) == len(c.got) == 1


def test_a_share_handler_counts_in_the_span() -> None:
    router, _subs = _setup()
    router.set_share_handler(lambda message, groups: 2)
    span = Span()
    n = router.publish(Message("t/q", b"x"), span)
    assert span.calls[1] == ("matched", (1, ["g"]))
    assert ("shared_elsewhere", 2) in span.calls
    assert span.calls[-1] == ("routed", (n, 0))
    # the handler's members are elsewhere: only "me" is delivered here
    assert [c[1][0] for c in span.calls if c[0] == "delivering"] == ["me"]
    assert n == 3  # me + the two the handler reported


def test_metric_registry_keeps_specs_per_owner() -> None:
    class Ctx:
        extras: dict[str, Any] = {}

    ctx = Ctx()
    assert metric_specs(ctx) == {}
    spec = MetricSpec("x.current", "gauge", lambda: 3)
    register_metrics(ctx, "x", [spec])
    register_metrics(ctx, "y", [MetricSpec("y.total", "counter", lambda: [(1, {"k": "v"})])])
    register_metrics(ctx, "x", [spec, spec])  # again: replaces x's list
    specs = metric_specs(ctx)
    assert [s.name for s in specs["x"]] == ["x.current", "x.current"]
    assert spec.observations() == [(3, {})]
    assert specs["y"][0].observations() == [(1, {"k": "v"})]
