"""The built-in, file-based authentication and authorization provider.

Two files, both optional and both re-read on reload:

- a **password file** in Mosquitto's format (read, hashed and edited by
  :mod:`fluxmq_core.passwords`; its names are re-exported here);
- an **ACL file** in TOML: an ordered list of allow/deny rules on MQTT topic filters,
  first match wins.

This module is also the core's default auth plugin, registered like any plugin:
``fluxmq_auth_setup`` loads the files named by ``[auth]`` (at start-up and on reload),
keeps the provider in ``context.extras`` and tells the auth service what it provides
(an authentication source, an ACL, the ``SCRAM-SHA-256`` method); its
``fluxmq_authenticate`` / ``fluxmq_authorize`` answer nothing (``None``) when no file
is configured. They are ``trylast`` so that any third-party plugin registered without
options is asked first; see ``docs/auth.md`` for the order. The auth service does not
know this module.

What it deliberately does not do: hold users in memory beyond the parsed file, know
about protocols, cache decisions (the :class:`fluxmq_core.auth.AuthService` caches),
or match topic filters itself (:mod:`fluxmq_core.router.topics` does).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from fluxmq_core import scram
from fluxmq_core.contracts import AuthConfig, AuthRequest, AuthResult, AuthSetup
from fluxmq_core.errors import AuthFileError
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.passwords import (
    DEFAULT_ITERATIONS,
    SCHEMES,
    SCRAM_PREFIX,
    decode_scram,
    delete_user,
    hash_password,
    load_password_file,
    scram_entry,
    set_password,
    verify_password,
)
from fluxmq_core.router.topics import (
    TopicError,
    filter_covers,
    filters_overlap,
    strip_share,
    validate_topic_filter,
)
from fluxmq_core.scram import ScramCredentials, ScramMethod, ScramServer

__all__ = [
    "ANONYMOUS",
    "DEFAULT_ITERATIONS",
    "SCHEMES",
    "SCRAM_PREFIX",
    "Acl",
    "AclRule",
    "AuthFileError",
    "FileProvider",
    "delete_user",
    "filter_covers",
    "filters_overlap",
    "hash_password",
    "load_acl_file",
    "load_password_file",
    "scram_entry",
    "set_password",
    "verify_password",
]

# --- ACL file ------------------------------------------------------------------------------

ANONYMOUS = "*anonymous*"
_ACTIONS = ("publish", "subscribe", "all")
_RULE_KEYS = {"permission", "action", "topic", "users", "clients"}
_TOP_KEYS = {"default", "rule"}
_UNSAFE = re.compile(r"[+#/\x00]")
_PLACEHOLDER = re.compile(r"%[uc]")


def _fill(level: str, client_id: str, username: str | None) -> str | None:
    """Substitute ``%u``/``%c`` in one level, in one pass (a username holding ``%c``
    stays literal); ``None`` when a value is missing or could act as a wildcard."""
    failed = False

    def value(match: re.Match[str]) -> str:
        nonlocal failed
        v = username if match.group() == "%u" else client_id
        if v is None or _UNSAFE.search(v):
            failed = True
            return ""
        return v

    filled = _PLACEHOLDER.sub(value, level)
    return None if failed else filled


@dataclass(frozen=True, slots=True)
class AclRule:
    """One parsed ACL rule. ``users`` is ``None`` for "any user"; ``anonymous`` says
    whether the rule also applies to clients without a username."""

    index: int
    allow: bool
    action: str
    topic: str
    users: frozenset[str] | None
    anonymous: bool
    clients: re.Pattern[str] | None
    has_u: bool
    has_c: bool

    def applies_to(self, client_id: str, username: str | None, action: str) -> bool:
        if self.action != "all" and self.action != action:
            return False
        if self.users is not None:
            if username is None:
                if not self.anonymous:
                    return False
            elif username not in self.users:
                return False
        if self.clients is not None and not self.clients.match(client_id):
            return False
        return True

    def decide(
        self, client_id: str, username: str | None, requested: str, partial: bool = False
    ) -> bool:
        """Whether this rule matches ``requested`` (after ``%u``/``%c``).

        Strictly (``partial`` false, and always for topic names, where both readings
        agree): an allow rule must cover the request; a deny rule need only overlap
        it (a subscription that could receive one denied topic is denied). With
        ``partial`` (a wildcard subscription under ``acl_subscribe = "filter"``, whose
        deliveries are checked one by one): an allow rule need only overlap it, a deny
        rule must cover it. A placeholder
        that cannot be filled safely (no username; a value holding ``+``, ``#`` or
        ``/``) makes an allow rule not match, and turns that level of a deny rule
        into ``+``, so a strange identity never escapes a deny.
        """
        topic = self.topic
        if self.has_u or self.has_c:
            out: list[str] = []
            for level in topic.split("/"):
                if "%" in level:
                    filled = _fill(level, client_id, username)
                    if filled is None:
                        if self.allow:
                            return False
                        filled = "+"
                    level = filled
                out.append(level)
            topic = "/".join(out)
        if self.allow is partial:
            return filters_overlap(topic, requested)
        return filter_covers(topic, requested)


@dataclass(frozen=True, slots=True)
class Acl:
    """A parsed ACL file: rules in file order and the default decision."""

    rules: tuple[AclRule, ...]
    default_allow: bool

    def check(
        self,
        client_id: str,
        username: str | None,
        action: str,
        topic: str,
        partial: bool = False,
    ) -> bool:
        """The first rule that applies and matches decides, else the default.
        ``partial``: decide a subscribe filter as "may any of it be read" (see
        :meth:`AclRule.decide`); a topic name is decided the same either way."""
        requested = topic
        if action == "subscribe":
            requested = strip_share(topic)
            partial = partial and ("+" in requested or "#" in requested)
        else:
            partial = False
        for rule in self.rules:
            if rule.applies_to(client_id, username, action) and rule.decide(
                client_id, username, requested, partial
            ):
                return rule.allow
        return self.default_allow


def _str_list(path: Any, index: int, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthFileError(path, "expected a list of non-empty strings", rule=index, key=key)
    return value


def _parse_rule(path: Any, index: int, raw: Any) -> AclRule:
    if not isinstance(raw, dict):
        raise AuthFileError(path, "a rule must be a table ([[rule]])", rule=index)
    for key in raw:
        if key not in _RULE_KEYS:
            raise AuthFileError(
                path, f"unknown key (expected one of {sorted(_RULE_KEYS)})", rule=index, key=key
            )
    permission = raw.get("permission")
    if permission not in ("allow", "deny"):
        raise AuthFileError(path, 'must be "allow" or "deny"', rule=index, key="permission")
    action = raw.get("action", "all")
    if action not in _ACTIONS:
        raise AuthFileError(path, f"must be one of {list(_ACTIONS)}", rule=index, key="action")
    topic = raw.get("topic")
    if not isinstance(topic, str):
        raise AuthFileError(path, "required string (an MQTT topic filter)", rule=index, key="topic")
    try:
        validate_topic_filter(topic)
    except TopicError as exc:
        raise AuthFileError(path, str(exc), rule=index, key="topic") from None
    users: frozenset[str] | None = None
    anonymous = True
    if "users" in raw:
        names = set(_str_list(path, index, "users", raw["users"]))
        anonymous = ANONYMOUS in names
        names.discard(ANONYMOUS)
        users = frozenset(names)
    clients = None
    if "clients" in raw:
        patterns = _str_list(path, index, "clients", raw["clients"])
        clients = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return AclRule(
        index=index,
        allow=permission == "allow",
        action=action,
        topic=topic,
        users=users,
        anonymous=anonymous,
        clients=clients,
        has_u="%u" in topic,
        has_c="%c" in topic,
    )


def load_acl_file(path: str | os.PathLike[str]) -> Acl:
    """Parse and validate a TOML ACL file (format in ``docs/auth.md``)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise AuthFileError(path, f"cannot read ACL file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise AuthFileError(path, f"invalid TOML: {exc}") from exc
    for key in data:
        if key not in _TOP_KEYS:
            raise AuthFileError(path, f"unknown key (expected one of {sorted(_TOP_KEYS)})", key=key)
    default = data.get("default", "deny")
    if default not in ("allow", "deny"):
        raise AuthFileError(path, 'must be "allow" or "deny"', key="default")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise AuthFileError(path, "must be an array of tables ([[rule]])", key="rule")
    rules = tuple(_parse_rule(path, n, raw) for n, raw in enumerate(raw_rules, start=1))
    return Acl(rules=rules, default_allow=default == "allow")


# --- the provider --------------------------------------------------------------------------


class FileProvider:
    """Users from a password file, permissions from an ACL file; either may be ``""``.

    ``authenticate`` and ``authorize`` return ``None`` to pass when they have nothing
    to say (no such file, anonymous client, unknown user, enhanced-auth method), so
    other plugins and the :class:`~fluxmq_core.auth.AuthService` defaults decide.
    Files are loaded at construction; :meth:`reload` swaps in new contents only when
    both files parse, so a bad edit never leaves the broker half-configured.
    """

    def __init__(
        self,
        password_file: str,
        acl_file: str,
        use_identity_as_username: bool = False,
        acl_subscribe: str = "filter",
    ) -> None:
        self.password_file = password_file
        self.acl_file = acl_file
        self.use_identity_as_username = use_identity_as_username
        self.partial_subscribe = acl_subscribe == "filter"
        self._users: dict[str, str] | None = None
        self._scram: dict[str, ScramCredentials] = {}
        self._acl: Acl | None = None
        self.reload()

    @property
    def has_users(self) -> bool:
        """Whether a password file is configured (then unknown users are refused)."""
        return self._users is not None

    @property
    def has_acl(self) -> bool:
        return self._acl is not None

    def reload(self) -> None:
        users = load_password_file(self.password_file) if self.password_file else None
        acl = load_acl_file(self.acl_file) if self.acl_file else None
        scram_users = {
            name: decode_scram(encoded)
            for name, encoded in (users or {}).items()
            if encoded.startswith(SCRAM_PREFIX)
        }
        self._users, self._scram, self._acl = users, scram_users, acl

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        """The SCRAM credentials of ``username``, or ``None`` when the user is unknown
        or has a ``$7$``/``$6$`` entry (those cannot serve a SCRAM exchange)."""
        return self._scram.get(username)

    def authenticate(self, request: AuthRequest) -> AuthResult | None:
        if request.method is not None:
            return None  # enhanced auth belongs to plugins that know the method
        if self.use_identity_as_username:
            # The certificate authenticated the client; the password file is not used.
            if request.tls_identity is None:
                return AuthResult(ok=False, reason="client certificate required")
            return AuthResult(ok=True, username=request.tls_identity, reason="tls identity")
        users = self._users
        if users is None or request.username is None:
            return None
        encoded = users.get(request.username)
        if encoded is None:
            return None  # unknown here; later plugins may know it, else AuthService refuses
        if request.password is None:
            return AuthResult(ok=False, reason="password required")
        if verify_password(request.password, encoded):
            return AuthResult(ok=True, username=request.username, reason="password file")
        return AuthResult(ok=False, reason="bad password")

    def authorize(
        self, client_id: str, username: str | None, action: str, topic: str
    ) -> bool | None:
        acl = self._acl
        if acl is None:
            return None
        return acl.check(client_id, username, action, topic, self.partial_subscribe)

    def setup(self) -> AuthSetup:
        """What this provider gives the auth service (see ``fluxmq_auth_setup``)."""
        parts: list[str] = []
        if self.use_identity_as_username:
            parts.append("TLS client certificates (use_identity_as_username)")
        elif self._users is not None:
            parts.append(f"password file {self.password_file} ({len(self._users)} users)")
        methods = {}
        if self._users is not None and not self.use_identity_as_username:
            methods[scram.MECHANISM] = self._start_scram
        acl = self._acl
        summary = "; ".join(parts)
        if acl is not None and summary:
            summary += f"; ACL file {self.acl_file} ({len(acl.rules)} rules)"
        return AuthSetup(
            authenticates=bool(parts),
            authorizes=acl is not None,
            methods=methods,
            summary=summary,
        )

    def _start_scram(self, request: AuthRequest) -> ScramMethod:
        # Bound to this provider: a reload mid-exchange does not switch the exchange
        # to other credentials.
        return ScramMethod(ScramServer(self.scram_credentials))


# --- hookimpls: the core's default auth plugin ----------------------------------------------

_KEY = "fluxmq.auth_file"


def _extras(context: Any) -> dict[str, Any]:
    extras = getattr(context, "extras", None)
    if extras is None:  # a bare context (unit tests): give it the slot BrokerContext has
        extras = {}
        context.extras = extras
    return extras


def _provider(context: Any) -> FileProvider | None:
    return _extras(context).get(_KEY)


@hookimpl
def fluxmq_auth_setup(context: Any, config: AuthConfig) -> AuthSetup:
    """Load the files ``[auth]`` names now. A bad file raises :class:`AuthFileError`
    before anything is replaced, so on reload the previous files stay in force."""
    provider = None
    if config.password_file or config.acl_file or config.use_identity_as_username:
        provider = FileProvider(
            config.password_file,
            config.acl_file,
            config.use_identity_as_username,
            config.acl_subscribe,
        )
    _extras(context)[_KEY] = provider
    return provider.setup() if provider is not None else AuthSetup()


@hookimpl(trylast=True)
def fluxmq_authenticate(context: Any, request: AuthRequest) -> Any:
    """Check the password file; the hash runs in a worker thread (it is slow on
    purpose), so this returns an awaitable when there is work to do."""
    provider = _provider(context)
    if provider is None:
        return None
    if provider.use_identity_as_username or (
        request.username is not None and request.method is None and provider.has_users
    ):
        return asyncio.to_thread(provider.authenticate, request)
    return None


@hookimpl(trylast=True)
def fluxmq_authorize(
    context: Any, client_id: str, username: str | None, action: str, topic: str
) -> Any:
    provider = _provider(context)
    if provider is None:
        return None
    return provider.authorize(client_id, username, action, topic)
