"""The shared keep-alive wheel (``server.KeepAliveWheel``): a connection is checked
once its deadline has passed (never before, at most one tick after), removal
forgets it, and one loop timer serves every deadline. Driven by a manual loop
clock: no sleeping, no real timers."""

from __future__ import annotations

from typing import Any

from fluxmq_mqtt.server import KeepAliveWheel


class Handle:
    def __init__(self, when: float, fn: Any, args: tuple) -> None:
        self.when, self.fn, self.args = when, fn, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """``time()`` and ``call_at()`` of an event loop, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, fn: Any, *args: Any) -> Handle:
        h = Handle(when, fn, args)
        self.handles.append(h)
        return h

    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [h for h in self.pending() if h.when <= self.now]
            if not due:
                return
            for h in due:
                h.cancelled = True  # ran
                h.fn(*h.args)


class Proto:
    """What the wheel needs of an MQTTProtocol: its loop and the check."""

    def __init__(self, loop: ManualLoop, wheel: KeepAliveWheel, limit: float) -> None:
        self._loop = loop
        self.wheel = wheel
        self.limit = limit
        self.last_seen = loop.time()
        self.checks: list[float] = []
        self.closed_at: float | None = None

    def _keepalive_check(self) -> None:
        now = self._loop.time()
        self.checks.append(now)
        if now - self.last_seen >= self.limit:
            self.closed_at = now
        else:
            self.wheel.add(self, self.last_seen + self.limit)


def test_checked_after_the_deadline_not_before() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()
    p = Proto(loop, wheel, 1.5)
    wheel.add(p, loop.time() + 1.5)
    loop.advance(1.45)
    assert p.checks == []
    loop.advance(0.1)
    assert p.closed_at is not None
    assert 1.5 <= p.closed_at - 1000.0 <= 1.5 + KeepAliveWheel.RESOLUTION + 0.001
    assert len(wheel) == 0


def test_activity_moves_the_deadline() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()
    p = Proto(loop, wheel, 1.5)
    wheel.add(p, loop.time() + 1.5)
    loop.advance(1.0)
    p.last_seen = loop.time()  # a packet arrived
    loop.advance(0.6)  # the first deadline: checked, still alive, added again
    assert len(p.checks) == 1 and p.closed_at is None
    loop.advance(0.8)  # 1.4 s after the packet
    assert p.closed_at is None
    loop.advance(0.2)
    assert p.closed_at is not None and p.closed_at - p.last_seen >= 1.5


def test_removed_connection_is_not_checked() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()
    a, b = Proto(loop, wheel, 1.0), Proto(loop, wheel, 1.0)
    tick = wheel.add(a, loop.time() + 1.0)
    wheel.add(b, loop.time() + 1.0)
    wheel.remove(a, tick)
    loop.advance(1.2)
    assert a.checks == []
    assert b.closed_at is not None


def test_one_loop_timer_for_many_deadlines() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()
    protos = [Proto(loop, wheel, 5.0 + i * 0.01) for i in range(100)]
    for p in protos:
        wheel.add(p, loop.time() + p.limit)
    assert len(loop.pending()) == 1
    loop.advance(7.0)
    assert all(p.closed_at is not None for p in protos)
    assert loop.pending() == []


def test_an_earlier_deadline_rearms_the_timer() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()
    late, early = Proto(loop, wheel, 10.0), Proto(loop, wheel, 1.0)
    wheel.add(late, loop.time() + 10.0)
    wheel.add(early, loop.time() + 1.0)
    loop.advance(1.2)
    assert early.closed_at is not None and late.checks == []
    loop.advance(9.0)
    assert late.closed_at is not None


def test_a_failing_check_does_not_stop_the_others() -> None:
    loop = ManualLoop()
    wheel = KeepAliveWheel()

    class Broken(Proto):
        conn = "broken"

        def _keepalive_check(self) -> None:
            raise RuntimeError("boom")

    bad = Broken(loop, wheel, 1.0)
    good = Proto(loop, wheel, 1.0)
    later = Proto(loop, wheel, 3.0)
    wheel.add(bad, loop.time() + 1.0)
    wheel.add(good, loop.time() + 1.0)
    wheel.add(later, loop.time() + 3.0)
    loop.advance(1.2)
    assert good.closed_at is not None
    loop.advance(2.0)  # the timer was armed again for the later deadline
    assert later.closed_at is not None
