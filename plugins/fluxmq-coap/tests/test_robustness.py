"""Raw datagrams against the CoAP listener: garbage, truncated options, unknown
critical options, duplicate message ids, and the deregistration paths (Observe=1,
RST to a NON notification, too many unacknowledged CON notifications). Whatever a
peer sends, the listener keeps answering everyone else."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fluxmq_coap.testing import (
    ACK,
    CON,
    NON,
    RST,
    WAIT,
    Collector,
    decode,
    encode,
    path_options,
    uint,
)

from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread

GET, POST = 1, 2
CHANGED, CONTENT, BAD_OPTION, SERVICE_UNAVAILABLE = 0x44, 0x45, 0x82, 0xA3


class Raw:
    """A UDP socket talking bytes to the broker's CoAP port."""

    def __init__(self, broker: BrokerThread) -> None:
        self.addr = ("127.0.0.1", broker.port("coap.bind"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(WAIT)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)

    def recv(self) -> dict[str, Any]:
        data, _ = self.sock.recvfrom(65536)
        return decode(data)

    def recv_until(self, pred: Any) -> dict[str, Any]:
        while True:
            m = self.recv()
            if pred(m):
                return m

    def health(self, mid: int) -> dict[str, Any]:
        """A round trip: proves the listener still serves (and what came before
        this request was handled)."""
        self.send(encode(CON, GET, mid, b"hh", path_options("/health")))
        return self.recv_until(lambda m: m["mid"] == mid and m["mtype"] == ACK)


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    cfg = {
        "coap": {
            "notify_con_every": 2,
            "max_unacked": 2,
            # Departed observers are found fast: 0.5 s, one retransmission.
            "notify_ack_timeout": 0.5,
            "notify_max_retransmit": 1,
        }
    }
    with BrokerThread(plugins=["coap"], config=cfg) as b:
        yield b


@pytest.fixture
def raw(broker: BrokerThread) -> Iterator[Raw]:
    r = Raw(broker)
    yield r
    r.sock.close()


def observers(broker: BrokerThread) -> int:
    return broker.call_soon(lambda: len(broker.context.extras["coap"].observers))


def wait_observers(broker: BrokerThread, n: int, raw: Raw) -> None:
    """Polls (with round trips) until the broker holds ``n`` observers; bounded."""
    deadline = time.monotonic() + 2 * WAIT
    i = 0
    while time.monotonic() < deadline:
        if observers(broker) == n:
            return
        raw.health(0x7000 + (i & 0xFFF))
        i += 1
        time.sleep(0.01)
    raise AssertionError(f"observers stayed at {observers(broker)}, expected {n}")


GARBAGE = [
    b"",
    b"\x00",
    b"\xff" * 3,
    b"\x40",  # truncated header
    b"\x00\x01\x00\x01",  # version 0
    b"\x4f\x01\x00\x01" + b"t" * 15,  # token length 15 (reserved)
    b"\x48\x01\x00\x01abc",  # token shorter than its length
    b"\x40\x01\x00\x01\xd0",  # option delta 13 without its extension byte
    b"\x40\x01\x00\x01\xe1\x00",  # option delta 14 with one extension byte
    b"\x40\x01\x00\x01\xb5ab",  # Uri-Path of length 5, 2 bytes present
    b"\x40\x01\x00\x01\xf0",  # reserved option nibble 15
    b"\x40\x01\x00\x01\xff",  # payload marker with no payload
    b"\x60\x00\x12\x34",  # an ACK for nothing
    b"\x70\x00\x12\x35",  # an RST for nothing
    bytes(range(256)) * 4,
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_stops_the_listener(raw, data):
    raw.send(data)
    assert raw.health(0x100)["code"] == CONTENT


def test_unknown_critical_option_is_4_02(raw):
    opts = path_options("/ps/a") + [(2049, b"x")]
    raw.send(encode(CON, POST, 0x200, b"t1", opts, b"p"))
    m = raw.recv_until(lambda m: m["mid"] == 0x200)
    assert m["code"] == BAD_OPTION and b"2049" in m["payload"]
    # An unknown elective option is ignored.
    opts = path_options("/ps/a") + [(2050, b"x")]
    raw.send(encode(CON, POST, 0x201, b"t2", opts, b"p"))
    assert raw.recv_until(lambda m: m["mid"] == 0x201)["code"] == CHANGED


def test_duplicate_message_id_is_processed_once(raw, broker):
    got = Collector()
    broker.call_soon(broker.context.router.subscribe, got, "dup/t")
    datagram = encode(CON, POST, 0x300, b"dd", path_options("/ps/dup/t"), b"once")
    raw.send(datagram)
    first = raw.recv_until(lambda m: m["mid"] == 0x300)
    raw.send(datagram)
    second = raw.recv_until(lambda m: m["mid"] == 0x300)
    assert first == second and first["code"] == CHANGED
    raw.health(0x301)
    assert [m.payload for m in got.messages] == [b"once"]


def register(raw: Raw, token: bytes, mid: int, path: str) -> dict[str, Any]:
    raw.send(encode(CON, GET, mid, token, [(6, b"")] + path_options(path)))
    return raw.recv_until(lambda m: m["mid"] == mid)


def test_observe_1_deregisters(raw, broker):
    before = observers(broker)
    assert register(raw, b"o1", 0x400, "/ps/raw/o1")["code"] == CONTENT
    assert observers(broker) == before + 1
    raw.send(encode(CON, GET, 0x401, b"o1", [(6, uint(1))] + path_options("/ps/raw/o1")))
    assert raw.recv_until(lambda m: m["mid"] == 0x401)["code"] == CONTENT
    wait_observers(broker, before, raw)


def test_rst_to_a_non_notification_deregisters(raw, broker):
    before = observers(broker)
    register(raw, b"o2", 0x500, "/ps/raw/o2")
    broker.call_soon(broker.context.publish, Message("raw/o2", b"n1"))
    n = raw.recv_until(lambda m: m["token"] == b"o2")
    assert n["mtype"] == NON and n["payload"] == b"n1"
    raw.send(encode(RST, 0, n["mid"]))
    wait_observers(broker, before, raw)


def test_unacknowledged_con_notification_ends_the_observation(raw, broker):
    before = observers(broker)
    register(raw, b"o3", 0x600, "/ps/raw/o3")
    for i in range(2):  # the 2nd notification is CON; it is never acknowledged
        broker.call_soon(broker.context.publish, Message("raw/o3", b"%d" % i))
    con = raw.recv_until(lambda m: m["token"] == b"o3" and m["mtype"] == CON)
    again = raw.recv_until(lambda m: m["token"] == b"o3" and m["mtype"] == CON)
    assert again["mid"] == con["mid"]  # retransmitted (notify_ack_timeout), then given up
    wait_observers(broker, before, raw)


def server_observer(broker: BrokerThread, topic_filter: str) -> Any:
    for obs in list(broker.context.extras["coap"].observers.values()):
        if obs.filter == topic_filter:
            return obs
    raise AssertionError(f"no observer of {topic_filter!r}")


def test_a_confirmable_notification_waits_for_the_previous_ack(raw, broker):
    before = observers(broker)
    register(raw, b"o5", 0x800, "/ps/raw/o5")
    obs = server_observer(broker, "raw/o5")
    for i in range(12):  # CON every 2nd notification: 0 NON, 1 CON, 2 NON, 3 CON...
        broker.call_soon(broker.context.publish, Message("raw/o5", b"%d" % i))
    got, cons = [], []
    while len(got) < 3:
        m = raw.recv_until(lambda m: m["token"] == b"o5" and m["mid"] not in cons)
        got.append(m["payload"])
        if m["mtype"] == CON:
            cons.append(m["mid"])
    assert got == [b"0", b"1", b"2"] and len(cons) == 1
    # "3" is confirmable and waits for the ACK of "1": the broker holds it queued.
    assert broker.call_soon(lambda: len(obs.pending)) == 9
    assert broker.call_soon(lambda: len(obs.unacked)) == 1
    raw.send(encode(ACK, 0, cons[0]))
    rest = []
    while len(rest) < 9:
        m = raw.recv_until(lambda m: m["token"] == b"o5" and m["mid"] not in cons)
        rest.append(m["payload"])
        if m["mtype"] == CON:
            cons.append(m["mid"])
            raw.send(encode(ACK, 0, m["mid"]))
    assert rest == [b"%d" % i for i in range(3, 12)]  # in order, none lost
    raw.send(encode(CON, GET, 0x801, b"o5", [(6, uint(1))] + path_options("/ps/raw/o5")))
    raw.recv_until(lambda m: m["mid"] == 0x801)
    wait_observers(broker, before, raw)


def test_acked_con_notifications_keep_the_observation(raw, broker):
    before = observers(broker)
    register(raw, b"o4", 0x700, "/ps/raw/o4")
    seen = []
    for i in range(8):
        broker.call_soon(broker.context.publish, Message("raw/o4", b"%d" % i))
        n = raw.recv_until(lambda m: m["token"] == b"o4")
        assert n["code"] == CONTENT
        seen.append(n["mtype"])
        if n["mtype"] == CON:
            raw.send(encode(ACK, 0, n["mid"]))
    assert seen.count(CON) == 4 and seen.count(NON) == 4
    assert observers(broker) == before + 1
    raw.send(encode(CON, GET, 0x701, b"o4", [(6, uint(1))] + path_options("/ps/raw/o4")))
    raw.recv_until(lambda m: m["mid"] == 0x701)
    wait_observers(broker, before, raw)


def test_non_utf8_string_option_is_a_counted_protocol_error(raw, broker):
    before = broker.call_soon(lambda: broker.context.stats.protocol_errors)
    raw.send(b"\x40\x01\x00\x09\xb2\xff\xfe")  # Uri-Path of two bytes that are not UTF-8
    raw.health(0x900)
    assert broker.call_soon(lambda: broker.context.stats.protocol_errors) == before + 1
