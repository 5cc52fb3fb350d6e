"""The sans-IO connection state machine driven frame by frame with our codec as the
client, against a recording environment: SASL, flow control (link credit, drain,
session windows), multi-frame transfers both ways, settlement, error conditions,
idle time-out. No sockets, no event loop, no sleeps."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import fluxmq_amqp1
import pytest
from fluxmq_amqp1.codec.composites import (
    Accepted,
    AmqpValue,
    Attach,
    Begin,
    Close,
    Data,
    Detach,
    Disposition,
    End,
    Flow,
    Modified,
    Open,
    Rejected,
    Released,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Target,
    Transfer,
)
from fluxmq_amqp1.codec.frames import AMQP_HEADER, SASL_HEADER, FrameReader, Header8, encode_frame
from fluxmq_amqp1.codec.message import AMQPMessage, encode_message
from fluxmq_amqp1.codec.types import AMQPError
from fluxmq_amqp1.config import AMQP1Config
from fluxmq_amqp1.connection import Connection, Phase
from fluxmq_amqp1.delivery import CHUNK_COST
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxmq_core.contracts import AuthResult


class Env:
    """Records what the connection asks of the broker side."""

    def __init__(self, **cfg: Any) -> None:
        self.cfg = AMQP1Config(**cfg)
        self.container_id = "broker"
        self.published: list[tuple[Any, bytes, bool]] = []
        self.pending: list[Any] = []
        self.hold = False
        self.settled: list[tuple[Any, Any]] = []
        self.detached: list[Any] = []
        self.refuse: AMQPError | None = None
        self.acl_wait: Any = None

    def authorize(self, conn: Connection, link: Any) -> Any:
        return self.acl_wait

    def attach(self, conn: Connection, link: Any) -> Any:
        if self.refuse is not None:
            raise self.refuse
        link.node = object()
        return link.attach.source if link.outgoing else link.attach.target

    def publish(
        self,
        conn: Any,
        link: Any,
        message: Any,
        raw: bytes,
        settled: bool,
        done: Any,
        state: Any = None,
    ) -> None:
        self.published.append((message, raw, settled))
        if self.hold:
            self.pending.append(done)
        else:
            done(Accepted())

    def settle(self, conn: Any, link: Any, token: Any, state: Any) -> None:
        self.settled.append((token, state))

    def credit(self, conn: Any, link: Any) -> None:
        pass

    def detach(self, conn: Any, link: Any) -> None:
        self.detached.append(link)


class Client:
    """Feeds frames to a Connection and reads back what it wrote."""

    def __init__(self, env: Env, remote: str = "127.0.0.1:5000") -> None:
        self.env = env
        self.conn = Connection(env, remote)
        self.reader = FrameReader()
        self.now = 0.0

    def send(self, perf: Any, channel: int = 0, payload: bytes = b"", type: int = 0) -> None:
        self.conn.receive(encode_frame(channel, perf, payload, type), self.now)

    def read(self) -> list[Any]:
        self.reader.feed(bytes(self.conn.out))
        self.conn.out.clear()
        out = []
        while (f := self.reader.next_frame()) is not None:
            out.append(f.raw if isinstance(f, Header8) else f.body)
        return out

    def login(self, ok: bool = True) -> None:
        self.conn.receive(AMQP_HEADER, self.now)
        assert self.conn.waiting is not None
        self.conn.auth_done(AuthResult(ok=ok, reason="" if ok else "nope"))
        self.conn.process()

    def open(
        self, max_frame_size: int = 65536, idle: int | None = None, window: int = 1000
    ) -> None:
        self.login()
        self.send(Open(container_id="client", max_frame_size=max_frame_size, idle_time_out=idle))
        self.send(Begin(next_outgoing_id=0, incoming_window=window, outgoing_window=1000))
        got = self.read()
        assert got[0] == AMQP_HEADER and isinstance(got[1], Open) and isinstance(got[2], Begin)

    def receiver(self, handle: int = 0, address: str = "q", settle_mode: int = 0) -> Any:
        """Attach a link on which the broker sends (we are the receiver)."""
        self.send(
            Attach(
                name=f"r{handle}",
                handle=handle,
                role=True,
                snd_settle_mode=settle_mode,
                source=Source(address=address),
                target=Target(),
            )
        )
        (reply,) = self.read()
        assert isinstance(reply, Attach) and reply.role is False
        s = self.conn.sessions[0]
        return s.links[handle]

    def sender(self, handle: int = 1, address: str = "q") -> Any:
        self.send(
            Attach(
                name=f"s{handle}",
                handle=handle,
                role=False,
                source=Source(),
                target=Target(address=address),
                initial_delivery_count=0,
            )
        )
        reply, flow = self.read()
        assert isinstance(reply, Attach) and reply.role is True
        assert isinstance(flow, Flow) and flow.link_credit == self.env.cfg.link_credit
        return self.conn.sessions[0].links[handle]

    def flow(
        self,
        handle: int,
        credit: int,
        delivery_count: int = 0,
        drain: bool = False,
        window: int = 1000,
    ) -> None:
        self.send(
            Flow(
                next_incoming_id=0,
                incoming_window=window,
                next_outgoing_id=0,
                outgoing_window=1000,
                handle=handle,
                delivery_count=delivery_count,
                link_credit=credit,
                drain=drain,
            )
        )


def message(body: bytes = b"x") -> bytes:
    return encode_message(AMQPMessage([Data(body)]))


# --- SASL and login --------------------------------------------------------------------------


def test_sasl_plain_goes_through_the_auth_service() -> None:
    c = Client(Env(), remote="10.1.2.3:4000")
    c.conn.receive(SASL_HEADER)
    hdr, mechs = c.read()
    assert hdr == SASL_HEADER and isinstance(mechs, SaslMechanisms)
    assert "PLAIN" in mechs.sasl_server_mechanisms and "ANONYMOUS" in mechs.sasl_server_mechanisms
    c.send(SaslInit(mechanism="PLAIN", initial_response=b"\0alice\0secret"), type=1)
    req = c.conn.waiting.request
    assert (req.username, req.password, req.remote) == ("alice", b"secret", "10.1.2.3:4000")
    assert req.local is False  # the anonymous policy sees a remote peer
    c.conn.auth_done(AuthResult(ok=True, username="alice"))
    (outcome,) = c.read()
    assert outcome == SaslOutcome(code=0)
    c.reader.expect_header = True
    c.conn.receive(AMQP_HEADER)
    assert c.read() == [AMQP_HEADER]
    c.send(Open(container_id="x"))
    (o,) = c.read()
    assert isinstance(o, Open) and c.conn.opened and c.conn.username == "alice"


def test_sasl_refused_login_is_outcome_auth_and_close() -> None:
    c = Client(Env())
    c.conn.receive(SASL_HEADER)
    c.read()
    c.send(SaslInit(mechanism="ANONYMOUS"), type=1)
    assert c.conn.waiting.request.username is None
    c.conn.auth_done(AuthResult(ok=False, reason="anonymous refused"))
    assert c.read() == [SaslOutcome(code=1)]
    assert c.conn.closing


def test_unknown_sasl_mechanism_is_refused() -> None:
    c = Client(Env())
    c.conn.receive(SASL_HEADER)
    c.read()
    c.send(SaslInit(mechanism="CRAM-MD5", initial_response=b"x"), type=1)
    assert c.read() == [SaslOutcome(code=1)] and c.conn.closing


def test_no_sasl_refused_login_closes_after_open() -> None:
    c = Client(Env())
    c.login(ok=False)
    c.send(Open(container_id="c"))
    got = c.read()
    assert isinstance(got[1], Open) and isinstance(got[2], Close)
    assert got[2].error.condition == "amqp:unauthorized-access"
    assert c.conn.closing and not c.conn.opened


def test_wrong_protocol_header_is_answered_and_closed() -> None:
    c = Client(Env())
    c.conn.receive(b"AMQP\x00\x00\x09\x01")
    assert c.read() == [AMQP_HEADER] and c.conn.closing
    c = Client(Env())
    c.conn.receive(b"AMQP\x02\x01\x00\x00")  # in-band TLS: not spoken here
    assert c.read() == [SASL_HEADER] and c.conn.closing


# --- links: credit, drain, windows -----------------------------------------------------------


def test_outgoing_deliveries_wait_for_credit_and_drain_spends_the_rest() -> None:
    c = Client(Env())
    c.open()
    link = c.receiver(0)
    for i in range(3):
        c.conn.send(link, message(b"%d" % i), token=i)
    assert c.read() == []  # no credit yet
    c.flow(0, credit=2)
    got = c.read()
    assert [type(f) for f in got] == [Transfer, Transfer]
    assert [f.delivery_id for f in got] == [0, 1]
    c.flow(0, credit=5, delivery_count=2, drain=True)
    got = c.read()
    assert isinstance(got[0], Transfer)
    flow = got[-1]
    assert isinstance(flow, Flow) and flow.link_credit == 0 and flow.delivery_count == 3 + 4


def test_session_window_holds_outgoing_transfers() -> None:
    c = Client(Env())
    c.login()
    c.send(Open(container_id="c"))
    c.send(Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=10))
    c.read()
    link = c.receiver(0)
    c.flow(0, credit=10, window=1)
    c.conn.send(link, message(), 0)
    c.conn.send(link, message(), 1)
    assert [type(f) for f in c.read()] == [Transfer]
    c.send(Flow(next_incoming_id=1, incoming_window=5, next_outgoing_id=0, outgoing_window=10))
    assert [type(f) for f in c.read()] == [Transfer]


def test_outgoing_message_is_split_to_the_peers_frame_size() -> None:
    c = Client(Env())
    c.open(max_frame_size=512)
    link = c.receiver(0)
    c.flow(0, credit=1)
    payload = message(bytes(range(256)) * 8)
    c.conn.send(link, payload, 0)
    got = c.read()
    assert len(got) > 4 and all(isinstance(f, Transfer) for f in got)
    assert [f.more for f in got] == [True] * (len(got) - 1) + [False]
    assert got[0].delivery_id == 0 and all(f.delivery_id is None for f in got[1:])


def test_presettled_link_sends_settled_and_keeps_nothing() -> None:
    c = Client(Env())
    c.open()
    link = c.receiver(0, settle_mode=1)
    c.flow(0, credit=1)
    c.conn.send(link, message(), "tok")
    (t,) = c.read()
    assert t.settled is True and not c.conn.sessions[0].unsettled


@pytest.mark.parametrize(
    "state",
    [Accepted(), Rejected(), Released(), Modified(delivery_failed=True, undeliverable_here=True)],
    ids=lambda s: type(s).__name__,
)
def test_receiver_outcomes_reach_the_environment(state: Any) -> None:
    env = Env()
    c = Client(env)
    c.open()
    link = c.receiver(0)
    c.flow(0, credit=2)
    c.conn.send(link, message(), "a")
    c.conn.send(link, message(), "b")
    c.read()
    c.send(Disposition(role=True, first=0, last=1, settled=True, state=state))
    assert env.settled == [("a", state), ("b", state)]
    assert not c.conn.sessions[0].unsettled


def test_unsettled_outcome_is_settled_by_the_broker() -> None:
    env = Env()
    c = Client(env)
    c.open()
    link = c.receiver(0)
    c.flow(0, credit=1)
    c.conn.send(link, message(), "a")
    c.read()
    c.send(Disposition(role=True, first=0, settled=False, state=Accepted()))
    (d,) = c.read()
    assert isinstance(d, Disposition) and d.settled and d.role is False
    assert env.settled == [("a", Accepted())]


def test_detach_releases_unsettled_deliveries() -> None:
    env = Env()
    c = Client(env)
    c.open()
    link = c.receiver(0)
    c.flow(0, credit=1)
    c.conn.send(link, message(), "a")
    c.read()
    c.send(Detach(handle=0, closed=True))
    assert env.settled == [("a", Released())] and env.detached == [link]
    (d,) = c.read()
    assert isinstance(d, Detach) and d.closed


# --- receiving ---------------------------------------------------------------------------


def test_incoming_multi_frame_delivery_and_durable_settlement() -> None:
    env = Env()
    env.hold = True
    c = Client(env)
    c.open()
    c.sender(1)
    raw = encode_message(AMQPMessage([AmqpValue("hello " * 100)]))
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"t", more=True), payload=raw[:100])
    c.send(Transfer(handle=1, more=True), payload=raw[100:300])
    assert env.published == []
    c.send(Transfer(handle=1, more=False), payload=raw[300:])
    assert len(env.published) == 1 and env.published[0][1] == raw
    assert c.read() == []  # not settled before the append is durable
    env.pending.pop()(Accepted())
    (d,) = c.read()
    assert d == Disposition(role=True, first=0, settled=True, state=Accepted())


def test_settlements_of_a_batch_are_one_ranged_disposition_in_order() -> None:
    env = Env()
    env.hold = True
    c = Client(env)
    c.open()
    c.sender(1)
    for i in range(9):
        c.send(Transfer(handle=1, delivery_id=i, delivery_tag=bytes([i])), payload=message())
    assert c.read() == []  # nothing settled before the appends are durable
    done = list(env.pending)
    for i in (0, 1, 2):
        done[i](Accepted())
    done[3](Rejected())
    for i in (4, 5):
        done[i](Accepted())
    done[7](Accepted())  # not adjacent to 5: a frame of its own
    done[6](Accepted())  # before 7, but written after it
    assert c.read() == [
        Disposition(role=True, first=0, last=2, settled=True, state=Accepted()),
        Disposition(role=True, first=3, settled=True, state=Rejected()),
        Disposition(role=True, first=4, last=5, settled=True, state=Accepted()),
        Disposition(role=True, first=7, settled=True, state=Accepted()),
        Disposition(role=True, first=6, settled=True, state=Accepted()),
    ]
    # what was read (written) is never widened: the next one is a frame of its own
    done[8](Accepted())
    assert c.read() == [Disposition(role=True, first=8, settled=True, state=Accepted())]


def test_a_frame_between_two_settlements_keeps_them_apart() -> None:
    env = Env(link_credit=4)
    env.hold = True
    c = Client(env)
    c.open()
    c.sender(1)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a"), payload=message())
    env.pending[0](Accepted())
    c.send(Transfer(handle=1, delivery_id=1, delivery_tag=b"b"), payload=message())  # refill
    env.pending[1](Accepted())
    got = c.read()
    assert [type(f).__name__ for f in got] == ["Disposition", "Flow", "Disposition"]
    assert (got[0].first, got[0].last, got[2].first, got[2].last) == (0, None, 1, None)


def test_aborted_and_presettled_deliveries() -> None:
    env = Env()
    c = Client(env)
    c.open()
    c.sender(1)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a", more=True), payload=b"\x00\x53")
    c.send(Transfer(handle=1, aborted=True))
    assert env.published == []
    c.send(Transfer(handle=1, delivery_id=1, delivery_tag=b"b", settled=True), payload=message())
    assert len(env.published) == 1 and env.published[0][2] is True
    assert c.read() == []  # pre-settled: no disposition


def test_malformed_message_is_rejected_with_decode_error() -> None:
    env = Env()
    c = Client(env)
    c.open()
    c.sender(1)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a"), payload=b"\xa1\x05ab")
    (d,) = c.read()
    assert isinstance(d.state, Rejected) and d.state.error.condition == "amqp:decode-error"
    assert env.published == [] and c.conn.phase is Phase.OPENED


def test_message_too_large_detaches_the_link() -> None:
    env = Env(max_message_size=1000)
    c = Client(env)
    c.open()
    c.sender(1)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a", more=True), payload=b"x" * 800)
    c.send(Transfer(handle=1, more=True), payload=b"x" * 800)
    (d,) = c.read()
    assert isinstance(d, Detach) and d.error.condition == "amqp:link:message-size-exceeded"


def test_partial_deliveries_are_bounded_per_connection() -> None:
    """Every link stays under max-message-size, but together they pass
    [amqp1] max_reassembly: the connection closes with resource-limit-exceeded."""
    env = Env(max_message_size=1000, max_reassembly=2000)
    c = Client(env)
    c.open()
    for h in (1, 2, 3):
        c.sender(h)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a", more=True), payload=b"x" * 900)
    c.send(Transfer(handle=2, delivery_id=1, delivery_tag=b"b", more=True), payload=b"x" * 900)
    assert c.conn.reassembling == 1800 + 2 * CHUNK_COST and c.read() == []
    c.send(Transfer(handle=3, delivery_id=2, delivery_tag=b"c", more=True), payload=b"x" * 900)
    got = c.read()
    close = got[-1]
    assert isinstance(close, Close) and close.error.condition == "amqp:resource-limit-exceeded"
    assert "max_reassembly" in close.error.description
    assert c.conn.closing and c.conn.reassembling == 0  # the links' partials were dropped


def test_tiny_frames_count_what_they_cost() -> None:
    """1-byte frames: the bound counts each frame's overhead, not only its byte."""
    env = Env(max_reassembly=10 * (1 + CHUNK_COST))
    c = Client(env)
    c.open()
    c.sender(1)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a", more=True), payload=b"x")
    for _ in range(9):
        c.send(Transfer(handle=1, more=True), payload=b"x")
    assert c.conn.reassembling == 10 * (1 + CHUNK_COST) and not c.conn.closing
    c.send(Transfer(handle=1, more=True), payload=b"x")
    (close,) = c.read()[-1:]
    assert isinstance(close, Close) and close.error.condition == "amqp:resource-limit-exceeded"


