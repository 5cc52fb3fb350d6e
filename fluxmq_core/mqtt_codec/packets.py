"""MQTT control packets as frozen, slotted dataclasses: the only vocabulary between
the codec and the session layer (h11's events, for MQTT).

One class per packet type, with the same fields in 3.1, 3.1.1 and 5.0; a field that a
version lacks keeps its default there (properties `None`, reason code 0). Reason codes
are plain ints (see `reasons.py`), properties are a `Properties` or `None` (see
`properties.py`). These classes hold data only: no validation beyond what the
decoder did, no encoding (see `encoder.py`), no session semantics (topic alias
resolution, QoS flows, client id assignment belong to the connection).
`PublishRun`, a plain slotted class, is the one item that is not a packet: one or
more QoS 0 PUBLISHes a decoder made with ``runs=True`` returns together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .properties import Properties

__all__ = [
    "MQTT_3_1",
    "MQTT_3_1_1",
    "MQTT_5",
    "PACKET_CLASSES",
    "VERSIONS",
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "PublishRun",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "SubscribeOptions",
    "Unsuback",
    "Unsubscribe",
]

MQTT_3_1 = 3  # protocol name "MQIsdp"
MQTT_3_1_1 = 4
MQTT_5 = 5
VERSIONS = (MQTT_3_1, MQTT_3_1_1, MQTT_5)


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """The subscription options byte. 3.1.1 only has `qos`; the other fields must keep
    their defaults there (the encoder drops them)."""

    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT. The will is present when `will_topic` is not None. `protocol_name`
    and `protocol_level` are what the client sent; the encoder writes the ones that
    belong to the version it is asked for."""

    client_id: str = ""
    clean_start: bool = True
    keepalive: int = 0
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_payload: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    will_properties: Properties | None = None
    properties: Properties | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = MQTT_3_1_1


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK. `reason_code` is the 3.1.1 return code (0-5) under 3.1/3.1.1 and the
    MQTT 5 reason code under 5.0; the encoder maps 5.0 codes down for 3.1.1."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH. `packet_id` is None at QoS 0. Under 5.0 `topic` may be "" when a
    Topic Alias property names it; resolving aliases is the connection's job."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties | None = None


class PublishRun:
    """Consecutive PUBLISHes of one chunk that differ only in their payload: QoS 0,
    neither retained nor DUP, one topic name (given in full, never through a topic
    alias), no properties. Only a `Decoder` made with ``runs=True`` returns these,
    for every such packet (a run of one when the next packet differs, so that a
    lone message takes the receiver's same path); each stands for the `Publish`
    packets it holds, in order (:meth:`publishes`), so a receiver can do the
    per-topic work once per run.

    ``buf`` is the chunk the packets were cut from; packet ``k`` is
    ``buf[ends[k - 1]:ends[k]]`` (``start`` for the first one) and its payload
    ``buf[starts[k]:ends[k]]``. ``v5`` says whether the packets carry the (empty)
    property block of 5.0; ``done`` counts the packets a receiver has handled
    already (it resumes there).
    """

    __slots__ = ("topic", "buf", "start", "starts", "ends", "v5", "done", "_payloads")

    def __init__(
        self,
        topic: str,
        buf: bytes,
        start: int,
        starts: list[int],
        ends: list[int],
        v5: bool,
    ) -> None:
        self.topic = topic
        self.buf = buf
        self.start = start
        self.starts = starts
        self.ends = ends
        self.v5 = v5
        self.done = 0
        self._payloads: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.ends)

    def __repr__(self) -> str:
        return f"PublishRun({self.topic!r}, {len(self.ends)} packets, done={self.done})"

    @property
    def payloads(self) -> list[bytes]:
        """Every packet's payload, in order (sliced once, on first use)."""
        payloads = self._payloads
        if payloads is None:
            buf = self.buf
            payloads = self._payloads = [
                buf[a:b] for a, b in zip(self.starts, self.ends, strict=True)
            ]
        return payloads

    def publishes(self) -> list[Publish]:
        """The packets as `Publish` objects, as a decoder without runs returns them."""
        topic = self.topic
        return [Publish(topic, payload) for payload in self.payloads]


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Pubrec:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Pubrel:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Pubcomp:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: `subscriptions` is a tuple of `(topic_filter, SubscribeOptions)`.
    Topic filter syntax is not enforced here (see `validate_topic_filter`): a bad
    filter gets its own SUBACK failure code, not a closed connection."""

    packet_id: int
    subscriptions: tuple[tuple[str, SubscribeOptions], ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK: one reason code (3.1.1: return code 0, 1, 2 or 0x80) per filter."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK: 3.1.1 has no payload, so `reason_codes` is () there."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: 3.1.1 has neither reason code nor properties."""

    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (5.0 only)."""

    reason_code: int = 0
    properties: Properties | None = None


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)

PACKET_CLASSES: dict[int, type] = {
    1: Connect,
    2: Connack,
    3: Publish,
    4: Puback,
    5: Pubrec,
    6: Pubrel,
    7: Pubcomp,
    8: Subscribe,
    9: Suback,
    10: Unsubscribe,
    11: Unsuback,
    12: Pingreq,
    13: Pingresp,
    14: Disconnect,
    15: Auth,
}


def validate_topic_filter(topic_filter: str) -> bool:
    """True when a topic filter is well formed [MQTT-4.7.1-1, -2, -3]: not empty,
    `#` only as the whole last level, `+` only as a whole level. `$share/` syntax
    (group name present, no wildcards in it) is checked too."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    if topic_filter.startswith("$share/"):
        if len(levels) < 3 or not levels[1] or "+" in levels[1] or "#" in levels[1]:
            return False
        levels = levels[2:]
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def validate_topic_name(topic: str) -> bool:
    """True when a topic name may be published to: non-empty, no wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic
