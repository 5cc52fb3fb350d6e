"""The built-in, file-based authentication and authorization provider.

Two files, both optional and both re-read on reload:

- a **password file** in Mosquitto's format (``username:hash`` per line, ``#``
  comments), so that a file written by ``mosquitto_passwd`` works unchanged and one
  written by ``fluxmq passwd`` works in Mosquitto. ``$7$`` (PBKDF2-HMAC-SHA512) and
  ``$6$`` (salted SHA-512, read only) hashes are understood, plus FluxMQ's own
  ``$scram-sha-256$`` entries (SCRAM credentials, :mod:`fluxmq_core.scram`), which
  serve both plain password logins and SCRAM exchanges but which Mosquitto cannot
  read;
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
import base64
import binascii
import fnmatch
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxmq_core import scram
from fluxmq_core.contracts import AuthConfig, AuthRequest, AuthResult, AuthSetup
from fluxmq_core.errors import AuthFileError
from fluxmq_core.hookspecs import hookimpl
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

#: PBKDF2 iterations for new ``$7$`` hashes. 210 000 is OWASP's figure for
#: PBKDF2-HMAC-SHA512 and the default of current Mosquitto development; Mosquitto
#: 2.0's ``mosquitto_passwd`` writes 101, which is far too weak today. Mosquitto reads
#: the count from each entry, so files written with this default stay compatible with
#: every Mosquitto 2.x. A check costs ~0.1-0.3 s of CPU, which is why the core runs it
#: in a worker thread, never on the event loop.
DEFAULT_ITERATIONS = 210_000

#: Salt bytes for new hashes. Mosquitto 2.0 accepts salts of 12 bytes (what its
#: ``mosquitto_passwd`` writes) or 64; 12 bytes (96 bits) is plenty and readable by all.
SALT_BYTES = 12

_SHA512_LEN = 64

#: Start of a SCRAM entry:
#: ``$scram-sha-256$<iterations>$<b64 salt>$<b64 StoredKey>$<b64 ServerKey>``.
SCRAM_PREFIX = "$scram-sha-256$"

#: What :func:`hash_password` / :func:`set_password` can write.
SCHEMES = ("pbkdf2-sha512", "scram-sha-256")


# --- password hashes -----------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _decode_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """Split an encoded hash into ``(iterations, salt, digest)``; ``iterations == 0``
    means ``$6$``. Raises ``ValueError`` saying what is wrong."""
    parts = encoded.split("$")
    try:
        if len(parts) == 4 and parts[0] == "" and parts[1] == "6":
            iterations, salt_b64, digest_b64 = 0, parts[2], parts[3]
        elif len(parts) == 5 and parts[0] == "" and parts[1] == "7":
            if not parts[2].isdigit():
                raise ValueError(f"bad iteration count {parts[2]!r}")
            iterations = int(parts[2])
            if iterations < 1:
                raise ValueError("iteration count must be at least 1")
            salt_b64, digest_b64 = parts[3], parts[4]
        elif encoded.startswith("$argon2"):
            raise ValueError("argon2 hashes are not supported; re-create with `fluxmq passwd`")
        elif not encoded.startswith("$"):
            raise ValueError("password is not hashed; hash it with `fluxmq passwd`")
        else:
            raise ValueError("unknown hash format (expected $7$, $6$ or $scram-sha-256$)")
        salt = _b64decode(salt_b64)
        digest = _b64decode(digest_b64)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad base64: {exc}") from None
    if not salt:
        raise ValueError("empty salt")
    if len(digest) != _SHA512_LEN:
        raise ValueError(f"hash is {len(digest)} bytes, expected {_SHA512_LEN}")
    return iterations, salt, digest


def _decode_scram(encoded: str) -> ScramCredentials:
    """Parse a ``$scram-sha-256$`` entry. Raises ``ValueError`` saying what is wrong."""
    parts = encoded.split("$")
    if len(parts) != 6:
        raise ValueError("expected $scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>")
    count = parts[2]
    if not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise ValueError(f"bad iteration count {count!r}")
    if int(count) < scram.MIN_ITERATIONS:
        raise ValueError(f"SCRAM needs at least {scram.MIN_ITERATIONS} iterations (RFC 7677)")
    try:
        salt, stored_key, server_key = (_b64decode(p) for p in parts[3:])
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad base64: {exc}") from None
    if len(salt) < 12:
        raise ValueError("SCRAM salt must be at least 12 bytes")
    if len(stored_key) != 32 or len(server_key) != 32:
        raise ValueError("StoredKey and ServerKey must be 32 bytes each")
    return ScramCredentials(salt, int(count), stored_key, server_key)


def _check_entry(encoded: str) -> None:
    if encoded.startswith(SCRAM_PREFIX):
        _decode_scram(encoded)
    else:
        _decode_hash(encoded)


def scram_entry(credentials: ScramCredentials) -> str:
    """The password-file form of SCRAM ``credentials``."""
    c = credentials
    return (
        f"{SCRAM_PREFIX}{c.iterations}${base64.b64encode(c.salt).decode('ascii')}"
        f"${base64.b64encode(c.stored_key).decode('ascii')}"
        f"${base64.b64encode(c.server_key).decode('ascii')}"
    )


def _digest(password: bytes, iterations: int, salt: bytes) -> bytes:
    if iterations == 0:  # $6$: SHA-512 over password then salt, as Mosquitto does
        return hashlib.sha512(password + salt).digest()
    return hashlib.pbkdf2_hmac("sha512", password, salt, iterations)


def hash_password(
    password: str, iterations: int | None = None, *, scheme: str = "pbkdf2-sha512"
) -> str:
    """Return a password-file entry for ``password``.

    ``scheme="pbkdf2-sha512"`` (the default): a Mosquitto-compatible
    ``$7$<iterations>$<salt>$<hash>`` string (PBKDF2-HMAC-SHA512 over the UTF-8
    password, standard base64 with padding), :data:`DEFAULT_ITERATIONS` unless given.
    ``scheme="scram-sha-256"``: a ``$scram-sha-256$`` entry with
    :data:`fluxmq_core.scram.DEFAULT_ITERATIONS` (4096) unless given.
    """
    if scheme == "scram-sha-256":
        if iterations is None:
            iterations = scram.DEFAULT_ITERATIONS
        return scram_entry(scram.make_credentials(password, iterations=iterations))
    if scheme != "pbkdf2-sha512":
        raise ValueError(f"unknown scheme {scheme!r} (expected one of {list(SCHEMES)})")
    if iterations is None:
        iterations = DEFAULT_ITERATIONS
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _digest(password.encode("utf-8"), iterations, salt)
    return (
        f"$7${iterations}${base64.b64encode(salt).decode('ascii')}"
        f"${base64.b64encode(digest).decode('ascii')}"
    )


def verify_password(password: bytes, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (``$7$``, ``$6$`` or
    ``$scram-sha-256$``, where the StoredKey is recomputed from the password).

    Compares in constant time; a malformed ``encoded`` is simply ``False``.
    """
    if encoded.startswith(SCRAM_PREFIX):
        try:
            credentials = _decode_scram(encoded)
        except ValueError:
            return False
        return scram.check_password(password, credentials)
    try:
        iterations, salt, expected = _decode_hash(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(_digest(password, iterations, salt), expected)


# --- password file ---------------------------------------------------------------------


def _check_username(username: str) -> None:
    if not username:
        raise ValueError("username must not be empty")
    if ":" in username or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in username):
        raise ValueError(f"username {username!r} must not contain ':' or control characters")


