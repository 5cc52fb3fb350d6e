"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as sans-IO server and client objects, on ``scramp``.

:class:`ScramServer` turns a client's messages into the server's answers and
:class:`ScramClient` does the reverse; neither touches a socket, a clock or asyncio,
so any protocol can carry them (MQTT 5 AUTH packets, AMQP SASL frames) and tests can
run a whole exchange in memory. The server needs one thing from the outside: a
``lookup(username) -> ScramCredentials | None`` (the file provider's
``scram_credentials``).

The protocol itself (message grammar, SASLprep, nonces, proofs, signatures) is
``scramp``'s, the library pg8000 uses; this module is the thin layer that gives it
bytes in and out, one exception type with an RFC 5802 ``server-error-value``
(:class:`ScramError`), the credentials record our password file stores, and two
things scramp leaves to its caller:

- a cap on message size, so a hostile peer cannot make us parse megabytes;
- unknown users are not revealed early: the server answers with a salt derived from
  the username and a per-process secret, and the exchange fails at the final step
  exactly as a wrong password does (scramp itself would answer ``unknown-user``).

scramp enforces RFC 7677's floor of 4096 iterations and a salt of at least 12 bytes on
both sides, so credentials below those cannot serve an exchange; the password file
refuses such ``$scram-sha-256$`` entries when it loads them. What this module
deliberately does not do: channel binding (the ``-PLUS`` variants; a client asking for
it with ``p=`` is refused), authorization identities (scramp refuses a non-empty
``a=``), SCRAM-SHA-1, or any I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import scramp
from scramp.utils import ScramException
from scramp.utils import saslprep as _scramp_saslprep

from fluxmq_core.errors import AuthError

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_MESSAGE_BYTES",
    "MECHANISM",
    "MIN_ITERATIONS",
    "SALT_BYTES",
    "ScramClient",
    "ScramCredentials",
    "ScramError",
    "ScramMethod",
    "ScramServer",
    "check_password",
    "make_credentials",
    "saslprep",
]

#: The SASL mechanism / MQTT 5 authentication method name.
MECHANISM = "SCRAM-SHA-256"

#: Iteration count for new credentials: RFC 7677's minimum, and what PostgreSQL,
#: Kafka and RabbitMQ use. The PBKDF2 cost falls on every *client* at every login
#: (small devices included), which is why it is far below the 210 000 of ``$7$``
#: password hashes; the price is cheaper offline guessing if the file leaks.
DEFAULT_ITERATIONS = 4096

#: The lowest count scramp accepts (from a server, and in stored credentials).
MIN_ITERATIONS = 4096

#: Salt bytes for new credentials (the RFC 7677 example uses 16; scramp needs 12+).
SALT_BYTES = 16

#: Longest message accepted from a peer. Real messages are well under 300 bytes.
MAX_MESSAGE_BYTES = 4096

#: Secret behind the fake salts of unknown users: fixed for the life of the process,
#: so asking twice for the same unknown user gives the same salt, as for a real one.
_PROCESS_SECRET = secrets.token_bytes(32)

_MECHANISM = scramp.ScramMechanism(MECHANISM)


