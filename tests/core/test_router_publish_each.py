"""``Router.publish_each`` (the traced routing path) applies exactly the rules of
``Router.publish``: same deliveries, same counts, same shared-group turns."""

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


def test_publish_each_matches_publish() -> None:
    plain_router, plain = _setup()
    each_router, each = _setup()
    calls: list[str] = []

    def deliver(sub: Any, message: Message, delivery: Delivery) -> None:
        calls.append(sub.client_id)
        sub.deliver(message, delivery)

    counts = [plain_router.publish(m) for m in MESSAGES]
    counts_each = [each_router.publish_each(m, deliver) for m in MESSAGES]
    assert counts == counts_each
    assert [s.got for s in plain] == [s.got for s in each]
    assert "bad" in calls  # a failing delivery went through deliver, and was survived
    assert each_router.retained_count == plain_router.retained_count == 1


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
