"""The ``[coap]`` config section: :class:`CoAPConfig`.

Every key is read by :mod:`fluxmq_coap.server`; the help texts are what ``fluxmq
config init`` writes and what ``docs/protocols/coap.md`` lists. Validation happens in
``__post_init__`` and names the key, so a bad value stops the broker at start-up
instead of surfacing as a confusing runtime error.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from fluxmq_coap.resources import split_hostport
from fluxmq_core.config import setting

__all__ = ["CoAPConfig", "DTLS_UNAVAILABLE", "dtls_available", "load_psk_file"]

#: Why ``dtls_bind`` refuses when the DTLS extra is missing: said once here so the
#: config error, the docs and the tests agree on it.
DTLS_UNAVAILABLE = (
    "CoAP over DTLS needs aiocoap's 'tinydtls' extra (the DTLSSocket C extension), "
    "which is not installed: pip install 'fluxmq-coap[dtls]' (DTLSSocket has no wheel; "
    "building it needs a C compiler, autoconf, automake and libtool), or leave "
    "coap.dtls_bind empty"
)


def dtls_available() -> bool:
    """Whether DTLSSocket (aiocoap's tinydtls transport) can be imported."""
    return importlib.util.find_spec("DTLSSocket") is not None


def load_psk_file(path: str) -> dict[str, bytes]:
    """``identity -> key`` from a DTLS pre-shared-key file: one ``identity:key`` per
    line (the key is the rest of the line, UTF-8), ``#`` comments and blank lines
    ignored. Raises ValueError naming the line for anything else, as a PSK has to be
    the secret itself (the password file's hashes cannot serve a DTLS handshake)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"coap.dtls_psk_file {path!r} cannot be read: {exc}") from None
    keys: dict[str, bytes] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        identity, sep, key = line.partition(":")
        if not sep or not identity or not key:
            raise ValueError(f"coap.dtls_psk_file {path}:{n}: expected 'identity:key'")
        if identity in keys:
            raise ValueError(f"coap.dtls_psk_file {path}:{n}: identity {identity!r} repeated")
        keys[identity] = key.encode()
    if not keys:
        raise ValueError(f"coap.dtls_psk_file {path!r} has no 'identity:key' line")
    return keys


@dataclass
class CoAPConfig:
    """[coap]: CoAP (RFC 7252) over UDP: publish, retained, Observe, block-wise.

    Topics live under ``/ps/<topic>``; see ``docs/protocols/coap.md``."""

    bind: str = setting(
        "0.0.0.0:5683",
        "CoAP listener (UDP, host:port; [::] for IPv6 too); empty disables it.",
        listener=True,
    )
    dtls_bind: str = setting(
        "",
        "CoAP over DTLS listener with pre-shared keys (UDP, usually 0.0.0.0:5684); empty "
        "disables it. Needs the 'dtls' extra (pip install 'fluxmq-coap[dtls]') and "
        "dtls_psk_file.",
    )
    dtls_psk_file: str = setting(
        "",
        "DTLS pre-shared keys, one 'identity:key' per line (the key in clear: a PSK "
        "cannot be derived from the password file's hashes). A peer that completes the "
        "handshake is logged in as that identity (the username the ACL sees).",
    )
    max_message_size: int = setting(
        256 * 1024,
        "Largest payload in bytes accepted from a publish (after block-wise assembly; "
        "larger: 4.13 Request Entity Too Large) or sent to an observer (larger messages "
        "are not notified and count in messages_dropped).",
    )
    notify_con_every: int = setting(
        8,
        "Every n-th Observe notification is sent confirmable (CON), the others NON, as "
        "RFC 7641 permits; 1 = every notification is CON. A CON left unanswered through "
        "its retransmissions ends the observer's observations.",
    )
    max_unacked: int = setting(
        4,
        "Deliveries a $queue/ observer may leave unacknowledged at once (each is a "
        "confirmable notification). Other observers have one confirmable notification "
        "outstanding at a time; the next waits for its ACK and messages queue meanwhile "
        "(see max_queued).",
    )
    notify_ack_timeout: float = setting(
        2.0,
        "Seconds before a confirmable notification is first retransmitted (RFC 7252 "
        "ACK_TIMEOUT; doubles per retransmission).",
    )
    notify_max_retransmit: int = setting(
        4,
        "Retransmissions of a confirmable notification before the observer is presumed "
        "gone and all its observations end (RFC 7252 MAX_RETRANSMIT; 0 = none).",
    )
    max_queued: int = setting(
        1000,
        "Notifications queued per observer while it is slower than its publishers; "
        "past it the oldest is dropped (counted in session_queue_dropped).",
    )
    max_observers: int = setting(
        10000, "Observations held at once over all clients (past it: 5.03); 0 = unlimited."
    )
    publish_timeout: float = setting(
        10.0,
        "Seconds a confirmable publish to a $queue/ topic may wait for the durable append "
        "before it is answered 5.03 Service Unavailable.",
    )
    auth_cache_ttl: float = setting(
        30.0,
        "Seconds a login decision (per remote address and credentials) is reused by "
        "later requests; CoAP has no connection to hold it. 0 = decide every request.",
    )
    compat_paths: bool = setting(
        True,
        "Also publish on the Go FluxMQ's paths: POST/PUT /<topic...> and /mqtt/publish/<topic...>.",
    )
    queue_group: str = setting(
        "coap",
        "Consumer group an Observe of a $queue/<name>/... filter joins unless the "
        "request names one with ?group=.",
    )

    def __post_init__(self) -> None:
        def check(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"coap.{key} {what}; got {getattr(self, key)!r}")

        if self.bind:
            try:
                split_hostport(self.bind)
            except ValueError as exc:
                raise ValueError(f"coap.bind: {exc}") from None
        if self.dtls_bind:
            try:
                split_hostport(self.dtls_bind)
            except ValueError as exc:
                raise ValueError(f"coap.dtls_bind: {exc}") from None
            if not dtls_available():
                raise ValueError(f"coap.dtls_bind = {self.dtls_bind!r}: {DTLS_UNAVAILABLE}")
            if not self.dtls_psk_file:
                raise ValueError(
                    f"coap.dtls_bind = {self.dtls_bind!r} needs coap.dtls_psk_file "
                    "(identity:key lines): DTLS here is pre-shared keys only"
                )
            load_psk_file(self.dtls_psk_file)  # a bad file stops the start, naming the line
        check(self.max_message_size >= 1, "max_message_size", "must be >= 1")
        check(self.notify_con_every >= 1, "notify_con_every", "must be >= 1")
        check(self.max_unacked >= 1, "max_unacked", "must be >= 1")
        check(0.01 <= self.notify_ack_timeout <= 60, "notify_ack_timeout", "must be 0.01..60")
        check(0 <= self.notify_max_retransmit <= 10, "notify_max_retransmit", "must be 0..10")
        check(self.max_queued >= 1, "max_queued", "must be >= 1")
        check(self.max_observers >= 0, "max_observers", "must be >= 0")
        check(self.publish_timeout > 0, "publish_timeout", "must be > 0")
        check(self.auth_cache_ttl >= 0, "auth_cache_ttl", "must be >= 0")
        check(bool(self.queue_group), "queue_group", "must not be empty")