def test_finished_aborted_and_detached_partials_give_their_bytes_back() -> None:
    env = Env(max_reassembly=1100)
    c = Client(env)
    c.open()
    c.sender(1)
    c.sender(2)
    raw = message(b"y" * 700)
    c.send(Transfer(handle=1, delivery_id=0, delivery_tag=b"a", more=True), payload=raw[:600])
    c.send(Transfer(handle=1, more=False), payload=raw[600:])  # complete: 600 back
    assert c.conn.reassembling == 0 and len(env.published) == 1
    c.send(Transfer(handle=2, delivery_id=1, delivery_tag=b"b", more=True), payload=b"x" * 900)
    c.send(Transfer(handle=2, aborted=True))  # aborted: 900 back
    assert c.conn.reassembling == 0
    c.send(Transfer(handle=1, delivery_id=2, delivery_tag=b"c", more=True), payload=b"x" * 900)
    c.send(Detach(handle=1, closed=True))  # detached mid-delivery: 900 back
    assert c.conn.reassembling == 0
    c.send(Transfer(handle=2, delivery_id=3, delivery_tag=b"d", more=True), payload=b"x" * 950)
    assert c.conn.reassembling == 950 + CHUNK_COST and not c.conn.closing
    c.read()


def test_a_performative_too_large_for_the_peer_is_frame_size_too_small() -> None:
    """The peer allows 512-byte frames; our attach echoing its long source would
    not fit, so the connection closes with amqp:frame-size-too-small instead."""
    env = Env()
    c = Client(env)
    c.open(max_frame_size=512)
    c.send(
        Attach(
            name="big",
            handle=0,
            role=True,
            source=Source(address="q/" + "a" * 400),
            target=Target(address="t/" + "b" * 400),
        )
    )
    got = c.read()
    assert [type(f) for f in got] == [Close]
    assert got[0].error.condition == "amqp:frame-size-too-small"
    assert "max-frame-size 512" in got[0].error.description
    assert c.conn.closing


