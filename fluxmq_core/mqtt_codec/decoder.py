"""The sans-IO MQTT stream decoder: bytes in, packets out.

Theory of operation. A `Decoder` belongs to one connection. It starts not knowing the
protocol version (unless told with `version=` or `set_version()`); the first packet
must then be CONNECT, whose protocol name and level fix the version for the rest of
the stream. Bytes arrive with `feed()`; `next_packet()` returns the next complete
packet or `None` when more bytes are needed. `packets(chunk)` is the hot path: it
feeds a whole transport chunk and returns every complete packet in it, walking the
buffer by offsets, slicing each packet only where a field needs its own object (topic,
payload), and compacting the remainder once per call. PUBLISH bodies are decoded inline
by a version-specific function; everything else is sliced and handed to the body
decoders in `bodies.py`.

Limits: `max_packet_size` (total packet size, fixed header included; may be changed at
any time, e.g. after CONNECT) is checked as soon as a fixed header is complete, before
any of the body is buffered (0x95 Packet too large). `max_buffer_size` bounds both the
largest packet we agree to buffer and the undrained bytes `feed()` will hold (0x97).

Errors: every violation raises `MQTTProtocolError` and leaves the decoder failed: later
calls raise the same error. Anything else escaping would be a bug; as a last line of
defence an unexpected exception is wrapped into a 0x81 `MQTTProtocolError` whose
`__cause__` is set (the tests assert that never happens).

Not here: topic alias resolution, receive-maximum accounting, keep-alive, the order
of packets after CONNECT (a connection state machine's job), and any I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .bodies import BODY_DECODERS, connect_version, decode_connect
from .errors import MQTTProtocolError
from .packets import MQTT_5, VERSIONS, Publish, PublishRun
from .primitives import MAX_VARINT, malformed
from .properties import decode_properties

__all__ = [
    "CLIENT",
    "DEFAULT_MAX_BUFFER_SIZE",
    "MAX_PACKET_SIZE",
    "SERVER",
    "Decoder",
    "decode_packet",
]

MAX_PACKET_SIZE = MAX_VARINT + 5  # 1 type byte + 4 length bytes + largest body
DEFAULT_MAX_BUFFER_SIZE = 16 * 1024 * 1024

SERVER = "server"  # we are the server: decode what clients send
CLIENT = "client"  # we are the client: decode what servers send

PROTOCOL_ERROR = 0x82
TOPIC_NAME_INVALID = 0x90
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97

# Fixed-header flags every packet but PUBLISH must carry [MQTT-2.1.3-1].
_REQUIRED_FLAGS = (None, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)
# Packet types each role must never receive.
_FORBIDDEN = {
    SERVER: frozenset({2, 9, 11, 13}),  # CONNACK, SUBACK, UNSUBACK, PINGRESP
    CLIENT: frozenset({1, 8, 10, 12}),  # CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ
    None: frozenset(),
}
_NAMES = (
    "reserved",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)

# PUBLISH flags nibble -> (qos, retain, dup), or None when invalid: QoS 3 [MQTT-3.3.1-4]
# and DUP set on a QoS 0 message [MQTT-3.3.1-2] are malformed.
_PUBLISH_FLAGS: list[tuple[int, bool, bool] | None] = []
for _f in range(16):
    _q = (_f >> 1) & 3
    _PUBLISH_FLAGS.append(
        None if _q == 3 or (_q == 0 and _f & 8) else (_q, bool(_f & 1), bool(_f & 8))
    )
del _f, _q

# Building a frozen dataclass through its __init__ costs one object.__setattr__ per
# field; setting the slots through their descriptors is ~40% cheaper and PUBLISH is
# the packet that arrives by the hundred thousand.
_new = object.__new__
_slot = Publish.__dict__
_set_topic = _slot["topic"].__set__
_set_payload = _slot["payload"].__set__
_set_qos = _slot["qos"].__set__
_set_retain = _slot["retain"].__set__
_set_dup = _slot["dup"].__set__
_set_packet_id = _slot["packet_id"].__set__
_set_properties = _slot["properties"].__set__
del _slot


def _make_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Any,
) -> Publish:
    pkt = _new(Publish)
    _set_topic(pkt, topic)
    _set_payload(pkt, payload)
    _set_qos(pkt, qos)
    _set_retain(pkt, retain)
    _set_dup(pkt, dup)
    _set_packet_id(pkt, packet_id)
    _set_properties(pkt, properties)
    return pkt


# Topic names that passed the checks below (UTF-8, no wildcard, no U+0000), by their
# encoded bytes: a stream of PUBLISHes to the same topics skips the decode and the
# scans, and every message of a topic shares one ``str`` whose hash is computed once
# (the router's and the ACL's caches look it up again). Bounded (at most 4,096
# names of at most 256 bytes); cleared when full.
_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX = 4096
_TOPIC_CACHED_LEN = 256


def _publish_head(
    buf: bytes, start: int, end: int, flags: int
) -> tuple[str, int, tuple, int | None]:
    """Topic, position after the packet id, flag triple and packet id of a PUBLISH."""
    bits = _PUBLISH_FLAGS[flags]
    if bits is None:
        raise malformed(f"PUBLISH with invalid flags 0x{flags:X} (QoS 3, or DUP at QoS 0)")
    if start + 2 > end:
        raise malformed("PUBLISH too short for its topic length")
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if pos > end:
        raise malformed("PUBLISH topic length runs past the end of the packet")
    raw = buf[start + 2 : pos]
    topic = _TOPICS.get(raw)
    if topic is None:
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed("PUBLISH topic is not well-formed UTF-8") from None
        if "+" in topic or "#" in topic:
            raise MQTTProtocolError(TOPIC_NAME_INVALID, "PUBLISH topic contains a wildcard")
        if "\x00" in topic:
            raise malformed("PUBLISH topic contains U+0000")
        if len(raw) <= _TOPIC_CACHED_LEN:
            if len(_TOPICS) >= _TOPICS_MAX:
                _TOPICS.clear()
            _TOPICS[raw] = topic
    if bits[0]:
        if pos + 2 > end:
            raise malformed("PUBLISH too short for its packet identifier")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        if not packet_id:
            raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH with packet identifier 0")
        return topic, pos + 2, bits, packet_id
    return topic, pos, bits, None


def _publish_v3(buf: bytes, start: int, end: int, flags: int) -> Publish:
    topic, pos, bits, packet_id = _publish_head(buf, start, end, flags)
    if not topic:
        raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH with an empty topic")
    return _make_publish(topic, buf[pos:end], bits[0], bits[1], bits[2], packet_id, None)


def _publish_v5(buf: bytes, start: int, end: int, flags: int, from_client: bool = False) -> Publish:
    topic, pos, bits, packet_id = _publish_head(buf, start, end, flags)
    if pos < end and buf[pos] == 0:
        props = None
        pos += 1
    else:
        props, pos = decode_properties(buf, pos, end, 3)
    if not topic and (props is None or props.topic_alias is None):
        raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH with an empty topic and no topic alias")
    if from_client and props is not None and props.subscription_identifiers:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, "PUBLISH from a client with a subscription identifier"
        )
    return _make_publish(topic, buf[pos:end], bits[0], bits[1], bits[2], packet_id, props)


def _publish_v5_from_client(buf: bytes, start: int, end: int, flags: int) -> Publish:
    return _publish_v5(buf, start, end, flags, True)


def _long_length(buf: bytes, pos: int, n: int) -> tuple[int, int]:
    """Remaining length starting at `pos` (its first byte has the continuation bit).
    Returns (length, body start), or (0, -1) when the header is still incomplete."""
    value = buf[pos] & 0x7F
    shift = 7
    for i in range(1, 4):
        if pos + i >= n:
            return 0, -1
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                raise malformed("remaining length not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise malformed("remaining length longer than 4 bytes")


class Decoder:
    """Stream decoder for one connection.

    `version`: 3, 4 or 5 when known in advance (client side, tests), else None and
    CONNECT sets it. `role`: `"server"` (we are the broker; packets only a server may
    send are rejected, as is a second CONNECT and a client PUBLISH carrying a
    subscription identifier), `"client"`, or None to accept every packet type.
    `runs`: return consecutive PUBLISHes that differ only in their payload (QoS 0,
    not retained, one topic name, no properties) as one `PublishRun` from
    `packets()`, so that a receiver can handle them as a batch; a lone such
    PUBLISH is a run of one.
    """

    __slots__ = (
        "_buf",
        "_connect_seen",
        "_error",
        "_forbidden",
        "_need",
        "_parts",
        "_parts_len",
        "_pos",
        "_publish",
        "_role",
        "_version",
        "max_buffer_size",
        "max_packet_size",
        "runs",
    )

    def __init__(
        self,
        *,
        version: int | None = None,
        role: str | None = None,
        max_packet_size: int = MAX_PACKET_SIZE,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
        runs: bool = False,
    ) -> None:
        if role not in _FORBIDDEN:
            raise ValueError(f"role must be 'server', 'client' or None, not {role!r}")
        self._buf = b""
        self._pos = 0
        # While a packet larger than what has arrived is pending (`_need` bytes in
        # total), chunks wait in `_parts` and are joined once, when it can complete:
        # re-joining per chunk would copy a big packet quadratically. An empty tuple
        # until a packet spans chunks (an idle connection holds no list).
        self._parts: list[bytes] | tuple[()] = ()
        self._parts_len = 0
        self._need = 0
        self._role = role
        self._forbidden = _FORBIDDEN[role]
        self._version: int | None = None
        self._publish: Callable[[bytes, int, int, int], Publish] | None = None
        self.max_packet_size = max_packet_size
        self.max_buffer_size = max_buffer_size
        self._error: MQTTProtocolError | None = None
        self._connect_seen = False
        self.runs = runs
        if version is not None:
            self.set_version(version)

    # ------------------------------------------------------------------ state

    @property
    def version(self) -> int | None:
        """3, 4 or 5 once known. Set from CONNECT as soon as its protocol name and
        level are read, so it is known even when the rest of CONNECT is malformed
        (the adapter can then answer CONNACK in the right version)."""
        return self._version

    @property
    def role(self) -> str | None:
        return self._role

    def set_version(self, version: int) -> None:
        if version not in VERSIONS:
            raise ValueError(f"unsupported MQTT protocol level {version!r}")
        self._version = version
        if version < MQTT_5:
            self._publish = _publish_v3
        elif self._role == SERVER:
            self._publish = _publish_v5_from_client
        else:
            self._publish = _publish_v5

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        return len(self._buf) - self._pos + self._parts_len

    @property
    def error(self) -> MQTTProtocolError | None:
        """The error that failed this decoder, if any."""
        return self._error

    @property
    def connect_seen(self) -> bool:
        """Whether a CONNECT has been decoded (a server-role decoder refuses a second)."""
        return self._connect_seen

    def drained(self) -> bool:
        """Nothing buffered and no error: the decoder holds no state of the stream
        beyond its version. Drops its reference to the last chunk."""
        if self._error is not None or self._parts or self._pos != len(self._buf):
            return False
        self._buf = b""
        self._pos = 0
        self._need = 0
        return True

    def detach(self) -> Decoder:
        """A new decoder with this one's whole state (buffered bytes, error, version);
        this one keeps its version and settings and is left empty. Lets one decoder
        serve many connections between packets, each taking a decoder of its own
        only while a packet spans chunks."""
        new = Decoder.__new__(Decoder)
        for name in Decoder.__slots__:
            setattr(new, name, getattr(self, name))
        self._buf = b""
        self._pos = 0
        self._parts = ()
        self._parts_len = 0
        self._need = 0
        self._error = None
        return new

    # ------------------------------------------------------------------ input

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        held = len(self._buf) - self._pos
        if self._need and held + self._parts_len + len(data) < self._need:
            if not self._parts:
                self._parts = [data]
            else:
                self._parts.append(data)
            self._parts_len += len(data)
            return
        if self._parts:
            self._buf = b"".join((self._buf[self._pos :], *self._parts, data))
            self._parts = ()
            self._parts_len = 0
        elif held:
            self._buf = self._buf[self._pos :] + data
        else:
            self._buf = data
        self._pos = 0
        self._need = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Raises 0x97 when more than `max_buffer_size` bytes are
        waiting undrained (drain with `next_packet()` between feeds)."""
        if self._error is not None:
            raise self._error
        if data:
            self._append(data)
        if self.buffered > self.max_buffer_size:
            raise self._fail(
                MQTTProtocolError(QUOTA_EXCEEDED, "receive buffer exceeds max_buffer_size")
            )

    def _fail(self, exc: MQTTProtocolError) -> MQTTProtocolError:
        self._error = exc
        return exc

    # ------------------------------------------------------------------ output

    def next_packet(self) -> Any:
        """The next complete packet, or None when more bytes are needed."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if n - pos < 2:
            return None
        try:
            rl = buf[pos + 1]
            if rl < 0x80:
                body = pos + 2
            else:
                rl, body = _long_length(buf, pos + 1, n)
                if body < 0:
                    return None
            end = body + rl
            self._check_size(end - pos)
            if end > n:
                self._need = end - pos
                return None
            b0 = buf[pos]
            publish = self._publish
            if b0 >> 4 == 3 and publish is not None:
                pkt = publish(buf, body, end, b0 & 15)
            else:
                pkt = self._decode_other(b0, buf[body:end])
        except MQTTProtocolError as exc:
            raise self._fail(exc) from None
        except Exception as exc:  # pragma: no cover - a bug; keep the contract
            raise self._fail(malformed(f"undecodable packet ({exc!r})")) from exc
        self._pos = end
        return pkt

    def packets(self, data: bytes | bytearray | memoryview = b"") -> list[Any]:
        """Feed `data` and return every complete packet now available, in order.

        On a violation, raises `MQTTProtocolError` whose `packets` attribute holds the
        packets decoded from this chunk before the bad one.

        With `runs` set, every QoS 0 PUBLISH without properties starts a
        `PublishRun` (its topic looked up among the names that passed the checks
        before, else decoded) and a PUBLISH that repeats the previous one's first
        bytes up to its payload (QoS 0 flags, topic name, and under 5.0 an empty
        property block) joins it without being decoded again: one `startswith`
        and two list appends per packet. No `Publish` and no payload slice is made
        for either."""
        if self._error is not None:
            raise self._error
        if data:
            if self._buf or type(data) is not bytes:
                self._append(data)
            else:
                self._buf = data  # nothing held (``_pos`` and ``_need`` are 0)
        buf = self._buf
        pos = self._pos
        n = len(buf)
        out: list[Any] = []
        append = out.append
        publish = self._publish
        limit = min(self.max_packet_size, self.max_buffer_size)
        runs = self.runs
        # While the previous packet started or extended a run (``run``): ``skip``,
        # the length of its first packet's bytes from the topic field up to the
        # payload, at ``run_body``; ``prefix``, those bytes, sliced once a QoS 0
        # PUBLISH follows. ``v5``: whether the version is 5.0, once needed.
        prefix: bytes | None = None
        skip = run_body = 0
        run: PublishRun | None = None
        v5: bool | None = None
        try:
            while n - pos >= 2:
                rl = buf[pos + 1]
                if rl < 0x80:
                    body = pos + 2
                else:
                    rl, body = _long_length(buf, pos + 1, n)
                    if body < 0:
                        break
                end = body + rl
                if end - pos > limit:
                    self._check_size(end - pos)
                if end > n:
                    self._need = end - pos
                    break
                b0 = buf[pos]
                if b0 == 0x30 and runs and publish is not None:
                    if run is not None:
                        if prefix is None:
                            prefix = buf[run_body : run_body + skip]
                        if buf.startswith(prefix, body, end):
                            run.starts.append(body + skip)
                            run.ends.append(end)
                            pos = end
                            continue
                    # A run starts here: its topic checked as ``publish`` would
                    # (a name that passed the checks before), else ``publish``
                    # decodes it (and raises what it raises).
                    if v5 is None:
                        v5 = self._version == MQTT_5
                    topic = None
                    field = body + 2
                    if field <= end:
                        head = field + ((buf[body] << 8) | buf[body + 1])
                        if v5:
                            if head < end and buf[head] == 0:
                                topic = _TOPICS.get(buf[field:head])
                                skip = head + 1 - body
                        elif head <= end:
                            topic = _TOPICS.get(buf[field:head])
                            skip = head - body
                    if not topic:
                        pkt = publish(buf, body, end, 0)
                        if pkt.properties is not None:
                            append(pkt)
                            prefix = run = None
                            pos = end
                            continue
                        topic = pkt.topic
                        skip = end - body - len(pkt.payload)
                    run = PublishRun(topic, buf, pos, [body + skip], [end], v5)
                    append(run)
                    prefix = None
                    run_body = body
                    pos = end
                    continue
                if b0 >> 4 == 3 and publish is not None:
                    append(publish(buf, body, end, b0 & 15))
                    prefix = run = None
                else:
                    append(self._decode_other(b0, buf[body:end]))
                    publish = self._publish  # CONNECT may have set the version
                    prefix = run = v5 = None
                pos = end
        except MQTTProtocolError as exc:
            self._pos = pos
            exc.packets = out
            raise self._fail(exc) from None
        except Exception as exc:  # pragma: no cover - a bug; keep the contract
            self._pos = pos
            err = malformed(f"undecodable packet ({exc!r})")
            err.packets = out
            raise self._fail(err) from exc
        if pos == n:
            # All used (so nothing waits in ``_parts`` either): let go of the
            # chunk, as ``drained()`` would. An empty ``_buf`` says so.
            self._buf = b""
            self._pos = 0
        else:
            self._pos = pos
        return out

    def _check_size(self, size: int) -> None:
        if size > self.max_packet_size:
            raise MQTTProtocolError(
                PACKET_TOO_LARGE,
                f"packet of {size} bytes exceeds maximum packet size {self.max_packet_size}",
            )
        if size > self.max_buffer_size:
            raise MQTTProtocolError(
                PACKET_TOO_LARGE,
                f"packet of {size} bytes exceeds receive buffer size {self.max_buffer_size}",
            )

    def _decode_other(self, b0: int, body: bytes) -> Any:
        ptype = b0 >> 4
        flags = b0 & 0x0F
        if ptype == 0:
            raise malformed("reserved packet type 0")
        if ptype in self._forbidden:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"{_NAMES[ptype]} must not be sent to a {self._role}"
            )
        required = _REQUIRED_FLAGS[ptype]
        if required is not None and flags != required:
            raise malformed(f"{_NAMES[ptype]} with reserved flags 0x{flags:X}")
        if ptype == 1:
            if self._connect_seen and self._role == SERVER:
                raise MQTTProtocolError(PROTOCOL_ERROR, "second CONNECT on a connection")
            level = connect_version(body)
            self.set_version(level)
            self._connect_seen = True
            return decode_connect(body, level)
        version = self._version
        if version is None:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"first packet must be CONNECT, got {_NAMES[ptype]}"
            )
        if ptype == 3 and self._publish is not None:
            return self._publish(body, 0, len(body), flags)
        return BODY_DECODERS[ptype](body, version)


def decode_packet(data: bytes, version: int | None = None, *, role: str | None = None) -> Any:
    """Decode exactly one complete packet (tests, tools). Raises `MQTTProtocolError`
    when `data` is malformed, incomplete, or holds more than one packet."""
    decoder = Decoder(version=version, role=role)
    decoder.feed(data)
    packet = decoder.next_packet()
    if packet is None:
        raise malformed("incomplete packet")
    if decoder.buffered:
        raise malformed("bytes after the packet")
    return packet
