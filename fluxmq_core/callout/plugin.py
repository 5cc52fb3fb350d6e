"""The external auth callout as a default plugin of the core: ``[auth_external]``.

It answers ``fluxmq_authenticate`` and ``fluxmq_authorize`` by asking an operator's
service (HTTP JSON or gRPC ``fluxmq.auth.v1.AuthService``), so it applies to every
protocol that goes through :class:`~fluxmq_core.auth.AuthService`: MQTT, AMQP 0.9.1
and 1.0, HTTP, CoAP and the queue API. It **fails closed**: a timeout, a connection error, an open
circuit breaker or a malformed answer refuses the login or the action.

Why in the core and not a plugin distribution: the HTTP transport needs only the
standard library and h11 (already a core dependency), and auth that is one config
key away is what operators expect. The gRPC transport imports ``grpcio`` and
``protobuf`` only when configured, and says which package is missing otherwise.

Caching: the auth service caches each authorization decision, allow or deny, per
client, action and topic (bounded by ``[auth] cache_size``, cleared at disconnect and
on reload), so a publish stream costs one callout per topic, not per message. This
plugin bounds it further, as EMQX's authorization cache does: ``cache_ttl`` (an
answer is asked again after that many seconds) and ``cache_size`` (answers kept per
client), declared through :class:`~fluxmq_core.contracts.AuthSetup`. This
plugin keeps, per client, the identity the service returned at login (``id``): it is
sent back as ``external_id`` in authorization calls and shown in the admin API's
session view as ``extra.external_id``. Subscriptions are authorized per filter, as
the Go FluxMQ does, not per delivered topic (``AuthSetup.per_delivery = False``).

While ``url`` is empty the plugin declares that it neither authenticates nor
authorizes (``fluxmq_auth_setup``), so it costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from fluxmq_core.callout.config import ExternalAuthConfig
from fluxmq_core.callout.hooks import HooksConfig
from fluxmq_core.callout.hooks import build as build_hooks
from fluxmq_core.callout.transport import (
    Breaker,
    CalloutError,
    GrpcCaller,
    HttpCaller,
    Policy,
)
from fluxmq_core.contracts import AuthConfig, AuthRequest, AuthResult, AuthSetup
from fluxmq_core.errors import AuthError
from fluxmq_core.hookspecs import hookimpl

log = logging.getLogger("fluxmq.auth.external")

KEY = "auth_external"
#: Our protocol names -> the contract's ``Protocol`` enum (number, JSON name).
PROTOCOL_ENUM = {
    "mqtt": (1, "MQTT"),
    "amqp1": (2, "AMQP_1_0"),
    "amqp091": (3, "AMQP_0_9_1"),
    "http": (4, "HTTP"),
    "coap": (5, "CoAP"),
    # The contract has no value for the queue API; the Go FluxMQ serves it over HTTP
    # (Connect on its admin listener), so its calls are sent as HTTP.
    "queue-api": (4, "HTTP"),
}
ACTION_ENUM = {"publish": (1, "Publish"), "subscribe": (2, "Subscribe")}
MAX_CLIENTS = 100_000  # identities kept; the oldest go first (HTTP has no disconnect)


class ExternalAuth:
    """One configured callout: the transport, its policy, and per-client identities."""

    def __init__(self, cfg: ExternalAuthConfig, clock: Any = time.monotonic) -> None:
        self.cfg = cfg
        self.policy = Policy(
            timeout=cfg.timeout,
            retries=cfg.retries,
            backoff=cfg.backoff,
            breaker=Breaker(cfg.breaker_failures, cfg.breaker_reset, clock),
        )
        self.http: HttpCaller | None = None
        self.grpc: GrpcCaller | None = None
        if cfg.transport == "grpc":
            self.grpc = GrpcCaller(cfg.url)
        else:
            self.http = HttpCaller(cfg.url)
        self.enabled = frozenset(cfg.protocols or PROTOCOL_ENUM)
        #: client_id -> (protocol, external id or None)
        self.clients: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self.calls = 0
        self.failures = 0

    def applies(self, protocol: str) -> bool:
        return protocol in self.enabled

    def summary(self) -> str:
        return f"external auth service {self.cfg.url} ({self.cfg.transport})"

    # --- the two calls --------------------------------------------------------------------

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        password = (request.password or b"").decode("utf-8", "replace")
        try:
            if self.grpc is not None:
                pb = self.grpc.pb
                res = await self._call(
                    lambda: self.grpc.call(
                        "/fluxmq.auth.v1.AuthService/Authenticate",
                        pb.AuthnReq(
                            client_id=request.client_id,
                            username=request.username or "",
                            password=password,
                            protocol=PROTOCOL_ENUM.get(request.protocol, (0, ""))[0],
                        ),
                        pb.AuthnRes,
                    )
                )
                ok, ext_id, reason = res.authenticated, res.id, res.reason
            else:
                body = await self._call(
                    lambda: self.http.post(  # type: ignore[union-attr]
                        "/auth/authenticate",
                        {
                            "client_id": request.client_id,
                            "username": request.username or "",
                            "password": password,
                            "protocol": PROTOCOL_ENUM.get(request.protocol, (0, "Unspecified"))[1],
                            "remote": request.remote,
                        },
                    )
                )
                ok = body.get("authenticated")
                ext_id = body.get("id", "")
                reason = body.get("reason", "")
                if not isinstance(ok, bool) or not isinstance(ext_id, str):
                    self._failed("malformed answer: 'authenticated' must be a boolean")
                    return AuthResult(ok=False, reason="auth service gave a malformed answer")
        except CalloutError as exc:
            self._failed(exc.reason)
            return AuthResult(ok=False, reason=f"auth service unavailable: {exc.reason}")
        if not ok:
            return AuthResult(ok=False, reason=str(reason or "refused by the auth service"))
        self._remember(request.client_id, request.protocol, ext_id or None)
        return AuthResult(
            ok=True,
            username=request.username,
            reason="external auth service",
            attributes={"external_id": ext_id} if ext_id else None,
        )

    async def authorize(
        self, client_id: str, username: str | None, action: str, topic: str
    ) -> bool:
        known = self.clients.get(client_id)
        external_id = (known[1] if known else None) or username or client_id
        try:
            if self.grpc is not None:
                pb = self.grpc.pb
                res = await self._call(
                    lambda: self.grpc.call(
                        "/fluxmq.auth.v1.AuthService/Authorize",
                        pb.AuthzReq(
                            external_id=external_id,
                            topic=topic,
                            action=ACTION_ENUM.get(action, (0, ""))[0],
                        ),
                        pb.AuthzRes,
                    )
                )
                return bool(res.authorized)
            body = await self._call(
                lambda: self.http.post(  # type: ignore[union-attr]
                    "/auth/authorize",
                    {
                        "external_id": external_id,
                        "client_id": client_id,
                        "username": username or "",
                        "topic": topic,
                        "action": ACTION_ENUM.get(action, (0, "None"))[1],
                    },
                )
            )
        except CalloutError as exc:
            self._failed(exc.reason)
            # Raised, not answered False: the auth service then denies without
            # caching, so the next attempt asks again once the service is back.
            raise AuthError("not-authorized", f"auth service unavailable: {exc.reason}") from None
        decision = body.get("authorized")
        if not isinstance(decision, bool):
            self._failed("malformed answer: 'authorized' must be a boolean")
            raise AuthError("not-authorized", "auth service gave a malformed answer")
        return decision

    async def _call(self, attempt: Any) -> Any:
        self.calls += 1
        return await self.policy.run(attempt)

    def _failed(self, reason: str) -> None:
        self.failures += 1
        log.warning("auth callout to %s failed (failing closed): %s", self.cfg.url, reason)

    # --- identities -----------------------------------------------------------------------

    def _remember(self, client_id: str, protocol: str, ext_id: str | None) -> None:
        clients = self.clients
        clients[client_id] = (protocol, ext_id)
        clients.move_to_end(client_id)
        while len(clients) > MAX_CLIENTS:
            clients.popitem(last=False)

    def forget(self, client_id: str) -> None:
        self.clients.pop(client_id, None)

    def rename(self, old: str, new: str) -> None:
        """A client that logged in under a provisional id goes on under its own
        (AMQP 1.0 authenticates in SASL, before its open names its container-id)."""
        known = self.clients.pop(old, None)
        if known is not None:
            self._remember(new, *known)

    def annotate(self, info: Any) -> None:
        known = self.clients.get(info.client_id)
        if known is not None and known[1] and known[0] == info.protocol:
            info.extra["external_id"] = known[1]

    async def close(self) -> None:
        if self.grpc is not None:
            await self.grpc.close()


def _state(context: Any) -> ExternalAuth | None:
    return context.extras.get(KEY) if context is not None else None


# --- hookimpls --------------------------------------------------------------------------------


@hookimpl
def fluxmq_add_config() -> dict[str, Any]:
    return {KEY: ExternalAuthConfig, "hooks": HooksConfig}


@hookimpl
def fluxmq_auth_setup(context: Any, config: AuthConfig) -> AuthSetup:
    """Build (or rebuild, on reload) the callout from ``[auth_external]``. Known
    identities survive a reload; the breaker starts closed."""
    # The blocking hooks are (re)built here too: this runs at start-up, before any
    # listener, and on every reload, which is exactly when [hooks] may change.
    context.hooks = build_hooks(context)
    cfg: ExternalAuthConfig = context.config.section(KEY)
    old = _state(context)
    if old is not None:
        try:
            context.sessions.annotators.remove(old.annotate)
        except ValueError:
            pass
    if not cfg.url:
        context.extras.pop(KEY, None)
        return AuthSetup()
    new = ExternalAuth(cfg, context.clock)
    if old is not None:
        new.clients.update(old.clients)
    context.extras[KEY] = new
    context.sessions.annotators.append(new.annotate)
    return AuthSetup(
        authenticates=True,
        authorizes=cfg.authorize,
        summary=new.summary(),
        per_delivery=False,
        cache_ttl=cfg.cache_ttl,
        cache_per_client=cfg.cache_size,
    )


@hookimpl
def fluxmq_authenticate(context: Any, request: AuthRequest) -> Awaitable[AuthResult] | None:
    """Not ``async def``: while the callout is off (or the protocol not selected)
    the answer is a plain ``None``, which synchronous callers can use too."""
    ext = _state(context)
    if ext is None or request.method is not None:
        return None  # enhanced auth (SCRAM...) is the methods' business
    if not ext.applies(request.protocol):
        ext._remember(request.client_id, request.protocol, None)
        return None
    return ext.authenticate(request)


@hookimpl
def fluxmq_authorize(
    context: Any, client_id: str, username: str | None, action: str, topic: str
) -> Awaitable[bool] | None:
    """A coroutine only when the callout decides (see :func:`fluxmq_authenticate`)."""
    ext = _state(context)
    if ext is None or not ext.cfg.authorize:
        return None
    known = ext.clients.get(client_id)
    if known is not None and not ext.applies(known[0]):
        return None
    return ext.authorize(client_id, username, action, topic)


@hookimpl
def fluxmq_client_disconnected(context: Any, protocol: str, client_id: str, reason: str) -> None:
    ext = _state(context)
    if ext is not None:
        ext.forget(client_id)


@hookimpl
async def fluxmq_shutdown(context: Any) -> None:
    ext = _state(context)
    if ext is not None:
        await ext.close()


__all__ = ["ExternalAuth"]
