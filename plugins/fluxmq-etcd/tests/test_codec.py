"""The Message / session codec: lossless round trips (hypothesis) through the real
protobuf wire form, and clear errors for what cannot cross nodes."""

from __future__ import annotations

import datetime
import enum
import math
import subprocess
import sys
from typing import Any

import pytest
from fluxmq_etcd.codec import (
    MAX_DEPTH,
    CodecError,
    SessionSnapshot,
    forward_batch_from_proto,
    forward_batch_to_proto,
    inflight_from_proto,
    inflight_to_proto,
    message_from_proto,
    message_to_proto,
    pb,
    session_from_proto,
    session_to_proto,
    struct_from_proto,
    struct_to_proto,
    value_from_proto,
    value_to_proto,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxmq_core.message import Message
from fluxmq_core.testing.conformance import sample_message

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.none() | st.booleans() | st.integers() | FLOATS | st.text() | st.binary()
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PROPERTIES = st.none() | st.dictionaries(st.text(max_size=8), VALUES, max_size=5)
USER_PROPS = st.none() | st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=5)
PAYLOADS = st.binary(max_size=64) | st.binary(min_size=60_000, max_size=70_000)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        draw(st.text()),
        draw(PAYLOADS),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        properties=draw(PROPERTIES),
        user_properties=draw(USER_PROPS),
        content_type=draw(st.none() | st.text()),
        correlation_data=draw(st.none() | st.binary(max_size=32)),
        response_topic=draw(st.none() | st.text()),
        payload_format=draw(st.none() | INT64),
        expires_at=draw(st.none() | FINITE),
        origin_protocol=draw(st.text(max_size=8)),
        origin_client=draw(st.text()),
        timestamp=draw(FINITE),
    )


def wire(p: Any) -> Any:
    """Through the bytes a peer would receive."""
    return type(p).FromString(p.SerializeToString())