def test_credit_is_topped_up() -> None:
    env = Env(link_credit=4)
    c = Client(env)
    c.open()
    c.sender(1)
    for i in range(3):
        c.send(
            Transfer(handle=1, delivery_id=i, delivery_tag=b"%d" % i, settled=True),
            payload=message(),
        )
    flows = [f for f in c.read() if isinstance(f, Flow)]
    assert flows and flows[-1].link_credit == 4


# --- errors ------------------------------------------------------------------------------------


def test_refused_attach_answers_null_terminus_then_detach() -> None:
    env = Env()
    env.refuse = AMQPError("amqp:not-implemented", "dynamic nodes are not implemented yet")
    c = Client(env)
    c.open()
    c.send(Attach(name="x", handle=0, role=True, source=Source(dynamic=True), target=Target()))
    attach, detach = c.read()
    assert isinstance(attach, Attach) and attach.source is None
    assert (
        detach.error.condition == "amqp:not-implemented" and "dynamic" in detach.error.description
    )
    c.send(Detach(handle=0, closed=True))  # the client's answer is swallowed
    assert c.read() == [] and c.conn.phase is Phase.OPENED


def test_attach_waits_for_an_uncached_acl_decision() -> None:
    env = Env()
    env.acl_wait = "ask"
    c = Client(env)
    c.open()
    c.send(Attach(name="a", handle=0, role=False, target=Target(address="t")))
    c.send(Attach(name="b", handle=1, role=False, target=Target(address="u")))
    assert c.conn.waiting == "ask" and c.read() == []  # the second attach waits too
    link = c.conn.sessions[0].links[0]
    c.conn.authorized(link, False, "not authorized to publish 't'")
    attach, detach = c.read()
    assert attach.target is None and detach.error.condition == "amqp:unauthorized-access"
    env.acl_wait = None
    c.conn.process()  # the buffered second attach goes on
    attach, flow = c.read()
    assert isinstance(attach, Attach) and attach.target.address == "u" and isinstance(flow, Flow)


