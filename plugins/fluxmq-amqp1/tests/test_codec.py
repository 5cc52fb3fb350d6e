"""The codec: round trips of generated values and frames, malformed input raising
only the codec's error with the spec's condition, and interop with Qpid Proton's
encoder (encode with proton, decode with ours, and back)."""

from __future__ import annotations

import math
import struct
import uuid
from typing import Any

import proton
import pytest
from fluxmq_amqp1.codec.composites import (
    Accepted,
    AmqpSequence,
    AmqpValue,
    Attach,
    Begin,
    Close,
    Data,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Header,
    Modified,
    Open,
    Properties,
    Received,
    Rejected,
    Released,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Target,
    Transfer,
)
from fluxmq_amqp1.codec.frames import (
    FRAMING_ERROR,
    FrameReader,
    _fast_transfer,
    accepted_frame,
    encode_frame,
    transfer_frame,
)
from fluxmq_amqp1.codec.message import AMQPMessage, decode_message, encode_message
from fluxmq_amqp1.codec.types import (
    DECODE_ERROR,
    AMQPError,
    Array,
    Described,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    decode,
    decode_value,
    encode,
    float32,
    int32,
    long,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- generated values ----------------------------------------------------------------------

_text = st.text(max_size=20)
_sym = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12).map(symbol)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 255).map(ubyte),
    st.integers(0, 65535).map(ushort),
    st.integers(0, 2**32 - 1).map(uint),
    st.integers(0, 2**64 - 1).map(ulong),
    st.integers(-128, 127).map(byte),
    st.integers(-32768, 32767).map(short),
    st.integers(-(2**31), 2**31 - 1).map(int32),
    st.integers(-(2**63), 2**63 - 1).map(long),
    st.floats(allow_nan=False, width=32).map(float32),
    st.floats(allow_nan=False),
    st.binary(min_size=4, max_size=4).map(decimal32),
    st.binary(min_size=8, max_size=8).map(decimal64),
    st.binary(min_size=16, max_size=16).map(decimal128),
    st.characters(blacklist_categories=["Cs"]).map(char),
    st.integers(-(2**63), 2**63 - 1).map(timestamp),
    st.uuids(),
    st.binary(max_size=300),
    _text,
    _sym,
)

_arrays = st.one_of(
    st.lists(st.integers(0, 2**32 - 1).map(uint), max_size=5).map(lambda v: Array("uint", v)),
    st.lists(_sym, max_size=5).map(lambda v: Array("symbol", v)),
    st.lists(_text, max_size=5).map(lambda v: Array("string", v)),
    st.lists(st.integers(-(2**63), 2**63 - 1).map(long), max_size=5).map(
        lambda v: Array("long", v)
    ),
    st.lists(st.booleans(), max_size=5).map(lambda v: Array("boolean", v)),
)