def _is_skippable(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def load_password_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a password file into ``{username: encoded hash}``.

    Blank lines and lines starting with ``#`` are skipped; line endings (LF or CRLF)
    are stripped, other whitespace is significant, as in Mosquitto. A line without a
    hash, a hash that cannot be decoded and a duplicate user are errors
    (:class:`AuthFileError` with ``file:line``). Mosquitto accepts a bare ``username``
    line as "any password"; we refuse it, because it is nearly always a mistake.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(path, f"cannot read password file: {exc}") from exc
    users: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if _is_skippable(raw):
            continue
        username, sep, encoded = raw.partition(":")
        if not sep or not username or not encoded:
            raise AuthFileError(path, "expected 'username:hash'", line=lineno)
        if username in users:
            raise AuthFileError(path, f"duplicate user {username!r}", line=lineno)
        try:
            _check_entry(encoded)
        except ValueError as exc:
            raise AuthFileError(path, f"user {username!r}: {exc}", line=lineno) from None
        users[username] = encoded
    return users


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a 0600 temp file in the same directory and
    ``os.replace``, so readers (a reloading broker) never see a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(path, f"cannot read password file: {exc}") from exc


def set_password(
    path: str | os.PathLike[str],
    username: str,
    password: str,
    *,
    iterations: int | None = None,
    scheme: str = "pbkdf2-sha512",
) -> None:
    """Add ``username`` or replace its hash, creating the file (mode 0600) if needed.

    ``scheme`` and ``iterations`` are as for :func:`hash_password`. A SCRAM entry
    also needs a username that SASLprep leaves unchanged, since SCRAM clients send
    the normalised form (``ValueError`` otherwise). Other lines (comments, other
    users) are kept as they are; the write is atomic.
    """
    _check_username(username)
    if scheme == "scram-sha-256":
        try:
            prepared = scram.saslprep(username, stored=True)
        except ValueError as exc:
            raise ValueError(f"username {username!r} cannot be used with SCRAM: {exc}") from None
        if prepared != username:
            raise ValueError(
                f"username {username!r} is not in SASLprep form (would be {prepared!r}); "
                "SCRAM clients could not log in with it"
            )
    target = Path(path)
    entry = f"{username}:{hash_password(password, iterations, scheme=scheme)}"
    lines = _read_lines(target)
    replaced = False
    out: list[str] = []
    for raw in lines:
        if not _is_skippable(raw) and raw.partition(":")[0] == username:
            if not replaced:
                out.append(entry)
                replaced = True
            continue  # drop any duplicate of the same user
        out.append(raw)
    if not replaced:
        out.append(entry)
    _atomic_write(target, "\n".join(out) + "\n")


def delete_user(path: str | os.PathLike[str], username: str) -> bool:
    """Remove ``username``; return whether it was there (the file is left untouched
    when it was not, and a missing file simply returns ``False``)."""
    target = Path(path)
    lines = _read_lines(target)
    kept = [r for r in lines if _is_skippable(r) or r.partition(":")[0] != username]
    if len(kept) == len(lines):
        return False
    _atomic_write(target, "\n".join(kept) + ("\n" if kept else ""))
    return True


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
            name: _decode_scram(encoded)
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
