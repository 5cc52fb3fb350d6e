"""Authentication and authorization as the rest of the broker sees them.

:class:`AuthService` is what protocols call: ``authenticate`` once per connection,
``authorize_cached`` on the hot path (a dict lookup, or ``True`` straight away when
no authorization is configured at all), ``authorize`` on a cache miss, and
``forget_client`` at disconnect. Decisions come from the ``fluxmq_authenticate`` /
``fluxmq_authorize`` hooks (first answer wins) and, when nobody answers, from
Mosquitto-like defaults described in ``docs/auth.md``.

Multi-step ("enhanced") authentication, MQTT 5's AUTH exchange and AMQP's SASL, goes
through :meth:`AuthService.start_enhanced`, which returns an :class:`EnhancedSession`
the protocol feeds with the client's data until it succeeds or raises
:class:`AuthError`. Methods live in a registry on the service: ``SCRAM-SHA-256``
(:mod:`fluxmq_core.scram`, credentials from the password file) is built in, and a
plugin adds its own with :meth:`AuthService.register_method` from ``fluxmq_startup``.

The built-in password/ACL file provider lives in :mod:`fluxmq_core.auth_file` and is
itself a plugin; this module only owns the service, the request/result types, the
``[auth]`` config section, the enhanced-auth registry and the decision cache. It knows
nothing of protocols.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pluggy

from fluxmq_core import auth_file
from fluxmq_core.auth_file import AuthFileError, FileProvider
from fluxmq_core.config import setting
from fluxmq_core.plugins import await_me_maybe
from fluxmq_core.scram import MECHANISM as SCRAM_SHA_256
from fluxmq_core.scram import ScramError, ScramServer

__all__ = [
    "PUBLISH",
    "SUBSCRIBE",
    "SCRAM_SHA_256",
    "AuthConfig",
    "AuthError",
    "AuthFileError",
    "AuthRequest",
    "AuthResult",
    "AuthService",
    "EnhancedAuth",
    "EnhancedFactory",
    "EnhancedSession",
    "Step",
]

log = logging.getLogger("fluxmq.auth")

PUBLISH = "publish"
SUBSCRIBE = "subscribe"


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Everything known about a client at login.

    ``remote`` is ``host:port``; ``tls_identity`` is the client certificate's subject
    CN when TLS client authentication was used; ``method`` names an enhanced
    authentication method (MQTT 5 AUTH, AMQP SASL mechanism) when one was asked for.
    """

    protocol: str
    client_id: str
    username: str | None
    password: bytes | None
    remote: str
    tls_identity: str | None
    method: str | None = None


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