values = st.recursive(
    st.one_of(scalars, _arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(_sym, _text, st.integers(0, 2**32 - 1).map(uint)), inner, max_size=5
        ),
        st.tuples(st.integers(0, 2**64 - 1).map(ulong).filter(lambda c: c > 0x100), inner).map(
            lambda t: Described(t[0], t[1])
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(values)
def test_value_round_trip(v: Any) -> None:
    assert decode(encode(v)) == v


def test_every_primitive_by_hand() -> None:
    v = [
        None,
        True,
        False,
        ubyte(255),
        ushort(65535),
        uint(0),
        uint(7),
        uint(2**32 - 1),
        ulong(0),
        ulong(9),
        ulong(2**64 - 1),
        byte(-128),
        short(-32768),
        int32(-(2**31)),
        long(-(2**63)),
        float32(0.5),
        1e300,
        decimal32(b"\x22\x50\x00\x01"),
        decimal64(bytes(range(8))),
        decimal128(bytes(range(16))),
        char("\U0001f600"),
        timestamp(1_700_000_000_000),
        uuid.UUID(int=42),
        b"x" * 300,
        "é" * 200,
        symbol("s" * 300),
        [],
        list(range(300)),
        {symbol("k"): [1, {"n": None}]},
        Array("ulong", [ulong(1), ulong(2)]),
        Array("list", [[1, 2], ["a"]]),
        Array("map", [{"a": 1}]),
        Array("array", [Array("uint", [uint(1)])]),
        Described(symbol("x:y"), "v"),
    ]
    assert decode(encode(v)) == v


# --- every performative -------------------------------------------------------------------

PERFORMATIVES = [
    Open(
        container_id="c",
        hostname="h",
        max_frame_size=4096,
        channel_max=10,
        idle_time_out=5000,
        offered_capabilities=["ANONYMOUS-RELAY"],
        properties={"product": "x"},
    ),
    Begin(
        remote_channel=1, next_outgoing_id=0, incoming_window=100, outgoing_window=100, handle_max=7
    ),
    Attach(
        name="l",
        handle=3,
        role=True,
        snd_settle_mode=1,
        rcv_settle_mode=1,
        source=Source(
            address="q",
            filter={symbol("f"): Described(symbol("s"), "a = 1")},
            outcomes=["amqp:accepted:list", "amqp:rejected:list"],
        ),
        target=Target(address="t", capabilities=["queue"]),
        initial_delivery_count=0,
        max_message_size=2**40,
    ),
    Flow(
        next_incoming_id=1,
        incoming_window=5,
        next_outgoing_id=2,
        outgoing_window=6,
        handle=0,
        delivery_count=4,
        link_credit=100,
        available=3,
        drain=True,
        echo=True,
    ),
    Transfer(
        handle=1,
        delivery_id=2**32 - 1,
        delivery_tag=b"t",
        message_format=0,
        settled=True,
        more=True,
        rcv_settle_mode=0,
        state=Received(section_number=1, section_offset=2),
    ),
    Disposition(role=True, first=1, last=9, settled=True, state=Accepted()),
    Disposition(role=True, first=1, state=Rejected(error=Error("amqp:not-allowed", "no"))),
    Disposition(role=True, first=1, state=Released()),
    Disposition(
        role=True,
        first=1,
        state=Modified(
            delivery_failed=True, undeliverable_here=True, message_annotations={"x-a": 1}
        ),
    ),
    Detach(handle=2, closed=True, error=Error("amqp:link:detach-forced", "bye", {"k": "v"})),
    End(error=Error("amqp:session:window-violation")),
    Close(),
    SaslMechanisms(sasl_server_mechanisms=["PLAIN", "ANONYMOUS"]),
    SaslInit(mechanism="PLAIN", initial_response=b"\0u\0p", hostname="h"),
    SaslOutcome(code=0, additional_data=b"ok"),
]


@pytest.mark.parametrize("perf", PERFORMATIVES, ids=lambda p: type(p).__name__)
def test_performative_frames_round_trip(perf: Any) -> None:
    ftype = 1 if type(perf).__name__.startswith("Sasl") else 0
    payload = b"\x00\x53\x75\xa0\x01x" if isinstance(perf, Transfer) else b""
    raw = encode_frame(5, perf, payload, ftype)
    reader = FrameReader()
    reader.expect_header = False
    reader.feed(raw[:3])
    assert reader.next_frame() is None
    reader.feed(raw[3:])
    frame = reader.next_frame()
    assert frame is not None and frame.channel == 5 and frame.type == ftype
    assert frame.body == perf and frame.payload == payload


@pytest.mark.parametrize("did", [0, 7, 255, 256, 2**32 - 1])
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True)])
def test_direct_transfer_and_accepted_frames_match_the_generic_encoder(
    did: int, flags: tuple[bool, bool]
) -> None:
    settled, more = flags

    def read(raw: bytes) -> Any:
        r = FrameReader()
        r.expect_header = False
        r.feed(raw)
        return r.next_frame()

    tag = did.to_bytes(4, "big")
    fast = read(transfer_frame(3, did % 300, did, tag, settled, more, b"payload"))
    generic = read(
        encode_frame(
            3,
            Transfer(
                handle=did % 300,
                delivery_id=did,
                delivery_tag=tag,
                message_format=0,
                settled=settled,
                more=more,
            ),
            b"payload",
        )
    )
    assert (fast.channel, fast.body, fast.payload) == (
        generic.channel,
        generic.body,
        generic.payload,
    )
    fast = read(accepted_frame(2, did))
    generic = read(
        encode_frame(2, Disposition(role=True, first=did, settled=True, state=Accepted()))
    )
    assert (fast.channel, fast.body) == (generic.channel, generic.body)
    first = did // 2
    fast = read(accepted_frame(2, first, did))
    generic = read(
        encode_frame(
            2, Disposition(role=True, first=first, last=did, settled=True, state=Accepted())
        )
    )
    assert (fast.channel, fast.body) == (generic.channel, generic.body)
    # and Qpid Proton's decoder reads ours
    data = proton.Data()
    data.decode(transfer_frame(0, 1, did, tag, settled, more, b"")[8:])
    assert data.get_object().descriptor == 0x14