def plain(value: Any) -> Any:
    """What a value is expected to come back as: tuples as lists."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@given(VALUES)
def test_value_round_trip(value: Any) -> None:
    assert value_from_proto(wire(value_to_proto(value))) == value


@given(messages())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_message_round_trip(message: Message) -> None:
    back = message_from_proto(wire(message_to_proto(message)))
    assert back == message
    # None and empty stay apart (Message.__eq__ compares to_dict, which keeps them).
    assert (back.properties is None) == (message.properties is None)
    assert (back.user_properties is None) == (message.user_properties is None)
    assert type(back.payload) is bytes


def test_every_field_of_a_full_message() -> None:
    m = sample_message(3)
    back = message_from_proto(wire(message_to_proto(m)))
    assert back.to_dict() == m.to_dict()
    assert back.properties == {"priority": 3, "nested": {"tags": ["a", "b"], "raw": b"\x00\xff"}}


def test_empty_message_keeps_nones_and_empties() -> None:
    m = Message("t", timestamp=0.0)
    p = message_to_proto(m)
    for name in ("properties", "user_properties", "content_type", "expires_at", "payload_format"):
        assert not p.HasField(name), name
    e = Message("", b"", properties={}, user_properties=[], content_type="", correlation_data=b"")
    back = message_from_proto(wire(message_to_proto(e)))
    assert back.properties == {} and back.user_properties == []
    assert back.content_type == "" and back.correlation_data == b""
    assert back.response_topic is None and back.expires_at is None


def test_big_payload_and_big_ints() -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB
    m = Message("big", payload, properties={"huge": 2**100, "neg": -(2**70), "t": (1, (2,))})
    back = message_from_proto(wire(message_to_proto(m)))
    assert back.payload == payload
    assert back.properties == {"huge": 2**100, "neg": -(2**70), "t": [1, [2]]}


def test_key_order_survives() -> None:
    d = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    back = struct_from_proto(wire(struct_to_proto(d)))
    assert list(back) == ["z", "a", "m"] and list(back["m"]) == ["y", "b"]


def test_infinities_and_nan() -> None:
    back = value_from_proto(wire(value_to_proto([math.inf, -math.inf, math.nan])))
    assert back[:2] == [math.inf, -math.inf] and math.isnan(back[2])


def test_cache_converts_once_per_message() -> None:
    m = Message("t", b"x")
    first = message_to_proto(m, cache=True)
    assert message_to_proto(m, cache=True) is first
    assert message_to_proto(m.copy(), cache=True) is not first  # a copy has its own cache


def test_forward_batch_keeps_order_and_targets() -> None:
    entries = [(Message(f"t/{i}", bytes([i])), "" if i % 3 else f"share:g:{i}") for i in range(9)]
    back = forward_batch_from_proto(wire(forward_batch_to_proto(entries, 7)))
    assert back == entries


# --- what cannot cross -------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "where"),
    [
        ({"when": datetime.datetime(2020, 1, 1)}, "message.properties.when"),
        ({"deep": {"set": {1, 2}}}, "message.properties.deep.set"),
        ({"list": [1, object()]}, "message.properties.list[1]"),
        ({"deep": {1: "x"}}, "key 1 is not a string"),
    ],
)
def test_unstorable_property_is_a_clear_error(properties: dict[str, Any], where: str) -> None:
    with pytest.raises(CodecError, match=where.replace("[", r"\[").replace("]", r"\]")):
        message_to_proto(Message("t", properties=properties))


def test_nesting_is_bounded_on_the_sending_side() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = {"k": deep}  # mappings: the deepest protobuf form per level
    session = SessionSnapshot(
        "c", inflight={1: outbound_record(Message("t", properties={"d": deep}), [])}
    )
    # The deepest allowed value still parses inside the deepest place it can travel.
    wrapped = wire(pb.TakeoverResponse(found=True, session=session_to_proto(session)))
    assert session_from_proto(wrapped.session) == session
    with pytest.raises(CodecError, match=f"nested deeper than {MAX_DEPTH}"):
        message_to_proto(Message("t", properties={"d": [deep]}))


class Level(enum.IntEnum):
    HIGH = 3


def test_subclasses_of_plain_types_travel_as_the_plain_type() -> None:
    back = value_from_proto(wire(value_to_proto({"level": Level.HIGH, "t": (True,)})))
    assert back == {"level": 3, "t": [True]} and type(back["level"]) is int


def test_bad_strings_and_numbers_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="not valid UTF-8"):
        value_to_proto("\ud800")
    with pytest.raises(CodecError, match="message on"):
        message_to_proto(Message("\ud800"))
    with pytest.raises(CodecError, match="message on"):
        message_to_proto(Message("t", qos=-1))
    with pytest.raises(CodecError, match="user_properties"):
        message_to_proto(Message("t", user_properties=[("k", 5)]))  # type: ignore[list-item]


def test_decoding_rejects_garbage() -> None:
    with pytest.raises(CodecError, match="QoS 3"):
        message_from_proto(pb.Message(topic="t", qos=3))
    with pytest.raises(CodecError, match="no kind"):
        value_from_proto(pb.Value())
    with pytest.raises(CodecError, match="not decimal"):
        value_from_proto(pb.Value(big_int_value="12x"))
    bad = pb.ForwardBatch(messages=[pb.ForwardedMessage(target="x")])
    with pytest.raises(CodecError, match="no message"):
        forward_batch_from_proto(bad)


def test_codec_is_sans_io() -> None:
    code = "import sys, fluxmq_etcd.codec; sys.exit('asyncio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- session state -----------------------------------------------------------------


def outbound_record(message: Message, ids: list[int]) -> dict[str, Any]:
    """What the MQTT session's Outbound.record() stores."""
    return {
        "dir": "out",
        "qos": 2,
        "retain": True,
        "ids": ids,
        "state": 1,
        "message": message.to_dict(),
    }