class ScramError(AuthError):
    """The peer sent something unacceptable, or the proof (or the server's signature,
    on the client side) was wrong. An :class:`~fluxmq_core.errors.AuthError`, so the
    auth service refuses the login with this reason without knowing SCRAM.

    ``reason`` is an RFC 5802 ``server-error-value`` (``"invalid-proof"``,
    ``"invalid-encoding"``, ``"channel-binding-not-supported"``...), usable as a short
    protocol reason string; ``str()`` adds a human-readable detail for logs. A wrong
    password and an unknown user both give ``"invalid-proof"`` with the same detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.detail = detail

    @property
    def server_final(self) -> bytes:
        """The RFC 5802 error form of server-final (``e=<reason>``), for protocols
        that can send data with a failure (most cannot; MQTT 5 does not)."""
        return f"e={self.reason}".encode("ascii")


def _error(exc: ScramException) -> ScramError:
    reason = exc.server_error.value if exc.server_error is not None else "other-error"
    return ScramError(reason, exc.args[0] if exc.args else "")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a server stores for one user: enough to check a proof, not enough to
    compute one without a captured exchange (see RFC 5802 section 9)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def saslprep(text: str, *, stored: bool = False) -> str:
    """RFC 4013 SASLprep, as scramp applies it to usernames and passwords.

    scramp always uses the stricter "stored strings" profile (unassigned code points
    refused), so ``stored`` is accepted for compatibility and changes nothing.
    Raises ``ValueError`` for text SASLprep prohibits.
    """
    del stored
    try:
        return _scramp_saslprep(text)
    except ScramException as exc:
        raise ValueError(exc.args[0]) from None


def make_credentials(
    password: str | bytes, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredentials:
    """Credentials for ``password`` (SASLprep-ed by scramp); a fresh random salt of
    :data:`SALT_BYTES` unless given. ``ValueError`` below :data:`MIN_ITERATIONS`, for
    a salt under 12 bytes or a password SASLprep refuses."""
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("SCRAM passwords must be UTF-8") from None
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    try:
        salt, stored_key, server_key, count = _MECHANISM.make_auth_info(
            password, iteration_count=iterations, salt=salt
        )
    except ScramException as exc:
        raise ValueError(exc.args[0]) from None
    return ScramCredentials(salt, count, stored_key, server_key)


def check_password(password: bytes, credentials: ScramCredentials) -> bool:
    """Whether a plain ``password`` matches ``credentials`` (the StoredKey is
    recomputed; constant-time compare). A password SASLprep refuses is ``False``."""
    try:
        mine = make_credentials(password, credentials.salt, credentials.iterations)
    except ValueError:
        return False
    return hmac.compare_digest(mine.stored_key, credentials.stored_key)


def _text(data: bytes) -> str:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ScramError("other-error", f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("invalid-encoding", "message is not UTF-8") from None


class ScramServer:
    """The server side of one exchange: :meth:`first` (client-first in,
    server-first out), then :meth:`final` (client-final in, server-final out).

    Every peer-caused failure raises :class:`ScramError` and ends the exchange;
    calling a step out of order (or after the end) is a ``RuntimeError``, a bug in
    the caller. ``nonce`` fixes the server nonce and ``fake_secret`` the secret
    behind unknown users' salts, for tests only.
    """

    def __init__(
        self,
        lookup: Callable[[str], ScramCredentials | None],
        *,
        nonce: str | None = None,
        fake_secret: bytes | None = None,
    ) -> None:
        self._lookup = lookup
        self._fake_secret = _PROCESS_SECRET if fake_secret is None else fake_secret
        self._server = _MECHANISM.make_server(self._auth_info, s_nonce=nonce)
        self._state = "start"  # start -> first-sent -> done | failed
        self._username: str | None = None

    @property
    def username(self) -> str | None:
        """The SASLprep-ed username the client gave, once :meth:`first` succeeded."""
        return self._username

    @property
    def done(self) -> bool:
        """The client proved it knows the password."""
        return self._state == "done"

    def _auth_info(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self._username = username
        creds = self._lookup(username)
        if creds is None:
            creds = self._fake_credentials(username)
        return creds.salt, creds.stored_key, creds.server_key, creds.iterations

    def _fake_credentials(self, username: str) -> ScramCredentials:
        """Deterministic per (process secret, username), shaped like real ones. Its
        keys are random-looking, so the final proof check simply fails."""
        seed = hmac.new(self._fake_secret, b"scram-fake:" + username.encode(), "sha256").digest()
        return ScramCredentials(
            salt=hashlib.sha256(seed + b"salt").digest()[:SALT_BYTES],
            iterations=DEFAULT_ITERATIONS,
            stored_key=hashlib.sha256(seed + b"stored").digest(),
            server_key=hashlib.sha256(seed + b"server").digest(),
        )

    def _expect(self, state: str, method: str) -> None:
        if self._state != state:
            raise RuntimeError(f"ScramServer.{method}() called in state {self._state!r}")

    def first(self, client_first: bytes) -> bytes:
        self._expect("start", "first")
        self._state = "failed"  # until this returns
        text = _text(client_first)
        try:
            self._server.set_client_first(text)
            answer = self._server.get_server_first()
        except ScramException as exc:
            self._username = None
            raise _error(exc) from None
        self._state = "first-sent"
        return answer.encode("utf-8")

    def final(self, client_final: bytes) -> bytes:
        self._expect("first-sent", "final")
        self._state = "failed"  # until the proof checks out
        text = _text(client_final)
        try:
            self._server.set_client_final(text)
            answer = self._server.get_server_final()
        except ScramException as exc:
            raise _error(exc) from None
        self._state = "done"
        return answer.encode("utf-8")


class ScramClient:
    """The client side, for tests and FluxMQ's own tools: :meth:`first`,
    :meth:`final` (given server-first), :meth:`verify` (given server-final).

    scramp refuses a server asking for fewer than 4096 iterations (a fake server
    could otherwise make an eavesdropped exchange cheap to crack) or more than ten
    million. ``nonce`` fixes the client nonce, for published test vectors only.
    """

    def __init__(self, username: str, password: str, *, nonce: str | None = None) -> None:
        try:
            self._client = scramp.ScramClient([MECHANISM], username, password, c_nonce=nonce)
        except ScramException as exc:
            raise ValueError(exc.args[0]) from None
        self.username = str(self._client.username)
        self.done = False
        self._first: bytes | None = None
        self._stage = 0  # 0: first() next, 1: final() next, 2: verify() next, 3: over

    def first(self) -> bytes:
        """The client-first message (the same bytes when asked again)."""
        if self._first is None:
            self._advance(0)
            self._first = self._call("get_client_first").encode("utf-8")
        return self._first

    def final(self, server_first: bytes) -> bytes:
        if self._stage == 0:
            self.first()  # the client-first message is implied
        self._advance(1)
        self._call("set_server_first", _text(server_first))
        return self._call("get_client_final").encode("utf-8")

    def verify(self, server_final: bytes) -> None:
        """Check the server's signature; raises :class:`ScramError` if it is wrong."""
        self._advance(2)
        self._call("set_server_final", _text(server_final))
        self.done = True

    def _advance(self, stage: int) -> None:
        if self._stage != stage:
            raise RuntimeError(f"ScramClient step {stage + 1} called out of order")
        self._stage = stage + 1

    def _call(self, method: str, *args: str) -> str:
        try:
            answer: str = getattr(self._client, method)(*args)
            return answer
        except ScramException as exc:
            raise _error(exc) from None


class ScramMethod:
    """``SCRAM-SHA-256`` as an enhanced-auth method (the ``EnhancedAuth`` protocol of
    :mod:`fluxmq_core.contracts`) over a :class:`ScramServer`: client-first ->
    server-first (``"continue"``), client-final -> server-final (``"success"``)."""

    def __init__(self, server: ScramServer) -> None:
        self._server = server
        self._started = False

    @property
    def username(self) -> str | None:
        return self._server.username if self._server.done else None

    def step(self, data: bytes) -> tuple[str, bytes]:
        if not self._started:
            self._started = True
            return "continue", self._server.first(data)
        return "success", self._server.final(data)