@settings(max_examples=300, deadline=None)
@given(
    handle=st.integers(0, 2**32 - 1),
    did=st.none() | st.integers(0, 2**32 - 1),
    tag=st.none() | st.binary(max_size=32),
    fmt=st.none() | st.integers(0, 2**32 - 1),
    settled=st.none() | st.booleans(),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    rsm=st.none() | st.integers(0, 1),
    payload=st.binary(max_size=8),
)
def test_the_transfer_fast_path_decodes_as_the_generic_decoder(
    handle: int,
    did: int | None,
    tag: bytes | None,
    fmt: int | None,
    settled: bool | None,
    flags: tuple[bool, bool, bool, bool],
    rsm: int | None,
    payload: bytes,
) -> None:
    more, resume, aborted, batchable = flags
    t = Transfer(
        handle=handle,
        delivery_id=did,
        delivery_tag=tag,
        message_format=fmt,
        settled=settled,
        more=more,
        rcv_settle_mode=rsm,
        resume=resume,
        aborted=aborted,
        batchable=batchable,
    )
    raw = encode_frame(0, t, payload)
    body = raw[8:]
    fast = _fast_transfer(body)
    assert fast is not None  # what our encoder writes always takes the fast path
    perf, pos = decode_value(body, 0)
    assert fast == (perf, body[pos:]) and fast[0] == t
    # cut short or lengthened, it defers to the generic decoder (which judges it)
    for cut in (body[: -1 - len(payload)], body[:5] + bytes([body[5] + 1]) + body[6:]):
        short = _fast_transfer(cut)
        assert short is None or short[0] == decode_value(cut, 0)[0]


def test_mandatory_and_typed_fields_are_checked() -> None:
    # handle given as a string instead of a uint
    forged = encode(Described(ulong(0x12), ["l", "zero", False]))
    with pytest.raises(AMQPError) as info:
        decode(forged)
    assert info.value.condition == DECODE_ERROR and "handle" in info.value.description
    with pytest.raises(AMQPError, match="mandatory"):
        decode(encode(Described(ulong(0x10), [])))  # open without container-id


def test_frame_errors_carry_conditions() -> None:
    reader = FrameReader(max_frame_size=512)
    reader.expect_header = False
    reader.feed(struct.pack(">IBBH", 4, 2, 0, 0))
    with pytest.raises(AMQPError) as info:
        reader.next_frame()
    assert info.value.condition == FRAMING_ERROR
    reader = FrameReader(max_frame_size=512)
    reader.expect_header = False
    reader.feed(struct.pack(">IBBH", 100000, 2, 0, 0))
    with pytest.raises(AMQPError, match="max-frame-size"):
        reader.next_frame()


# --- fuzz: only the codec's error escapes -------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_decoder_raises_only_codec_errors(raw: bytes) -> None:
    try:
        decode(raw)
    except AMQPError as exc:
        assert exc.condition == DECODE_ERROR


@FUZZ
@given(st.binary(max_size=200))
def test_frame_reader_raises_only_codec_errors(raw: bytes) -> None:
    reader = FrameReader(max_frame_size=4096)
    reader.expect_header = False
    reader.feed(struct.pack(">IBBH", 8 + len(raw), 2, raw[0] % 2 if raw else 0, 0) + raw)
    try:
        reader.next_frame()
    except AMQPError as exc:
        assert exc.condition in (DECODE_ERROR, FRAMING_ERROR)