def test_session_errors_end_the_session_only() -> None:
    c = Client(Env())
    c.open()
    c.send(Transfer(handle=7, delivery_id=0, delivery_tag=b"a"), payload=message())
    (e,) = c.read()
    assert isinstance(e, End) and e.error.condition == "amqp:session:unattached-handle"
    assert c.conn.phase is Phase.OPENED
    c.send(Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10), channel=1)
    c.read()
    c.send(Attach(name="a", handle=0, role=False, target=Target(address="q")), channel=1)
    c.read()
    c.send(Attach(name="b", handle=0, role=False, target=Target(address="q")), channel=1)
    (e,) = c.read()
    assert e.error.condition == "amqp:session:handle-in-use"


def test_frames_before_open_and_malformed_frames_close_the_connection() -> None:
    c = Client(Env())
    c.login()
    c.send(Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1))
    got = c.read()
    assert isinstance(got[-1], Close) and got[-1].error.condition == "amqp:not-allowed"
    c = Client(Env())
    c.open()
    c.conn.receive(b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x10\x99")
    (close,) = c.read()
    assert close.error.condition == "amqp:decode-error" and c.conn.closing


def test_idle_timeout_heartbeats_and_close() -> None:
    c = Client(Env(idle_timeout=10))
    c.open(idle=4000)
    c.conn.last_sent = 0.0
    assert c.conn.tick(2.5)
    assert c.conn.out == b"\x00\x00\x00\x08\x02\x00\x00\x00"  # an empty frame
    c.conn.out.clear()
    assert not c.conn.tick(10.5)
    (close,) = c.read()
    assert close.error.condition == "amqp:resource-limit-exceeded"


def test_close_is_answered() -> None:
    env = Env()
    c = Client(env)
    c.open()
    link = c.receiver(0)
    c.send(Close())
    assert c.read() == [Close()] and c.conn.closing and env.detached == [link]


def test_sans_io_modules_do_not_import_asyncio() -> None:
    root = Path(fluxmq_amqp1.__file__).parent
    names = [
        "connection.py",
        "endpoints.py",
        "sessions.py",
        "links.py",
        "delivery.py",
        "state.py",
        "mapping.py",
        *(f"codec/{p.name}" for p in (root / "codec").glob("*.py")),
    ]
    for name in names:
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "asyncio" for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "asyncio", name
            elif isinstance(node, ast.Await | ast.AsyncFunctionDef):
                raise AssertionError(f"{name} awaits (line {node.lineno})")


# --- fuzz: any frame sequence after open ends in frames, never in an exception --------------


_small = st.integers(0, 5)
_perfs = st.one_of(
    st.builds(
        Begin,
        remote_channel=st.none() | _small,
        next_outgoing_id=_small,
        incoming_window=_small,
        outgoing_window=_small,
        handle_max=_small,
    ),
    st.builds(
        Attach,
        name=st.sampled_from(["a", "b"]),
        handle=_small,
        role=st.booleans(),
        snd_settle_mode=st.integers(0, 3),
        source=st.just(Source(address="q")),
        target=st.just(Target(address="q")),
    ),
    st.builds(
        Flow,
        next_incoming_id=st.none() | _small,
        incoming_window=_small,
        next_outgoing_id=_small,
        outgoing_window=_small,
        handle=st.none() | _small,
        delivery_count=st.none() | _small,
        link_credit=st.none() | _small,
        drain=st.booleans(),
        echo=st.booleans(),
    ),
    st.builds(
        Transfer,
        handle=_small,
        delivery_id=st.none() | _small,
        delivery_tag=st.none() | st.just(b"t"),
        settled=st.none() | st.booleans(),
        more=st.booleans(),
        aborted=st.booleans(),
    ),
    st.builds(
        Disposition,
        role=st.booleans(),
        first=_small,
        last=st.none() | _small,
        settled=st.booleans(),
        state=st.sampled_from([None, Accepted(), Released()]),
    ),
    st.builds(Detach, handle=_small, closed=st.booleans()),
    st.just(End()),
    st.just(Open(container_id="again")),
    # a terminus too large to echo within a 512-byte max-frame-size
    st.builds(
        Attach,
        name=st.sampled_from(["c", "d"]),
        handle=_small,
        role=st.booleans(),
        source=st.builds(Source, address=st.text(min_size=200, max_size=400)),
        target=st.builds(Target, address=st.text(min_size=200, max_size=400)),
        initial_delivery_count=st.just(0),
    ),
)


def frame_sizes(out: bytes) -> list[int]:
    """The sizes of the frames in ``out`` (after the protocol header, if any)."""
    sizes = []
    i = 8 if out[:4] == b"AMQP" else 0
    while i + 4 <= len(out):
        size = int.from_bytes(out[i : i + 4], "big")
        sizes.append(size)
        i += size
    return sizes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 2), _perfs, st.binary(max_size=20)), max_size=12),
    st.sampled_from([512, 65536]),
)
def test_state_machine_survives_any_frame_sequence(frames: list[Any], peer_max: int) -> None:
    """Any frame sequence after open ends in frames, never an exception, and no
    frame we write exceeds the peer's max-frame-size."""
    env = Env()
    c = Client(env)
    c.open(max_frame_size=peer_max)
    link = None
    for channel, perf, payload in frames:
        c.send(perf, channel=channel, payload=payload if isinstance(perf, Transfer) else b"")
        s = c.conn.sessions.get(0)
        if s is not None and link is None:
            link = next((lk for lk in s.links.values() if lk.outgoing), None)
            if link is not None:
                c.conn.send(link, message(b"y" * 600), "tok")
        assert all(size <= peer_max for size in frame_sizes(bytes(c.conn.out)))
        c.read()  # what it wrote always decodes
        if c.conn.closing:
            break