class AuthError(Exception):
    """An enhanced-authentication exchange failed: bad credentials, a malformed or
    out-of-order message, or an error inside the method. The client is refused.

    ``reason`` is short and safe to send to the client as a protocol reason string
    (for SCRAM an RFC 5802 error value such as ``"invalid-proof"``); ``str()`` may
    say more, for logs. Methods registered by plugins raise it to refuse.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


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
EnhancedFactory = Callable[["AuthRequest"], "EnhancedAuth | None"]


class EnhancedSession:
    """The protocol's handle on one enhanced-auth exchange.

    Call :meth:`step` with each piece of client data; it returns ``(Step.CONTINUE,
    data)`` or ``(Step.SUCCESS, data)`` and raises :class:`AuthError` on failure and
    only then: errors of the method itself (a :class:`~fluxmq_core.scram.ScramError`,
    a bug in a plugin) become :class:`AuthError`. After success :attr:`result` is
    the login decision; after a failure or success every further step is refused.
    """

    def __init__(self, method: str, impl: EnhancedAuth) -> None:
        self.method = method
        self._impl = impl
        self._state = "running"  # running -> success | failed

    @property
    def done(self) -> bool:
        return self._state == "success"

    @property
    def username(self) -> str | None:
        return self._impl.username if self._state == "success" else None

    @property
    def result(self) -> AuthResult:
        """The decision: ``ok`` with the username after success, else a refusal."""
        if self._state == "success":
            return AuthResult(ok=True, username=self._impl.username, reason=self.method)
        return AuthResult(ok=False, reason=f"{self.method} not completed")

    async def step(self, data: bytes) -> tuple[Step, bytes]:
        if self._state != "running":
            raise AuthError("other-error", f"{self.method} exchange already finished")
        self._state = "failed"  # until the step returns normally
        try:
            answer = await await_me_maybe(self._impl.step(data))
        except AuthError:
            raise
        except ScramError as exc:
            raise AuthError(exc.reason, exc.detail) from exc
        except Exception:
            log.exception("enhanced authentication method %r failed", self.method)
            raise AuthError("other-error", "authentication error") from None
        try:
            status, out = answer
            status = Step(status)
        except (TypeError, ValueError):
            log.error("method %r step returned %r, not (status, bytes)", self.method, answer)
            raise AuthError("other-error", "authentication error") from None
        if not isinstance(out, bytes):
            log.error("method %r step returned %r, not (status, bytes)", self.method, answer)
            raise AuthError("other-error", "authentication error")
        self._state = "running" if status is Step.CONTINUE else "success"
        return status, out


class _ScramMethod:
    """The built-in SCRAM-SHA-256 method over a :class:`ScramServer`."""

    def __init__(self, server: ScramServer) -> None:
        self._server = server
        self._started = False

    @property
    def username(self) -> str | None:
        return self._server.username if self._server.done else None

    def step(self, data: bytes) -> tuple[str, bytes]:
        if not self._started:
            self._started = True
            return Step.CONTINUE, self._server.first(data)
        return Step.SUCCESS, self._server.final(data)


@dataclass
class AuthConfig:
    """The ``[auth]`` config section.

    Keys:
        anonymous: allow clients that send no username when no plugin decides
            (Mosquitto's ``allow_anonymous``).
        password_file: path of a Mosquitto-format password file; ``""`` for none.
        acl_file: path of a TOML ACL file; ``""`` for none (then everything is
            allowed unless a plugin decides otherwise).
        cache_size: how many authorization decisions to keep in memory (all
            clients together); when full, the cache is cleared and refills. ``0``
            disables caching (every check asks the plugins).
        use_identity_as_username: take the TLS client certificate's CN as the
            username and skip the password check (Mosquitto's option of the same
            name); clients without a certificate are refused.
    """

    anonymous: bool = setting(True, "Allow clients that send no username when no plugin decides.")
    password_file: str = setting(
        "", "Mosquitto-format password file ('' for none); see docs/auth.md."
    )
    acl_file: str = setting(
        "", "TOML ACL file ('' for none: everything allowed unless a plugin decides)."
    )
    cache_size: int = setting(
        100_000, "Authorization decisions kept in memory; 0 disables the cache."
    )
    use_identity_as_username: bool = setting(
        False, "Use the TLS client certificate CN as username and skip the password check."
    )


class AuthService:
    """The broker's single entry point for login and permission checks.

    Built once by the server with the plugin manager, the broker context (passed
    to hooks; the file provider is reached through ``context.auth``) and the
    ``[auth]`` config. Register plugins before building it: whether authorization is
    active at all is computed here and on :meth:`reload`.

    The decision cache maps ``client_id -> (username, {(action, topic): bool})``, so
    :meth:`forget_client` is one ``dict.pop``. It holds at most ``cache_size``
    decisions over all clients; when full it is cleared (cheaper than LRU
    bookkeeping on every hit, and a miss only costs one hook call).
    """

    def __init__(self, pm: pluggy.PluginManager, context: Any, config: AuthConfig) -> None:
        self._pm = pm
        self._context = context
        self.config = config
        self.file_provider: FileProvider | None = None
        if config.password_file or config.acl_file:
            self.file_provider = FileProvider(
                config.password_file, config.acl_file, config.use_identity_as_username
            )
        self._cache: dict[str, tuple[str | None, dict[tuple[str, str], bool]]] = {}
        self._cached = 0
        self.authorization_active = False
        self._update_active()
        self._methods: dict[str, EnhancedFactory] = {SCRAM_SHA_256: self._start_scram}

    # --- authentication ----------------------------------------------------------------

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Decide a login. Never raises: a failing plugin is logged and means "no"."""
        if self.config.use_identity_as_username:
            if request.tls_identity is None:
                return AuthResult(ok=False, reason="client certificate required")
            request = dataclasses.replace(request, username=request.tls_identity, password=None)
        result = await self._authenticate(request)
        if not result.ok:
            events = getattr(self._context, "events", None)
            if events is not None:
                events.auth_failed(
                    request.protocol,
                    request.client_id,
                    request.username,
                    request.remote,
                    result.reason,
                )
        return result

    async def _authenticate(self, request: AuthRequest) -> AuthResult:
        try:
            result = await self._first_answer("fluxmq_authenticate", request=request)
        except _HookFailed as exc:
            return AuthResult(ok=False, reason=f"authentication error in plugin {exc.plugin}")
        if result is None:
            return self._default_authentication(request)
        if not isinstance(result, AuthResult):
            log.error("fluxmq_authenticate returned %r, not an AuthResult; refusing login", result)
            return AuthResult(ok=False, reason="authentication error")
        if result.ok and result.username is None and request.username is not None:
            result = dataclasses.replace(result, username=request.username)
        return result

    def _default_authentication(self, request: AuthRequest) -> AuthResult:
        """Nobody answered: Mosquitto's rules. A password file refuses users it does
        not know; without one any username is accepted; no username needs
        ``anonymous``; an enhanced-auth method nobody implements is refused."""
        if request.method is not None:
            return AuthResult(
                ok=False, reason=f"unsupported authentication method {request.method!r}"
            )
        if request.username is None:
            if self.config.anonymous:
                return AuthResult(ok=True, username=None, reason="anonymous")
            return AuthResult(ok=False, reason="anonymous access not allowed")
        if self.file_provider is not None and self.file_provider.has_users:
            return AuthResult(ok=False, reason="unknown user")
        return AuthResult(ok=True, username=request.username, reason="no password check")

    # --- enhanced authentication ------------------------------------------------------------

    def register_method(
        self, name: str, factory: EnhancedFactory, *, replace: bool = False
    ) -> None:
        """Offer an enhanced-auth method (an MQTT 5 Authentication Method, a SASL
        mechanism name; matched exactly, case included). Plugins call it from
        ``fluxmq_startup``. Registering a taken name is a ``ValueError`` unless
        ``replace`` (which is how a plugin swaps out the built-in SCRAM-SHA-256)."""
        if not name:
            raise ValueError("method name must not be empty")
        if name in self._methods and not replace:
            raise ValueError(f"authentication method {name!r} is already registered")
        self._methods[name] = factory

    def enhanced_methods(self) -> list[str]:
        """Names of the methods a client may use now, in registration order.
        The built-in SCRAM-SHA-256 is listed only while it can work: a password file
        is configured and ``use_identity_as_username`` is off."""
        return [
            name
            for name, factory in self._methods.items()
            if factory != self._start_scram or self._scram_available()
        ]

    def start_enhanced(
        self,
        method: str,
        client_id: str,
        *,
        protocol: str = "",
        remote: str = "",
        tls_identity: str | None = None,
    ) -> EnhancedSession | None:
        """Begin an exchange, or ``None`` when ``method`` is not offered (MQTT 5:
        CONNACK 0x8C, Bad authentication method). Feed the client's first data to
        :meth:`EnhancedSession.step` next."""
        factory = self._methods.get(method)
        if factory is None:
            return None
        request = AuthRequest(
            protocol=protocol,
            client_id=client_id,
            username=None,
            password=None,
            remote=remote,
            tls_identity=tls_identity,
            method=method,
        )
        try:
            impl = factory(request)
        except Exception:
            log.exception("enhanced authentication method %r failed to start", method)
            return None
        return None if impl is None else EnhancedSession(method, impl)

    def _scram_available(self) -> bool:
        provider = self.file_provider
        return (
            provider is not None and provider.has_users and not self.config.use_identity_as_username
        )

    def _start_scram(self, request: AuthRequest) -> EnhancedAuth | None:
        if not self._scram_available():
            return None
        provider = self.file_provider
        assert provider is not None
        # Bound to the provider of this moment: a reload mid-exchange does not
        # switch the exchange to other credentials.
        return _ScramMethod(ScramServer(provider.scram_credentials))

    # --- authorization -----------------------------------------------------------------

    def authorize_cached(
        self, client_id: str, username: str | None, action: str, topic: str
    ) -> bool | None:
        """The hot-path check: a cached decision, ``True`` when authorization is not
        active at all, or ``None`` on a miss (then call :meth:`authorize`)."""
        if not self.authorization_active:
            return True
        entry = self._cache.get(client_id)
        if entry is None or entry[0] != username:
            return None
        return entry[1].get((action, topic))

    async def authorize(
        self, client_id: str, username: str | None, action: str, topic: str
    ) -> bool:
        """Decide and cache. A plugin that raises means "deny" (not cached, so the
        next attempt asks again); no answer at all means "allow"."""
        if not self.authorization_active:
            return True
        cached = self.authorize_cached(client_id, username, action, topic)
        if cached is not None:
            return cached
        try:
            answer = await self._first_answer(
                "fluxmq_authorize",
                client_id=client_id,
                username=username,
                action=action,
                topic=topic,
            )
        except _HookFailed:
            self._denied(client_id, username, action, topic)
            return False
        decision = True if answer is None else bool(answer)
        self._store(client_id, username, action, topic, decision)
        if not decision:
            self._denied(client_id, username, action, topic)
        return decision

    def _denied(self, client_id: str, username: str | None, action: str, topic: str) -> None:
        """Tell event sinks (webhooks' authz.denied). Cached denials are not told
        again: this runs once per decision, not per refused message."""
        events = getattr(self._context, "events", None)
        if events is not None:
            events.authz_denied(client_id, username, action, topic)

    def _store(
        self, client_id: str, username: str | None, action: str, topic: str, decision: bool
    ) -> None:
        if self.config.cache_size <= 0:
            return
        if self._cached >= self.config.cache_size:
            self._cache.clear()
            self._cached = 0
        entry = self._cache.get(client_id)
        if entry is None or entry[0] != username:
            if entry is not None:
                self._cached -= len(entry[1])
            entry = (username, {})
            self._cache[client_id] = entry
        decisions = entry[1]
        if (action, topic) not in decisions:
            self._cached += 1
        decisions[(action, topic)] = decision

    def forget_client(self, client_id: str) -> None:
        """Drop a client's cached decisions (at disconnect)."""
        entry = self._cache.pop(client_id, None)
        if entry is not None:
            self._cached -= len(entry[1])

    @property
    def cache_entries(self) -> int:
        """How many decisions are cached (for stats and tests)."""
        return self._cached

    # --- reload ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the password and ACL files and clear the cache.

        The files are those named by ``self.config`` now, so a reload also applies
        changed ``password_file`` / ``acl_file`` paths (or their removal). Raises
        :class:`AuthFileError` (naming file and line/rule) when a file is bad; the
        previous provider then stays in force and the cache is kept.
        """
        cfg = self.config
        provider = None
        if cfg.password_file or cfg.acl_file:
            provider = FileProvider(cfg.password_file, cfg.acl_file, cfg.use_identity_as_username)
        self.file_provider = provider
        self._cache.clear()
        self._cached = 0
        self._update_active()

    def _update_active(self) -> None:
        third_party = any(
            impl.plugin is not auth_file for impl in self._pm.hook.fluxmq_authorize.get_hookimpls()
        )
        has_acl = self.file_provider is not None and self.file_provider.has_acl
        self.authorization_active = has_acl or third_party

    # --- calling the first-answer hooks ------------------------------------------------------

    async def _first_answer(self, name: str, **kwargs: Any) -> Any:
        """Call the hook's implementations in pluggy's order (tryfirst, then LIFO,
        then trylast) and return the first answer that is not ``None``.

        Done here rather than through ``pm.hook.<name>(...)`` for two reasons: an
        async hookimpl returns a coroutine, which pluggy's ``firstresult`` would take
        as an answer even when it resolves to ``None`` (so later plugins, the file
        provider included, would never be asked); and an exception must be logged
        with the plugin's name. Hook wrappers, which only pluggy can run, make it fall
        back to the plain pluggy call.
        """
        caller = getattr(self._pm.hook, name)
        impls = caller.get_hookimpls()
        kwargs["context"] = self._context
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            try:
                return await await_me_maybe(caller(**kwargs))
            except Exception:
                log.exception("%s failed (called through pluggy with hook wrappers)", name)
                raise _HookFailed("<wrapped>") from None
        for impl in reversed(impls):
            try:
                answer = await await_me_maybe(
                    impl.function(*[kwargs[arg] for arg in impl.argnames])
                )
            except Exception:
                log.exception("plugin %r failed in %s", impl.plugin_name, name)
                raise _HookFailed(impl.plugin_name) from None
            if answer is not None:
                return answer
        return None


class _HookFailed(Exception):
    def __init__(self, plugin: str) -> None:
        super().__init__(plugin)
        self.plugin = plugin