def test_inflight_records_round_trip_with_all_properties() -> None:
    m = sample_message(1)
    out = outbound_record(m, [1, 7])
    assert inflight_from_proto(wire(inflight_to_proto(12, out))) == (12, out)
    inbound = {"dir": "in", "qos": 2, "state": 3, "message": m.to_dict()}
    assert inflight_from_proto(wire(inflight_to_proto(9, inbound))) == (9, inbound)
    empty = {"dir": "in", "qos": 2, "state": 3, "message": None}
    assert inflight_from_proto(wire(inflight_to_proto(1, empty))) == (1, empty)


def test_inflight_record_errors() -> None:
    with pytest.raises(CodecError, match="dir must be"):
        inflight_to_proto(1, {"dir": "sideways", "qos": 1, "state": 0})
    with pytest.raises(CodecError, match=r"\['extra'\] have no field"):
        inflight_to_proto(1, {"dir": "in", "qos": 2, "state": 0, "extra": 1})
    with pytest.raises(CodecError, match="missing 'state'"):
        inflight_to_proto(1, {"dir": "out", "qos": 1})
    with pytest.raises(CodecError, match="unsigned 32-bit"):
        inflight_to_proto(1, {"dir": "out", "qos": 1, "state": 0, "ids": [-1]})


@st.composite
def snapshots(draw: st.DrawFn) -> SessionSnapshot:
    ids = st.lists(st.integers(0, 2**32 - 1), max_size=3)
    records = st.dictionaries(st.text(max_size=6), VALUES, max_size=4)
    queued = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2**64 - 1),
                messages(),
                st.integers(0, 2),
                st.booleans(),
                ids.map(tuple),
            ),
            max_size=3,
        )
    )
    inflight = {}
    for pid in draw(st.sets(st.integers(1, 0xFFFF), max_size=3)):
        if draw(st.booleans()):
            m = draw(messages())
            inflight[pid] = outbound_record(m, draw(ids))
        else:
            m = draw(st.none() | messages())
            msg = None if m is None else m.to_dict()
            inflight[pid] = {"dir": "in", "qos": 2, "state": 3, "message": msg}
    return SessionSnapshot(
        client_id=draw(st.text()),
        protocol=draw(st.text(max_size=8)),
        record=draw(st.none() | records),
        subscriptions=draw(st.dictionaries(st.text(max_size=10), records, max_size=3)),
        queued=queued,
        inflight=inflight,
        will=draw(st.none() | st.tuples(messages(), FINITE)),
        epoch=draw(st.integers(0, 2**64 - 1)),
    )


@given(snapshots())
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_session_round_trip(snapshot: SessionSnapshot) -> None:
    back = session_from_proto(wire(session_to_proto(snapshot)))
    expected = SessionSnapshot(
        client_id=snapshot.client_id,
        protocol=snapshot.protocol,
        record=plain(snapshot.record),
        subscriptions=plain(snapshot.subscriptions),
        queued=snapshot.queued,
        # A record's message goes through Message.from_dict (as the session's
        # restore_inflight does), which reads [] user properties as None.
        inflight={
            pid: {
                **r,
                "message": None
                if r["message"] is None
                else Message.from_dict(r["message"]).to_dict(),
            }
            for pid, r in snapshot.inflight.items()
        },
        will=snapshot.will,
        epoch=snapshot.epoch,
    )
    assert back == expected


def test_takeover_response_carries_a_session() -> None:
    s = SessionSnapshot(
        "c1",
        "mqtt",
        {"version": 5, "expiry": 3600, "username": None},
        {"a/+": {"qos": 1, "no_local": True, "rap": False, "rh": 0, "id": 4}},
        [(5, sample_message(2), 1, False, (4,))],
        {3: outbound_record(sample_message(3), [4])},
        (sample_message(4), 1_700_000_100.0),
        epoch=9,
    )
    resp = wire(pb.TakeoverResponse(found=True, session=session_to_proto(s)))
    assert resp.found and session_from_proto(resp.session) == s
    with pytest.raises(CodecError, match="will without a message"):
        session_from_proto(pb.SessionState(client_id="c", will=pb.WillMessage(publish_at=1.0)))
