"""Publisher flow control (``server.FlowControl``) and the robustness of the
dirty-connection flush, without sockets: fake publishers and subscriber connections."""

from __future__ import annotations

from fluxmq_mqtt.config import MQTTConfig
from fluxmq_mqtt.server import FlowControl


class FakePub:
    """Stands in for an ``MQTTProtocol`` as a publisher."""

    def __init__(self) -> None:
        self.conn = SubConn()
        self.waiting: list = []
        self.resumed = 0

    def flow_wait(self, sub, timeout):
        self.waiting.append(sub)

    def flow_done(self, sub):
        if sub in self.waiting:
            self.waiting.remove(sub)
            if not self.waiting:
                self.resumed += 1


class SubConn:
    """Stands in for a subscriber's ``Connection`` (hashable, like the real one)."""

    def __init__(self) -> None:
        self.paused = True


def sub_conn():
    return SubConn()


def test_marks_are_half_and_quarter_of_the_queue():
    flow = FlowControl(MQTTConfig(max_queued_messages=1000))
    assert (flow.high, flow.low) == (500, 250)
    flow = FlowControl(MQTTConfig(max_queued_messages=0))
    assert flow.high == 1


def test_publisher_waits_until_the_subscriber_drains():
    flow = FlowControl(MQTTConfig())
    pub, sub = FakePub(), sub_conn()
    flow.block(sub)  # no current publisher (a timer, another protocol): nothing paused
    assert not flow.congested
    flow.current = pub
    flow.block(sub)
    flow.block(sub)  # once per (publisher, subscriber)
    assert pub.waiting == [sub] and flow.congested == {sub: [pub]}
    flow.check(sub, 0)  # still paused
    assert pub.waiting == [sub]
    sub.paused = False
    flow.check(sub, flow.low + 1)  # queue still above the low mark
    assert pub.waiting == [sub]
    flow.check(sub, flow.low)
    assert pub.waiting == [] and pub.resumed == 1 and not flow.congested


def test_never_paused_on_itself_or_when_off():
    pub = FakePub()
    flow = FlowControl(MQTTConfig())
    flow.current = pub
    flow.block(pub.conn)
    assert not flow.congested and not pub.waiting
    off = FlowControl(MQTTConfig(flow_control_timeout=0))
    off.current = pub
    off.block(sub_conn())
    assert not off.congested and not pub.waiting


def test_timeout_gives_up_on_the_subscriber_until_it_recovers():
    flow = FlowControl(MQTTConfig())
    a, b, sub = FakePub(), FakePub(), sub_conn()
    flow.current = a
    flow.block(sub)
    flow.current = b
    flow.block(sub)
    flow.expired(a, [sub])  # a waited too long: sub no longer pauses anyone
    assert b.waiting == [] and b.resumed == 1
    assert flow.congested == {sub: None}
    c = FakePub()
    flow.current = c
    flow.block(sub)
    assert c.waiting == []  # given up: deliveries to it drop instead
    sub.paused = False
    flow.check(sub, 0)
    assert sub not in flow.congested
    flow.block(sub)
    assert c.waiting == [sub]  # recovered: it may pause publishers again


def test_a_lost_subscriber_releases_its_publishers():
    flow = FlowControl(MQTTConfig())
    pub, sub = FakePub(), sub_conn()
    flow.current = pub
    flow.block(sub)
    flow.forget(sub)
    assert pub.waiting == [] and not flow.congested