@FUZZ
@given(st.sampled_from(PERFORMATIVES), st.data())
def test_mutated_performatives_raise_only_codec_errors(perf: Any, data: Any) -> None:
    raw = bytearray(encode_frame(0, perf, type=1 if type(perf).__name__.startswith("Sasl") else 0))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(8, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    reader = FrameReader()
    reader.expect_header = False
    reader.feed(bytes(raw))
    try:
        reader.next_frame()
    except AMQPError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_message_decoder_raises_only_codec_errors(raw: bytes) -> None:
    try:
        decode_message(raw)
    except AMQPError as exc:
        assert exc.condition == DECODE_ERROR


# --- interop with Qpid Proton ------------------------------------------------------------


def to_proton(v: Any) -> Any:
    """Our typed value -> the value proton.Data encodes as the same AMQP type."""
    if isinstance(v, bool) or v is None:
        return v
    for ours, theirs in (
        (ubyte, proton.ubyte),
        (ushort, proton.ushort),
        (uint, proton.uint),
        (ulong, proton.ulong),
        (byte, proton.byte),
        (short, proton.short),
        (int32, proton.int32),
        (timestamp, proton.timestamp),
    ):
        if isinstance(v, ours):
            return theirs(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float32):
        return proton.float32(v)
    if isinstance(v, decimal32):
        return proton.decimal32(int.from_bytes(v, "big"))
    if isinstance(v, decimal64):
        return proton.decimal64(int.from_bytes(v, "big"))
    if isinstance(v, decimal128):
        return proton.decimal128(bytes(v))
    if isinstance(v, char):
        return proton.char(v)
    if isinstance(v, symbol):
        return proton.symbol(v)
    if isinstance(v, list):
        return [to_proton(x) for x in v]
    if isinstance(v, dict):
        return {to_proton(k): to_proton(x) for k, x in v.items()}
    if isinstance(v, Described):
        return proton.Described(to_proton(v.descriptor), to_proton(v.value))
    if isinstance(v, Array):
        code = getattr(proton.Data, v.type.upper().replace("DOUBLE", "DOUBLE"))
        return proton.Array(proton.UNDESCRIBED, code, *[to_proton(x) for x in v.values])
    return v


def proton_encode(v: Any) -> bytes:
    d = proton.Data()
    d.put_object(to_proton(v))
    return d.encode()


def proton_reencode(raw: bytes) -> bytes:
    """Proton parses our bytes into its tree of typed nodes and encodes them again."""
    d = proton.Data()
    n = d.decode(raw)
    assert n == len(raw)
    return d.encode()


proton_values = st.recursive(
    st.one_of(
        scalars.filter(lambda x: not (isinstance(x, float) and math.isnan(x))),
        _arrays.filter(lambda a: a.type != "boolean"),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_sym, _text), inner, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(proton_values)
def test_interop_proton_encodes_we_decode(v: Any) -> None:
    assert decode(proton_encode(v)) == v


@settings(max_examples=200, deadline=None)
@given(proton_values)
def test_interop_we_encode_proton_decodes(v: Any) -> None:
    assert decode(proton_reencode(encode(v))) == v


def test_interop_messages_both_ways() -> None:
    pm = proton.Message(
        body=b"payload",
        address="queue/a",
        id="id-1",
        correlation_id=uuid.UUID(int=7),
        reply_to="replies",
        subject="subj",
        content_type="text/plain",
        durable=True,
        priority=7,
        ttl=2.5,
        properties={"k": "v", "n": 3},
        annotations={symbol("x-opt-a"): "b"},
    )
    ours = decode_message(pm.encode())
    assert ours.header == Header(durable=True, priority=7, ttl=2500)
    assert ours.properties.message_id == "id-1" and ours.properties.to == "queue/a"
    assert ours.properties.correlation_id == uuid.UUID(int=7)
    assert ours.application_properties == {"k": "v", "n": 3}
    assert ours.message_annotations == {"x-opt-a": "b"}
    assert ours.body == [AmqpValue(b"payload")]
    back = proton.Message()
    back.decode(encode_message(ours))
    assert back.body == b"payload" and back.id == "id-1" and back.priority == 7
    assert back.properties == {"k": "v", "n": 3} and back.ttl == 2.5

    msg = AMQPMessage(
        [Data(b"a"), Data(b"b")],
        properties=Properties(message_id=ulong(5), content_type=symbol("application/octet-stream")),
    )
    pm = proton.Message()
    pm.decode(encode_message(msg))
    assert pm.id == 5
    seq = AMQPMessage([AmqpSequence([1, 2]), AmqpSequence(["x"])])
    assert decode_message(encode_message(seq)) == seq


_HEADERS = st.builds(
    Header,
    durable=st.booleans(),
    priority=st.integers(0, 255),
    ttl=st.none() | st.integers(0, 2**32 - 1),
    first_acquirer=st.booleans(),
    delivery_count=st.integers(0, 2**32 - 1),
)


@settings(max_examples=200, deadline=None)
@given(
    header=st.none() | _HEADERS,
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
    cut=st.integers(1, 40),
)
def test_the_header_and_data_fast_path_decodes_as_the_generic_decoder(
    header: Header | None, bodies: list[bytes], cut: int
) -> None:
    msg = AMQPMessage([Data(b) for b in bodies], header=header)
    raw = encode_message(msg)
    for _ in range(2):  # the second time the header comes from the cache
        got = decode_message(raw)
        assert got == msg
        assert all(type(s.value) is bytes for s in got.body)
    # a header taken from the cache is a new one each time: changing it changes no other
    a, b = decode_message(raw), decode_message(raw)
    if header is not None:
        assert a.header is not b.header
        a.header.delivery_count = 7 if header.delivery_count != 7 else 8
        assert decode_message(raw).header == header
    # cut short anywhere, it is a decode error (never a traceback), as the generic decoder says
    short = raw[: max(0, len(raw) - cut)]
    try:
        decode_message(short)
    except AMQPError as exc:
        assert exc.condition == DECODE_ERROR
    assert decode_message(bytearray(raw)) == msg


def test_list32_and_empty_headers_decode_as_the_generic_decoder() -> None:
    data = encode_message(AMQPMessage([Data(b"x")]))
    fields = b"\x41\x50\x07"  # durable=true, priority=7
    list32 = b"\xd0" + struct.pack(">II", 4 + len(fields), 2) + fields
    for raw in (b"\x00\x53\x70" + list32 + data, b"\x00\x53\x70\x45" + data):
        for _ in range(2):
            got = decode_message(raw)
            assert got.header == decode_value(raw, 0)[0] and got.body == [Data(b"x")]
    with pytest.raises(AMQPError):
        decode_message(b"\x00\x53\x70\xd0\x00\x00\x00\x09\x00\x00\x00\x01\x41" + data)


def test_message_section_order_is_enforced() -> None:
    raw = bytearray()
    Properties(message_id="a").encode_to(raw)
    Header().encode_to(raw)
    with pytest.raises(AMQPError, match="out of order"):
        decode_message(bytes(raw))
    with pytest.raises(AMQPError, match="not a message section"):
        decode_message(encode("plain"))


def test_port_sharing_predicate() -> None:
    """Which greetings AMQP 1.0 claims on a shared port (that exactly one of the two
    AMQP plugins claims each greeting is a cross-plugin test, in tests/e2e)."""
    from fluxmq_amqp1.codec.frames import is_amqp1

    assert is_amqp1(b"AMQP\x00\x01\x00\x00") and is_amqp1(b"AMQP\x03\x01\x00\x00")
    assert is_amqp1(b"AMQP\x00\x01\x00\x09")  # answered with our header
    assert is_amqp1(b"AMQP\x00\x00\x09\x01") is False
    assert is_amqp1(b"AMQ") is None and is_amqp1(b"GET /") is False
