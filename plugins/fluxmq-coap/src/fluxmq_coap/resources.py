"""What a CoAP request means, decided without any I/O: the resource a Uri-Path names,
the query parameters, Content-Format <-> content type, and the option numbers we
understand.

Kept apart from :mod:`fluxmq_coap.server` (which talks aiocoap and the broker) so
that the parsing that is ours can be tested and fuzzed on its own.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Kind",
    "Query",
    "QueryError",
    "Target",
    "content_format_for",
    "content_type_for",
    "is_critical",
    "parse_query",
    "route",
    "split_hostport",
]


class Kind(enum.Enum):
    """What a path names."""

    PS = "ps"  # /ps/<topic...>: publish, retained GET/DELETE, Observe
    PUBLISH = "publish"  # the Go FluxMQ's publish-only paths
    HEALTH = "health"
    WELL_KNOWN = "well-known"
    PS_ROOT = "ps-root"  # /ps itself: only discovery
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Target:
    """The resource a request addresses; ``topic`` is the MQTT topic (or filter)."""

    kind: Kind
    topic: str = ""


def route(path: Iterable[str], compat: bool = True) -> Target:
    """Map Uri-Path segments (already percent-decoded by the CoAP layer, so ``%23``
    arrives as ``#``) to a :class:`Target`. Slashes between segments are topic
    levels; an empty segment is an empty level (``/ps/a//b`` is ``a//b``)."""
    segments = tuple(path)
    if segments == (".well-known", "core"):
        return Target(Kind.WELL_KNOWN)
    if segments == ("health",):
        return Target(Kind.HEALTH)
    if segments and segments[0] == "ps":
        if len(segments) == 1 or segments[1:] == ("",):
            return Target(Kind.PS_ROOT)
        return Target(Kind.PS, "/".join(segments[1:]))
    if not compat:
        return Target(Kind.UNKNOWN)
    if segments[:2] == ("mqtt", "publish") and len(segments) > 2:
        return Target(Kind.PUBLISH, "/".join(segments[2:]))
    if segments and segments != ("",):
        return Target(Kind.PUBLISH, "/".join(segments))
    return Target(Kind.UNKNOWN)


class QueryError(ValueError):
    """A query parameter that cannot be used: answered 4.00 Bad Request."""


@dataclass(slots=True)
class Query:
    """The query parameters we understand (see ``docs/protocols/coap.md``)."""

    qos: int = 0
    retain: bool = False
    client_id: str | None = None
    username: str | None = None
    password: bytes | None = None
    group: str | None = None


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_KEYS = {"qos", "retain", "client_id", "clientid", "username", "password", "authorization", "group"}


def parse_query(items: Iterable[str]) -> Query:
    """Parse Uri-Query options (each ``key=value``; ``retain`` alone means true).

    Unknown keys and repeated keys are refused rather than ignored, so that a typo
    (``retian=true``) is not silently a non-retained publish. ``authorization`` is
    ``Basic <base64 user:password>`` or ``Bearer <token>`` (the token becomes the
    password with no username, for token-checking auth plugins).
    """
    q = Query()
    seen: set[str] = set()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise QueryError(f"unknown query parameter {key!r} (known: {', '.join(sorted(_KEYS))})")
        if key == "clientid":
            key = "client_id"
        if key in seen:
            raise QueryError(f"query parameter {key!r} given twice")
        seen.add(key)
        if key == "qos":
            if value not in ("0", "1", "2"):
                raise QueryError(f"qos must be 0, 1 or 2; got {value!r}")
            q.qos = int(value)
        elif key == "retain":
            v = value.strip().lower() if sep else "true"
            if v in _TRUE:
                q.retain = True
            elif v in _FALSE:
                q.retain = False
            else:
                raise QueryError(f"retain must be true or false; got {value!r}")
        elif key == "client_id":
            if not value or len(value) > 256:
                raise QueryError("client_id must be 1..256 characters")
            q.client_id = value
        elif key == "username":
            q.username = value
        elif key == "password":
            q.password = value.encode()
        elif key == "group":
            if not value or "/" in value or "+" in value or "#" in value:
                raise QueryError(f"group must be a non-empty name without / + #; got {value!r}")
            q.group = value
        else:  # authorization
            q.username, q.password = _authorization(value)
    if "authorization" in seen and ("username" in seen or "password" in seen):
        raise QueryError("give either authorization or username/password, not both")
    return q


def _authorization(value: str) -> tuple[str | None, bytes]:
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and rest.strip():
        return None, rest.strip().encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise QueryError("authorization Basic must be base64 of user:password") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise QueryError("authorization Basic must be base64 of user:password")
        return user, password.encode()
    raise QueryError("authorization must be 'Basic <base64 user:password>' or 'Bearer <token>'")


# Content-Format registry entries (RFC 7252 12.3 and the IANA CoAP registry) that map
# to a media type; anything else travels as "application/coap-cf-<n>" so that a
# CoAP -> CoAP round trip keeps the number.
_CF_TO_TYPE: dict[int, str] = {
    0: "text/plain; charset=utf-8",
    16: 'application/cose; cose-type="cose-encrypt0"',
    40: "application/link-format",
    41: "application/xml",
    42: "application/octet-stream",
    47: "application/exi",
    50: "application/json",
    51: "application/json-patch+json",
    52: "application/merge-patch+json",
    60: "application/cbor",
    61: "application/cwt",
    110: "application/senml+json",
    112: "application/senml+cbor",
    11050: "application/json",  # legacy duplicate numbers map to the same type
}
_TYPE_TO_CF: dict[str, int] = {}
for _n, _t in _CF_TO_TYPE.items():
    _TYPE_TO_CF.setdefault(_t.replace(" ", "").lower(), _n)
_TYPE_TO_CF["text/plain"] = 0
_CF_PREFIX = "application/coap-cf-"


def content_type_for(content_format: int | None) -> str | None:
    """The message content type for a request's Content-Format (None: no option)."""
    if content_format is None:
        return None
    known = _CF_TO_TYPE.get(content_format)
    return known if known is not None else f"{_CF_PREFIX}{content_format}"


def content_format_for(content_type: str | None) -> int | None:
    """The Content-Format for a message's content type, or None when CoAP has no
    number for it (the option is then left out)."""
    if not content_type:
        return None
    norm = content_type.replace(" ", "").lower()
    if norm.startswith(_CF_PREFIX):
        digits = norm[len(_CF_PREFIX) :]
        if digits.isdigit() and int(digits) <= 0xFFFF:
            return int(digits)
        return None
    cf = _TYPE_TO_CF.get(norm)
    if cf is None:
        cf = _TYPE_TO_CF.get(norm.split(";", 1)[0])
    return cf


#: Option numbers this server acts on or may safely ignore (RFC 7252, 7641, 7959,
#: 7967, 8613, 9175): an unknown *critical* option in a request is answered 4.02
#: Bad Option (RFC 7252 5.4.1) instead of being ignored.
KNOWN_OPTIONS = frozenset(
    {1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 258, 292}
)


def is_critical(option_number: int) -> bool:
    """RFC 7252 5.4.6: odd option numbers are critical."""
    return option_number & 1 == 1


def split_hostport(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``; ValueError when bad."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"expected host:port, got {address!r}")
    return host, int(port)