_transfers = st.lists(
    st.tuples(
        st.integers(1, 3),  # handle
        st.integers(0, 300),  # payload size
        st.booleans(),  # more
        st.booleans(),  # aborted
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_transfers, st.integers(1, 900))
def test_reassembly_bound_holds_for_any_transfer_sequence(frames: list[Any], cap: int) -> None:
    """Interleaved, aborted and unfinished multi-frame deliveries on several links:
    the bytes held are exactly what the links' partial deliveries hold, never more
    than the cap; passing it closes with resource-limit-exceeded, nothing raises."""
    env = Env(max_reassembly=cap, max_message_size=600)
    c = Client(env)
    c.open()
    for h in (1, 2, 3):
        c.sender(h)
    did = 0
    for handle, size, more, aborted in frames:
        s = c.conn.sessions.get(0)
        link = s.links.get(handle) if s is not None else None
        first = link is not None and link.partial is None
        t = Transfer(handle=handle, more=more, aborted=aborted)
        if first:
            t.delivery_id, t.delivery_tag = did, did.to_bytes(4, "big")
            did += 1
        c.send(t, payload=b"\x00" * size)
        got = c.read()
        conn = c.conn
        if conn.closing:
            assert isinstance(got[-1], Close)
            assert got[-1].error.condition == "amqp:resource-limit-exceeded"
            assert conn.reassembling == 0
            return
        held = sum(
            lk.partial.held for lk in conn.sessions[0].links.values() if lk.partial is not None
        )
        assert conn.reassembling == held <= cap
