"""Every hook a FluxMQ plugin can implement: the plugin contract.

Hooks are for start-up, lifecycle and rare events. Messages never travel through
``pm.hook``: factory hooks (``fluxmq_register_servers``) hand the core objects once
and the hot path calls those objects. The per-message observer hooks
(``fluxmq_message_published``, ``..._delivered``, ``..._dropped``) are called only
when some plugin implements them; the core checks once at start-up.

Any hookimpl may return a plain value or an awaitable; the core awaits either
(:func:`fluxmq_core.plugins.await_me_maybe`). Observer hooks must not raise: an
exception is logged with the plugin's name and the broker carries on.

The types hooks receive and return live in leaf modules (:mod:`fluxmq_core.contracts`,
:mod:`fluxmq_core.errors`, :mod:`fluxmq_core.message`); this module imports no service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.contracts import AuthConfig, AuthRequest, SubscriptionOptions
    from fluxmq_core.message import Message

hookspec = pluggy.HookspecMarker("fluxmq")
hookimpl = pluggy.HookimplMarker("fluxmq")


# --- start-up and lifecycle -------------------------------------------------------


@hookspec
def fluxmq_add_config() -> Any:
    """Declare configuration sections.

    Return a dict mapping a section name (``"mqtt"``) to a dataclass type whose
    fields, with types and defaults, are the section's keys. The core fills it from
    the TOML file, ``FLUXMQ_<SECTION>__<KEY>`` environment variables and CLI flags,
    rejects unknown keys and wrong types, and makes the instance available as
    ``context.config.section("mqtt")``. Called once, before anything starts.
    """


@hookspec
def fluxmq_register_servers(context: BrokerContext) -> Any:
    """Return the protocol servers this plugin runs, as a list.

    Each item is a :class:`fluxmq_core.transport.ProtocolServer`: it names its
    listeners (``host:port`` from config; empty disables) and gives a factory for
    ``asyncio.Protocol`` objects, plus optional ``start``/``stop`` coroutines. The
    core binds the sockets (sharing one between protocols when addresses collide) and
    owns their lifecycle. Called once after storage and cluster are up.
    """


@hookspec
def fluxmq_startup(context: BrokerContext) -> Any:
    """Called once after every server is listening; may be async.

    Use it to start background tasks. An exception here aborts start-up with the
    plugin's name in the error: the broker never runs half-started.
    """


@hookspec
def fluxmq_shutdown(context: BrokerContext) -> Any:
    """Called once when the broker stops, after listeners have closed and before
    storage is flushed; may be async. Must finish promptly (the core bounds it)."""


@hookspec
def fluxmq_reload(context: BrokerContext) -> Any:
    """Called on SIGHUP (and the admin reload endpoint) after the core re-read its
    reloadable settings (log level, users, ACL). Plugins refresh what they can."""


# --- authentication and authorization (first answer wins) ----------------------------


@hookspec
def fluxmq_auth_setup(context: BrokerContext, config: AuthConfig) -> Any:
    """Prepare this plugin's authentication/authorization sources and say what they are.

    Called synchronously when the auth service is built (before any listener opens)
    and again on every reload, with the ``[auth]`` section as it is then. Read your
    files or connect your directory here, keep the state on your plugin object (or in
    ``context.extras``), and return an :class:`fluxmq_core.contracts.AuthSetup`
    saying whether your ``fluxmq_authenticate`` may accept usernames
    (``authenticates``), whether your ``fluxmq_authorize`` decides anything
    (``authorizes``; when no plugin does, authorization costs nothing per message),
    the enhanced-auth methods you offer, and a one-line summary for the start-up log.
    Return ``None`` to say nothing (then implementing ``fluxmq_authenticate`` /
    ``fluxmq_authorize`` counts as both). Raise (e.g.
    :class:`fluxmq_core.errors.AuthFileError`) to refuse the configuration: at
    start-up the broker stops with the error, on reload the previous setup stays.
    """


@hookspec(firstresult=True)
def fluxmq_authenticate(context: BrokerContext, request: AuthRequest) -> Any:
    """Decide whether a connecting client may log in.

    ``request`` (:class:`fluxmq_core.contracts.AuthRequest`) carries the protocol,
    client id, username (``None`` also for a zero-length one), password, peer address
    (``remote``; ``request.local`` says whether it is on this machine) and TLS peer
    certificate identity. Return an :class:`fluxmq_core.contracts.AuthResult` (or an
    awaitable of one) to decide, or ``None`` to let the next plugin decide. The first
    non-``None`` answer wins; when none answers, the ``[auth] anonymous`` setting
    decides for clients without credentials and everyone else is refused.
    """


@hookspec(firstresult=True)
def fluxmq_authorize(
    context: BrokerContext, client_id: str, username: str | None, action: str, topic: str
) -> Any:
    """Decide whether ``client_id`` may ``action`` (``"publish"`` or ``"subscribe"``)
    on ``topic`` (a topic name, or a filter for subscribe).

    Return ``True``/``False`` (or an awaitable of one) to decide, ``None`` to pass.
    The first non-``None`` answer wins; with no answer the action is allowed. The core
    caches decisions per (client, action, topic) and clears the cache on reload and
    on disconnect, so this is not called per message. Under ``[auth] acl_subscribe =
    "filter"`` a ``"subscribe"`` check also comes with a topic name for each topic a
    wildcard subscription delivers; answer those synchronously (a plain value), as
    the delivery path cannot wait: an awaitable answer drops that first message
    (counted, "not authorized") and decides the following ones once it resolved.
    """


# --- observers: clients ------------------------------------------------------------------


@hookspec
def fluxmq_client_connected(
    context: BrokerContext, protocol: str, client_id: str, username: str | None, remote: str
) -> None:
    """A client finished its handshake and was accepted."""


@hookspec
def fluxmq_client_disconnected(
    context: BrokerContext, protocol: str, client_id: str, reason: str
) -> None:
    """A client's connection ended; ``reason`` says why (``"normal"``,
    ``"keepalive timeout"``, ``"protocol error: ..."``, ``"takeover"``...)."""


@hookspec
def fluxmq_client_subscribed(
    context: BrokerContext,
    protocol: str,
    client_id: str,
    topic_filter: str,
    options: SubscriptionOptions,
) -> None:
    """A subscription was created or replaced."""


@hookspec
def fluxmq_client_unsubscribed(
    context: BrokerContext, protocol: str, client_id: str, topic_filter: str
) -> None:
    """A subscription was removed."""


# --- observers: messages (called only when implemented) --------------------------------


@hookspec
def fluxmq_message_published(context: BrokerContext, message: Message) -> None:
    """A message entered the router. Keep it cheap: it runs on the publish path."""


@hookspec
def fluxmq_message_delivered(
    context: BrokerContext, message: Message, protocol: str, client_id: str
) -> None:
    """A message was handed to a subscriber's connection."""


@hookspec
def fluxmq_message_dropped(
    context: BrokerContext, message: Message, protocol: str, client_id: str, reason: str
) -> None:
    """A message was not delivered to a subscriber; ``reason`` says why
    (``"expired"``, ``"queue full"``, ``"not authorized"``, ``"too large"``...)."""
