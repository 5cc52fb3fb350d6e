"""Authentication and authorization as the rest of the broker sees them.

:class:`AuthService` is what protocols call: ``authenticate`` once per connection,
``authorize_cached`` on the hot path (a dict lookup, or ``True`` straight away when
no authorization is configured at all), ``authorize`` on a cache miss, ``may_read``
per delivery through a wildcard subscription (``[auth] acl_subscribe = "filter"``)
and ``forget_client`` at disconnect. Decisions come from the ``fluxmq_authenticate``
/ ``fluxmq_authorize`` hooks (first answer wins) and, when nobody answers, from the
rules in ``docs/auth.md``: clients without credentials follow ``[auth] anonymous``
(``"local"`` by default: only from this machine), everyone else is refused.

Multi-step ("enhanced") authentication, MQTT 5's AUTH exchange and AMQP's SASL, goes
through :meth:`AuthService.start_enhanced`, which returns an :class:`EnhancedSession`
the protocol feeds with the client's data until it succeeds or raises
:class:`AuthError`. Methods come from plugins: offered through ``fluxmq_auth_setup``
(the password file's ``SCRAM-SHA-256``) or registered with
:meth:`AuthService.register_method` from ``fluxmq_startup``.

This module knows only the hooks: the password/ACL file provider
(:mod:`fluxmq_core.auth_file`) is a default plugin like any other, which tells the
service what it provides through ``fluxmq_auth_setup``. The contract types live in
:mod:`fluxmq_core.contracts` and are re-exported here for existing imports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import pluggy

from fluxmq_core.contracts import (
    PUBLISH,
    SUBSCRIBE,
    AuthConfig,
    AuthRequest,
    AuthResult,
    AuthSetup,
    EnhancedAuth,
    EnhancedFactory,
    Step,
    is_loopback,
)
from fluxmq_core.errors import AuthError, AuthFileError
from fluxmq_core.plugins import PluginError, await_me_maybe

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
    "AuthSetup",
    "EnhancedAuth",
    "EnhancedFactory",
    "EnhancedSession",
    "Step",
]

log = logging.getLogger("fluxmq.auth")

#: The name of the SCRAM method the password file offers (kept here for imports).
SCRAM_SHA_256 = "SCRAM-SHA-256"

_UNDECLARED = AuthSetup(authenticates=True, authorizes=True)


class EnhancedSession:
    """The protocol's handle on one enhanced-auth exchange.

    Call :meth:`step` with each piece of client data; it returns ``(Step.CONTINUE,
    data)`` or ``(Step.SUCCESS, data)`` and raises :class:`AuthError` on failure and
    only then: any other error of the method (a bug in a plugin) becomes
    :class:`AuthError`. After success :attr:`result` is
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


