"""MQTT reason codes: the MQTT 5 table, the 3.1.1 CONNACK return codes, and which
code is legal in which packet.

This module holds names and numbers only: `ReasonCode` (every MQTT 5.0 reason code,
spec section 2.4), `ConnackReturnCode` (MQTT 3.1/3.1.1 CONNACK return codes), the sets
of codes each packet type may carry, and the mapping an adapter needs to answer a 3.1.1
client with the 5.0 code it thought in. It deliberately does not decide *when* to send
which code: that is the session's business.

Decoded packets carry reason codes as plain `int`s (an enum construction per PUBACK
is measurable on the hot path); `ReasonCode(x)` gives the name when one is wanted,
and `IntEnum` members compare equal to those ints.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AUTH_CODES",
    "CONNACK_V5_CODES",
    "DISCONNECT_CODES",
    "PUBACK_CODES",
    "PUBCOMP_CODES",
    "PUBREC_CODES",
    "PUBREL_CODES",
    "SUBACK_V3_CODES",
    "SUBACK_V5_CODES",
    "UNSUBACK_CODES",
    "ConnackReturnCode",
    "ReasonCode",
    "connack_return_code_v3",
    "reason_name",
    "suback_return_code_v3",
]


class ReasonCode(IntEnum):
    """Every MQTT 5.0 reason code. Several numbers carry more than one name in the
    spec (0x00 is Success, Normal disconnection and Granted QoS 0); the first name is
    canonical and the others are enum aliases."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnackReturnCode(IntEnum):
    """MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


R = ReasonCode

CONNACK_V5_CODES = frozenset(
    {
        R.SUCCESS,
        R.UNSPECIFIED_ERROR,
        R.MALFORMED_PACKET,
        R.PROTOCOL_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR,
        R.UNSUPPORTED_PROTOCOL_VERSION,
        R.CLIENT_IDENTIFIER_NOT_VALID,
        R.BAD_USER_NAME_OR_PASSWORD,
        R.NOT_AUTHORIZED,
        R.SERVER_UNAVAILABLE,
        R.SERVER_BUSY,
        R.BANNED,
        R.BAD_AUTHENTICATION_METHOD,
        R.TOPIC_NAME_INVALID,
        R.PACKET_TOO_LARGE,
        R.QUOTA_EXCEEDED,
        R.PAYLOAD_FORMAT_INVALID,
        R.RETAIN_NOT_SUPPORTED,
        R.QOS_NOT_SUPPORTED,
        R.USE_ANOTHER_SERVER,
        R.SERVER_MOVED,
        R.CONNECTION_RATE_EXCEEDED,
    }
)
CONNACK_V3_CODES = frozenset(int(c) for c in ConnackReturnCode)

PUBACK_CODES = frozenset(
    {
        R.SUCCESS,
        R.NO_MATCHING_SUBSCRIBERS,
        R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR,
        R.NOT_AUTHORIZED,
        R.TOPIC_NAME_INVALID,
        R.PACKET_IDENTIFIER_IN_USE,
        R.QUOTA_EXCEEDED,
        R.PAYLOAD_FORMAT_INVALID,
    }
)
PUBREC_CODES = PUBACK_CODES
PUBREL_CODES = frozenset({R.SUCCESS, R.PACKET_IDENTIFIER_NOT_FOUND})
PUBCOMP_CODES = PUBREL_CODES

SUBACK_V5_CODES = frozenset(
    {
        R.GRANTED_QOS_0,
        R.GRANTED_QOS_1,
        R.GRANTED_QOS_2,
        R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR,
        R.NOT_AUTHORIZED,
        R.TOPIC_FILTER_INVALID,
        R.PACKET_IDENTIFIER_IN_USE,
        R.QUOTA_EXCEEDED,
        R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
        R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    }
)
SUBACK_V3_CODES = frozenset({0x00, 0x01, 0x02, 0x80})

UNSUBACK_CODES = frozenset(
    {
        R.SUCCESS,
        R.NO_SUBSCRIPTION_EXISTED,
        R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR,
        R.NOT_AUTHORIZED,
        R.TOPIC_FILTER_INVALID,
        R.PACKET_IDENTIFIER_IN_USE,
    }
)

DISCONNECT_CODES = frozenset(
    {
        R.NORMAL_DISCONNECTION,
        R.DISCONNECT_WITH_WILL_MESSAGE,
        R.UNSPECIFIED_ERROR,
        R.MALFORMED_PACKET,
        R.PROTOCOL_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR,
        R.NOT_AUTHORIZED,
        R.SERVER_BUSY,
        R.SERVER_SHUTTING_DOWN,
        R.KEEP_ALIVE_TIMEOUT,
        R.SESSION_TAKEN_OVER,
        R.TOPIC_FILTER_INVALID,
        R.TOPIC_NAME_INVALID,
        R.RECEIVE_MAXIMUM_EXCEEDED,
        R.TOPIC_ALIAS_INVALID,
        R.PACKET_TOO_LARGE,
        R.MESSAGE_RATE_TOO_HIGH,
        R.QUOTA_EXCEEDED,
        R.ADMINISTRATIVE_ACTION,
        R.PAYLOAD_FORMAT_INVALID,
        R.RETAIN_NOT_SUPPORTED,
        R.QOS_NOT_SUPPORTED,
        R.USE_ANOTHER_SERVER,
        R.SERVER_MOVED,
        R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        R.CONNECTION_RATE_EXCEEDED,
        R.MAXIMUM_CONNECT_TIME,
        R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
        R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    }
)

AUTH_CODES = frozenset({R.SUCCESS, R.CONTINUE_AUTHENTICATION, R.RE_AUTHENTICATE})

# MQTT 5 CONNACK reason code -> the closest 3.1.1 return code (what Mosquitto and
# EMQX send). Anything unlisted above 0x80 becomes "server unavailable".
_CONNACK_V5_TO_V3: dict[int, ConnackReturnCode] = {
    R.SUCCESS: ConnackReturnCode.ACCEPTED,
    R.UNSUPPORTED_PROTOCOL_VERSION: ConnackReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    R.CLIENT_IDENTIFIER_NOT_VALID: ConnackReturnCode.IDENTIFIER_REJECTED,
    R.BAD_USER_NAME_OR_PASSWORD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    R.BAD_AUTHENTICATION_METHOD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    R.NOT_AUTHORIZED: ConnackReturnCode.NOT_AUTHORIZED,
    R.BANNED: ConnackReturnCode.NOT_AUTHORIZED,
    R.SERVER_UNAVAILABLE: ConnackReturnCode.SERVER_UNAVAILABLE,
    R.SERVER_BUSY: ConnackReturnCode.SERVER_UNAVAILABLE,
}


def connack_return_code_v3(code: int) -> int:
    """Map a CONNACK code to a 3.1.1 return code. Values 0-5 are taken to be 3.1.1
    return codes already (no MQTT 5 CONNACK code lives there) and pass unchanged."""
    if 0 <= code <= 5:
        return code
    return int(_CONNACK_V5_TO_V3.get(code, ConnackReturnCode.SERVER_UNAVAILABLE))


def suback_return_code_v3(code: int) -> int:
    """Map a SUBACK reason code to 3.1.1: granted QoS stays, every failure is 0x80."""
    return code if code <= 2 else 0x80


def reason_name(code: int) -> str:
    """Human name of an MQTT 5 reason code, or a hex string for unknown values."""
    try:
        return ReasonCode(code).name
    except ValueError:
        return f"0x{code:02X}"
