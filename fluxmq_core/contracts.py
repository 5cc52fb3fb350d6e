"""The types of the plugin contract: what hooks receive and return.

A leaf module (it imports only :mod:`fluxmq_core.errors` and the ``setting`` helper
of :mod:`fluxmq_core.config`, both leaves themselves),
so :mod:`fluxmq_core.hookspecs`, the services and plugins can all import it without
pulling in a service. Services import the contract, never the other way round.

Held here: the login request and decision (:class:`AuthRequest`,
:class:`AuthResult`), the enhanced-authentication step protocol (:class:`Step`,
:class:`EnhancedAuth`, :data:`EnhancedFactory`), what an auth plugin declares about
itself (:class:`AuthSetup`), the subscription options every protocol hands the router
(:class:`SubscriptionOptions`, which :mod:`fluxmq_core.router.types` re-exports), the
authorization action names, and the one rule for "is this peer on this machine" that
the anonymous-access policy and the admin API share.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fluxmq_core.config import setting
from fluxmq_core.errors import AuthError, AuthFileError

__all__ = [
    "PUBLISH",
    "SUBSCRIBE",
    "AuthConfig",
    "AuthError",
    "AuthFileError",
    "AuthRequest",
    "AuthResult",
    "AuthSetup",
    "EnhancedAuth",
    "EnhancedFactory",
    "Step",
    "SubscriptionOptions",
    "is_loopback",
    "peer_is_local",
]

#: Authorization actions passed to ``fluxmq_authorize``. ``SUBSCRIBE`` is asked with a
#: filter when a client subscribes and, under ``[auth] acl_subscribe = "filter"``,
#: with each topic name delivered through a wildcard subscription (may this client
#: *read* this topic).
PUBLISH = "publish"
SUBSCRIBE = "subscribe"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address, without port) is a loopback address:
    127.0.0.0/8, ``::1`` or an IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def peer_is_local(remote: str) -> bool:
    """Whether a peer written as the transports write it (``host:port``, ``[v6]:port``
    or ``unix:<path>``) is on this machine. Unknown (``"?"``, ``""``) is not local."""
    if remote.startswith("unix:"):
        return True
    if is_loopback(remote):
        return True
    host, sep, _port = remote.rpartition(":")
    return bool(sep) and is_loopback(host)


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """Per-subscription options a protocol hands the router; non-MQTT protocols
    leave the defaults (MQTT 5 granted QoS, No Local, Retain As Published, Retain
    Handling, subscription identifier)."""

    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Everything known about a client at login.

    ``remote`` is the peer address as ``host:port`` (``"?"`` when unknown); the
    anonymous policy (``[auth] anonymous = "local"``) reads it through
    :attr:`local`. ``tls_identity`` is the client certificate's subject CN when TLS
    client authentication was used; ``method`` names an enhanced authentication
    method (MQTT 5 AUTH, AMQP SASL mechanism) when one was asked for.
    ``default_login`` marks credentials a client library sends when its user gave
    none (AMQP's ``guest``/``guest``): when no plugin knows them, they count as no
    credentials, so the anonymous rules apply, as RabbitMQ lets ``guest`` in from
    localhost only.
    """

    protocol: str
    client_id: str
    username: str | None
    password: bytes | None
    remote: str
    tls_identity: str | None
    method: str | None = None
    default_login: bool = False

    @property
    def local(self) -> bool:
        """The client connects from this machine (loopback address or Unix socket)."""
        return peer_is_local(self.remote)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A login decision.

    ``username`` is the identity to use from now on (for ACLs, events, logs); the
    service fills it from the request when a plugin leaves it ``None`` on success.
    ``reason`` is for logs and protocol reason strings; ``attributes`` is free-form
    data a plugin wants to hand to later hooks (roles, tenant...).
    """

    ok: bool
    username: str | None = None
    reason: str = ""
    attributes: dict | None = None


class Step(enum.StrEnum):
    """What an enhanced-auth step asks the protocol to do next. A ``str`` enum, so
    methods written by plugins may return the plain strings too."""

    CONTINUE = "continue"  # send the data and wait for the client's next message
    SUCCESS = "success"  # authenticated: send the data with the success answer


class EnhancedAuth(Protocol):
    """One exchange of one method, as a plugin implements it.

    ``step`` receives the client's data (the first call gets the data that came with
    the login, e.g. CONNECT's Authentication Data) and returns ``(Step, data for the
    client)``, or an awaitable of that; it raises :class:`AuthError` to refuse.
    ``username`` is the authenticated identity once the step returned ``SUCCESS``.
    It is never called again after ``SUCCESS`` or an error: the session sees to that.
    """

    @property
    def username(self) -> str | None: ...

    def step(self, data: bytes) -> tuple[str, bytes] | Awaitable[tuple[str, bytes]]: ...


#: Makes a method's exchange for one login, given what is known about the client
#: (an :class:`AuthRequest` with ``method`` set and no username or password yet).
#: Returns ``None`` when the method is not available for this client.
EnhancedFactory = Callable[[AuthRequest], "EnhancedAuth | None"]


@dataclass(frozen=True)
class AuthSetup:
    """What an auth plugin says about itself, returned from ``fluxmq_auth_setup``.

    The auth service reads it to apply its policy without knowing the plugin:
    ``authenticates`` (the plugin's ``fluxmq_authenticate`` may accept usernames:
    it is an authentication source; without any source a username is refused),
    ``authorizes`` (its ``fluxmq_authorize`` decides something: when no plugin does,
    authorization costs nothing on the hot path), ``methods`` (enhanced-auth methods
    it offers now, by name), ``summary`` (one line for the start-up log, e.g.
    ``"password file /etc/fluxmq/passwd (3 users)"``), ``per_delivery`` and the
    cache bounds ``cache_ttl`` / ``cache_per_client``. A plugin that implements the
    auth hooks without this hook counts as both a source and an authorizer.
    """

    authenticates: bool = False
    authorizes: bool = False
    methods: Mapping[str, EnhancedFactory] = field(default_factory=dict)
    summary: str = ""
    #: Its ``"subscribe"`` decisions also apply to each delivered topic under
    #: ``[auth] acl_subscribe = "filter"``. A plugin that decides on subscription
    #: filters only (the external callout: a network round trip cannot run per
    #: delivery) says ``False``; deliveries are then checked only while another
    #: authorizing plugin wants them.
    per_delivery: bool = True
    #: Seconds a cached decision of this plugin stays valid (0: until the client
    #: disconnects or a reload). The auth service applies the smallest positive TTL
    #: any authorizing plugin declares to every cached decision.
    cache_ttl: float = 0.0
    #: Decisions cached per client at most (0: only ``[auth] cache_size`` bounds
    #: them); past it the client's oldest decision is dropped. The smallest positive
    #: value declared applies.
    cache_per_client: int = 0


@dataclass
class AuthConfig:
    """The ``[auth]`` config section: who may log in, from where, and what they may do.

    Keys:
        anonymous: who may log in without credentials when no plugin decides:
            ``"local"`` (the default) only clients on this machine (loopback, Unix
            socket), ``true`` everybody, ``false`` nobody. Unless it is ``true``, a
            client that sends a username nobody knows is refused, also when no
            authentication source (password file, auth plugin) is configured.
        password_file: path of a Mosquitto-format password file; ``""`` for none.
        acl_file: path of a TOML ACL file; ``""`` for none (then everything is
            allowed unless a plugin decides otherwise).
        acl_subscribe: how a wildcard subscription meets the ACL. ``"filter"`` (the
            default, as Mosquitto): allowed when an allow rule covers part of it, and
            each delivered message is checked against the subscriber's read rights.
            ``"strict"``: refused unless every topic it could match is allowed.
        cache_size: how many authorization decisions to keep in memory (all
            clients together); when full, the cache is cleared and refills. ``0``
            disables caching (every check asks the plugins).
        use_identity_as_username: take the TLS client certificate's CN as the
            username and skip the password check (Mosquitto's option of the same
            name); clients without a certificate are refused.
    """

    anonymous: bool | Literal["local"] = setting(
        "local",
        'Clients without credentials: "local" (this machine only), true (all) or false (none).',
    )
    password_file: str = setting(
        "", "Mosquitto-format password file ('' for none); see docs/auth.md."
    )
    acl_file: str = setting(
        "", "TOML ACL file ('' for none: everything allowed unless a plugin decides)."
    )
    acl_subscribe: Literal["filter", "strict"] = setting(
        "filter",
        'Wildcard subscriptions: "filter" (allowed if partly readable, deliveries checked) '
        'or "strict" (refused unless wholly readable).',
    )
    cache_size: int = setting(
        100_000, "Authorization decisions kept in memory; 0 disables the cache."
    )
    use_identity_as_username: bool = setting(
        False, "Use the TLS client certificate CN as username and skip the password check."
    )