class AuthService:
    """The broker's single entry point for login and permission checks.

    Built once by the server with the plugin manager, the broker context (passed
    to hooks) and the ``[auth]`` config. Register plugins before building it: it asks
    ``fluxmq_auth_setup`` here and on :meth:`reload`, and computes from the answers
    whether any authentication source and any authorization exist.

    The decision cache maps ``client_id -> (username, {(action, topic): bool},
    {(action, topic): deadline})``, so :meth:`forget_client` is one ``dict.pop``. It
    holds at most ``cache_size`` decisions over all clients; when full it is cleared
    (cheaper than LRU bookkeeping on every hit, and a miss only costs one hook call).
    An authorizing plugin may bound it further through :class:`AuthSetup`
    (``cache_ttl``: decisions older than that are asked again, checked against
    ``context.clock`` only while some plugin declares a TTL; ``cache_per_client``:
    a client's oldest decision goes when it has that many).
    """

    def __init__(self, pm: pluggy.PluginManager, context: Any, config: AuthConfig) -> None:
        self._pm = pm
        self._context = context
        self.config = config
        self._setups: dict[Any, AuthSetup] = {}
        self._cache: dict[
            str, tuple[str | None, dict[tuple[str, str], bool], dict[tuple[str, str], float]]
        ] = {}
        self._cached = 0
        #: Seconds a cached decision lives (0: no expiry) and decisions kept per
        #: client (0: unbounded), from the authorizing plugins' AuthSetup.
        self.cache_ttl = 0.0
        self.cache_per_client = 0
        clock = getattr(context, "clock", None)
        self._clock = clock if callable(clock) else time.time
        self._methods: dict[str, EnhancedFactory] = {}
        self._offered: dict[str, EnhancedFactory] = {}
        self._pending_reads: set[tuple[str, str | None, str]] = set()
        self._warned_async_read = False
        #: Any authorization at all (an ACL, a plugin deciding): else every check is
        #: ``True`` at once.
        self.authorization_active = False
        #: Deliveries are checked per topic (``acl_subscribe = "filter"`` and
        #: authorization active); protocols test this flag before :meth:`may_read`.
        self.filter_reads = False
        #: Some plugin may accept usernames (a password file, an auth plugin).
        self.has_source = False
        self.reload()

    # --- set-up and reload -------------------------------------------------------------

    def reload(self) -> None:
        """Ask every ``fluxmq_auth_setup`` again (the file provider re-reads its
        files, applying changed ``password_file`` / ``acl_file`` paths) and clear the
        cache. A bad file raises :class:`AuthFileError` (naming file and line/rule),
        any other failure of a plugin :class:`~fluxmq_core.plugins.PluginError` naming
        it; the previous setup then stays in force."""
        setups: dict[Any, AuthSetup] = {}
        kwargs = {"context": self._context, "config": self.config}
        for impl in self._pm.hook.fluxmq_auth_setup.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue  # a wrapper declares nothing of its own
            try:
                answer = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except AuthFileError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in fluxmq_auth_setup: {exc}"
                ) from exc
            if hasattr(answer, "__await__"):
                getattr(answer, "close", lambda: None)()
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: fluxmq_auth_setup must not be async"
                )
            if answer is not None and not isinstance(answer, AuthSetup):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: fluxmq_auth_setup returned "
                    f"{type(answer).__name__}, not AuthSetup"
                )
            setups[impl.plugin] = answer if answer is not None else _UNDECLARED
        self._setups = setups
        self._offered = {}
        for setup in setups.values():
            for name, factory in setup.methods.items():
                self._offered.setdefault(name, factory)
        self._cache.clear()
        self._cached = 0
        self._update_flags()

    def _declares(self, hook: str, what: str) -> list[Any]:
        """The plugins implementing ``hook`` that count for ``what`` (a field of
        :class:`AuthSetup`): those that declared it, and those that declared nothing."""
        impls = getattr(self._pm.hook, hook).get_hookimpls()
        return [
            impl.plugin
            for impl in impls
            if getattr(self._setups.get(impl.plugin, _UNDECLARED), what)
        ]

    def _update_flags(self) -> None:
        self.has_source = bool(self._declares("fluxmq_authenticate", "authenticates"))
        authorizers = self._declares("fluxmq_authorize", "authorizes")
        self.authorization_active = bool(authorizers)
        setups = [self._setups.get(p, _UNDECLARED) for p in authorizers]
        ttls = [s.cache_ttl for s in setups if s.cache_ttl > 0]
        sizes = [s.cache_per_client for s in setups if s.cache_per_client > 0]
        self.cache_ttl = min(ttls) if ttls else 0.0
        self.cache_per_client = min(sizes) if sizes else 0
        self.filter_reads = self.config.acl_subscribe == "filter" and any(
            self._setups.get(p, _UNDECLARED).per_delivery
            for p in self._declares("fluxmq_authorize", "authorizes")
        )

    def sources(self) -> list[str]:
        """One line per authentication source, for logs and ``fluxmq`` tools."""
        out: list[str] = []
        for plugin in self._declares("fluxmq_authenticate", "authenticates"):
            setup = self._setups.get(plugin)
            out.append(
                setup.summary
                if setup is not None and setup.summary
                else f"plugin {self._pm.get_name(plugin)}"
            )
        return out

    def log_exposure(self, bound: dict[str, tuple[str, int]]) -> None:
        """Say once, at start-up, which listeners other hosts can reach and what a
        remote client needs to get in (loopback-only brokers say so too)."""
        outside = sorted(
            f"{name} ({host}:{port})"
            for name, (host, port) in bound.items()
            if not is_loopback(host)
        )
        if not outside:
            log.info("every listener is bound to a loopback address: only this machine can connect")
            return
        where = ", ".join(outside)
        anonymous = self.config.anonymous
        sources = self.sources()
        if anonymous is True:
            log.warning(
                "listeners reachable from other hosts: %s. [auth] anonymous = true: any "
                "client that can reach them may connect without credentials",
                where,
            )
        elif sources:
            log.info(
                "listeners reachable from other hosts: %s. Remote clients must log in "
                "through: %s%s",
                where,
                "; ".join(sources),
                " (clients on this machine may connect without credentials)"
                if anonymous == "local"
                else "",
            )
        else:  # safe, but say why remote clients will be refused
            log.info(
                "listeners reachable from other hosts: %s. No authentication source is "
                "configured, so remote clients cannot log in: set [auth] password_file "
                "(fluxmq passwd) or install an auth plugin, or set [auth] anonymous = true "
                "to let everyone in",
                where,
            )

    # --- authentication ----------------------------------------------------------------

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Decide a login. Never raises: a failing plugin is logged and means "no"."""
        if request.username == "":
            # A zero-length username is no username, as Mosquitto treats it.
            request = dataclasses.replace(request, username=None)
        if self.config.use_identity_as_username:
            if request.tls_identity is None:
                return AuthResult(ok=False, reason="client certificate required")
            request = dataclasses.replace(request, username=request.tls_identity, password=None)
        result = await self._authenticate(request)
        hooks = getattr(self._context, "hooks", None)
        if result.ok and hooks is not None and hooks.wants("auth_on_register", request.protocol):
            result = await self._register_hook(hooks, request, result)
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

    async def _register_hook(
        self, hooks: Any, request: AuthRequest, result: AuthResult
    ) -> AuthResult:
        """``[[hooks.endpoints]]`` ``auth_on_register``: a blocking hook may still
        refuse an accepted login, or set the external identity."""
        from fluxmq_core.callout.hooks import HookRequest

        attributes = dict(result.attributes or {})
        outcome = await hooks.call(
            HookRequest(
                "auth_on_register",
                request.protocol,
                request.client_id,
                username=request.username,
                password=request.password,
                external_id=str(attributes.get("external_id", "")),
            )
        )
        if not outcome.allow:
            return AuthResult(ok=False, reason=outcome.reason or "refused by hook")
        if outcome.external_id:
            attributes["external_id"] = outcome.external_id
            ext = self._context.extras.get("auth_external")
            if ext is not None:
                ext._remember(request.client_id, request.protocol, outcome.external_id)
            return dataclasses.replace(result, attributes=attributes)
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
        """Nobody answered. Mosquitto 2's rules: no credentials follow ``anonymous``;
        a username nobody knows is refused (``anonymous = true`` keeps Mosquitto 1.x's
        "any username is accepted when there is no source at all"); an enhanced-auth
        method nobody implements is refused."""
        if request.method is not None:
            return AuthResult(
                ok=False, reason=f"unsupported authentication method {request.method!r}"
            )
        anonymous = self.config.anonymous
        if request.username is None or request.default_login:
            if anonymous is True:
                return AuthResult(ok=True, username=None, reason="anonymous")
            if anonymous == "local" and request.local:
                return AuthResult(ok=True, username=None, reason="anonymous (local)")
            if anonymous == "local":
                return AuthResult(
                    ok=False,
                    reason="anonymous access is only allowed from this machine; log in with credentials",
                )
            return AuthResult(ok=False, reason="anonymous access not allowed")
        if self.has_source:
            return AuthResult(ok=False, reason="unknown user")
        if anonymous is True:
            return AuthResult(ok=True, username=request.username, reason="no password check")
        return AuthResult(ok=False, reason="no authentication source configured")

    # --- enhanced authentication ------------------------------------------------------------

    def register_method(
        self, name: str, factory: EnhancedFactory, *, replace: bool = False
    ) -> None:
        """Offer an enhanced-auth method (an MQTT 5 Authentication Method, a SASL
        mechanism name; matched exactly, case included). Plugins call it from
        ``fluxmq_startup``. Registering a taken name is a ``ValueError`` unless
        ``replace`` (which is how a plugin swaps out the password file's
        SCRAM-SHA-256)."""
        if not name:
            raise ValueError("method name must not be empty")
        if (name in self._methods or name in self._offered) and not replace:
            raise ValueError(f"authentication method {name!r} is already registered")
        self._methods[name] = factory

    def enhanced_methods(self) -> list[str]:
        """Names of the methods a client may use now: those the plugins' set-up
        offers (SCRAM-SHA-256 while a password file is configured and
        ``use_identity_as_username`` is off), then those registered."""
        return list(dict.fromkeys([*self._offered, *self._methods]))

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
        factory = self._methods.get(method) or self._offered.get(method)
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
        decision = entry[1].get((action, topic))
        if decision is not None and self.cache_ttl and self._expired(entry, (action, topic)):
            return None
        return decision

    def _expired(self, entry: Any, key: tuple[str, str]) -> bool:
        """Whether a cached decision outlived ``cache_ttl`` (then it is dropped)."""
        if entry[2].get(key, 0.0) > self._clock():
            return False
        del entry[1][key]
        entry[2].pop(key, None)
        self._cached -= 1
        return True

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

    def may_read(self, client_id: str, username: str | None, topic: str) -> bool:
        """Whether a delivery on ``topic`` may reach this subscriber: the per-message
        read check of ``acl_subscribe = "filter"``. Synchronous, as delivery is: a
        cached decision (one dict lookup), else the ``fluxmq_authorize`` hookimpls
        are called in place (a ``"subscribe"`` check on the topic name) and the answer
        cached. A hookimpl that answers with an awaitable cannot be waited for here:
        this delivery is refused and the decision is made in the background for the
        next ones. Call it only while :attr:`filter_reads` is set."""
        decision = self.read_cached(client_id, username, topic)
        if decision is not None:
            return decision
        return self._read_miss(client_id, username, topic)

    def read_cached(self, client_id: str, username: str | None, topic: str) -> bool | None:
        """:meth:`may_read`'s cached decision, or None where it would ask the
        hookimpls: a check without side effects (for a batch of deliveries)."""
        entry = self._cache.get(client_id)
        if entry is not None and entry[0] == username:
            decision = entry[1].get((SUBSCRIBE, topic))
            if decision is not None and not (
                self.cache_ttl and self._expired(entry, (SUBSCRIBE, topic))
            ):
                return decision
        return None

    def _read_miss(self, client_id: str, username: str | None, topic: str) -> bool:
        kwargs = {
            "context": self._context,
            "client_id": client_id,
            "username": username,
            "action": SUBSCRIBE,
            "topic": topic,
        }
        impls = self._pm.hook.fluxmq_authorize.get_hookimpls()
        answer = None
        if not any(impl.hookwrapper or impl.wrapper for impl in impls):
            for impl in reversed(impls):
                if not self._setups.get(impl.plugin, _UNDECLARED).per_delivery:
                    continue  # decides on subscription filters only
                try:
                    answer = impl.function(*[kwargs[arg] for arg in impl.argnames])
                except Exception:
                    log.exception("plugin %r failed in fluxmq_authorize", impl.plugin_name)
                    self._denied(client_id, username, SUBSCRIBE, topic)
                    return False
                if hasattr(answer, "__await__"):
                    getattr(answer, "close", lambda: None)()
                    break
                if answer is not None:
                    decision = bool(answer)
                    self._store(client_id, username, SUBSCRIBE, topic, decision)
                    if not decision:
                        self._denied(client_id, username, SUBSCRIBE, topic)
                    return decision
            else:
                self._store(client_id, username, SUBSCRIBE, topic, True)
                return True
        # An async plugin (or a hook wrapper): decide in the background, refuse now.
        if not self._warned_async_read:
            self._warned_async_read = True
            log.warning(
                "an async fluxmq_authorize answered a per-delivery read check: the first "
                "message per (client, topic) is dropped while it decides; answer "
                'synchronously, or set [auth] acl_subscribe = "strict"'
            )
        key = (client_id, username, topic)
        if key not in self._pending_reads:
            self._pending_reads.add(key)
            try:
                task = asyncio.get_running_loop().create_task(
                    self.authorize(client_id, username, SUBSCRIBE, topic)
                )
            except RuntimeError:
                self._pending_reads.discard(key)
            else:
                task.add_done_callback(lambda _t: self._pending_reads.discard(key))
        return False

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
            entry = (username, {}, {})
            self._cache[client_id] = entry
        decisions = entry[1]
        key = (action, topic)
        if key not in decisions:
            limit = self.cache_per_client
            if limit and len(decisions) >= limit:
                oldest = next(iter(decisions))  # dicts keep insertion order
                del decisions[oldest]
                entry[2].pop(oldest, None)
            else:
                self._cached += 1
        decisions[key] = decision
        if self.cache_ttl:
            entry[2][key] = self._clock() + self.cache_ttl

    def forget_client(self, client_id: str) -> None:
        """Drop a client's cached decisions (at disconnect)."""
        entry = self._cache.pop(client_id, None)
        if entry is not None:
            self._cached -= len(entry[1])

    @property
    def cache_entries(self) -> int:
        """How many decisions are cached (for stats and tests)."""
        return self._cached

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
            except AuthError as exc:  # a refusal with a reason: no traceback needed
                log.warning("plugin %r refused in %s: %s", impl.plugin_name, name, exc)
                raise _HookFailed(impl.plugin_name) from None
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
