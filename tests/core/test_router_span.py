"""The tracing hook at the router's delivery point: ``Router.publish`` with a
:class:`DeliverySpan` delivers exactly what it delivers without one (same counts,
same shared-group turns) and tells the span the planned fan-out and the counts.
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

    def fan_out(self, subscribers: list[tuple[Any, int]], groups: list[str]) -> None:
        self.calls.append(("fan_out", ([(s.client_id, q) for s, q in subscribers], groups)))

    def shared(self, group: str, subscriber: Any, qos: int) -> None:
        self.calls.append(("shared", (group, subscriber.client_id, qos)))

    def fanned_out(self, delivered: int, failed: int) -> None:
        self.calls.append(("fanned_out", (delivered, failed)))


def test_publish_with_a_span_delivers_as_without() -> None:
    plain_router, plain = _setup()
    span_router, spanned = _setup()
    spans = [Span() for _ in MESSAGES]
    counts = [plain_router.publish(m) for m in MESSAGES]
    counts_span = [span_router.publish(m, s) for m, s in zip(MESSAGES, spans, strict=True)]
    assert counts == counts_span
    assert [s.got for s in plain] == [s.got for s in spanned]
    assert span_router.retained_count == plain_router.retained_count == 1
    assert spans[0].calls[0][0] == "fan_out"
    assert spans[0].calls[-1] == ("fanned_out", (counts[0], 1))  # "bad" raised, survived
    assert spans[3].calls == []  # expired: no fan-out
    assert spans[4].calls == []  # nobody subscribed


def test_the_span_is_told_the_share_group_member_picked() -> None:
    router, subs = _setup()
    picked = []
    for body in (b"1", b"2"):
        span = Span()
        router.publish(Message("t/q", body), span)
        shared = [c[1] for c in span.calls if c[0] == "shared"]
        assert len(shared) == 1 and shared[0][0] == "g"
        picked.append(shared[0][1:])
    # the member named is the one that got the message, and the turn moved on
    b, c = subs[2], subs[3]
    assert sorted(picked) == [("b", 1), ("c", 0)]
    assert len(b.got) == len(c.got) == 1


def test_a_share_handler_counts_in_the_span() -> None:
    router, _subs = _setup()
    router.set_share_handler(lambda message, groups: 2)
    span = Span()
    n = router.publish(Message("t/q", b"x"), span)
    assert span.calls[0] == ("fan_out", ([("me", 2)], ["g"]))
    assert span.calls[-1] == ("fanned_out", (n, 0))
    assert [c for c in span.calls if c[0] == "shared"] == []  # the handler's members are elsewhere
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
