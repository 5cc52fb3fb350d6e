"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as sans-IO server and client objects.

:class:`ScramServer` turns a client's messages into the server's answers and
:class:`ScramClient` does the reverse; neither touches a socket, a clock or asyncio,
so any protocol can carry them (MQTT 5 AUTH packets, AMQP SASL frames) and tests can
run a whole exchange in memory. The server needs one thing from the outside: a
``lookup(username) -> ScramCredentials | None``, usually
:meth:`fluxmq_core.auth_file.FileProvider.scram_credentials`.

The exchange, for reference (``H`` = SHA-256, ``HMAC`` = HMAC-SHA-256)::

    C: n,,n=<user>,r=<c-nonce>                     client-first
    S: r=<c-nonce><s-nonce>,s=<salt>,i=<count>      server-first
    C: c=biws,r=<c-nonce><s-nonce>,p=<proof>        client-final
    S: v=<server signature>                         server-final

    SaltedPassword  = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, count)
    ClientKey       = HMAC(SaltedPassword, "Client Key");  StoredKey = H(ClientKey)
    ServerKey       = HMAC(SaltedPassword, "Server Key")
    AuthMessage     = client-first-bare + "," + server-first + "," + client-final-without-proof
    ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
    ServerSignature = HMAC(ServerKey, AuthMessage)

The server stores only ``salt``, ``count``, ``StoredKey`` and ``ServerKey``
(:class:`ScramCredentials`) and checks a proof with two HMACs and a hash: the
expensive PBKDF2 runs on the client.

What it deliberately does not do: channel binding (the ``-PLUS`` variants; a client
asking for it with ``p=`` is refused, ``n`` and ``y`` are accepted), authorization
identities other than the username, SCRAM-SHA-1, or any I/O. Unknown users are not
revealed early: the server answers with a salt and count derived from the username
and a per-process secret, and the exchange fails at the final step exactly as a wrong
password does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_MESSAGE_BYTES",
    "MECHANISM",
    "SALT_BYTES",
    "ScramClient",
    "ScramCredentials",
    "ScramError",
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

#: Salt bytes for new credentials (the RFC 7677 example uses 16).
SALT_BYTES = 16

#: Longest message accepted from a peer. Real messages are well under 300 bytes;
#: the cap keeps a hostile peer from making us parse megabytes.
MAX_MESSAGE_BYTES = 4096

_KEY_BYTES = 32  # SHA-256 output
_NONCE_BYTES = 18  # 24 characters of URL-safe base64, no ','

#: Secret behind the fake salts of unknown users: fixed for the life of the process,
#: so asking twice for the same unknown user gives the same salt, as for a real one.
_PROCESS_SECRET = secrets.token_bytes(32)


class ScramError(Exception):
    """The peer sent something unacceptable, or the proof (or the server's signature,
    on the client side) was wrong.

    ``reason`` is an RFC 5802 ``server-error-value`` (``"invalid-proof"``,
    ``"invalid-encoding"``, ``"channel-binding-not-supported"``...), usable as a short
    protocol reason string; ``str()`` adds a human-readable detail for logs. A wrong
    password and an unknown user both give ``"invalid-proof"`` with the same detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    @property
    def server_final(self) -> bytes:
        """The RFC 5802 error form of server-final (``e=<reason>``), for protocols
        that can send data with a failure (most cannot; MQTT 5 does not)."""
        return f"e={self.reason}".encode("ascii")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a server stores for one user: enough to check a proof, not enough to
    compute one without a captured exchange (see RFC 5802 section 9)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


# --- primitives ---------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ScramError("invalid-encoding", f"{what} is not valid base64") from None


def saslprep(text: str, *, stored: bool = False) -> str:
    """Normalise ``text`` with SASLprep (RFC 4013), using the stdlib tables.

    Non-ASCII spaces become U+0020, "commonly mapped to nothing" characters go, the
    result is NFKC-normalised, and prohibited characters (controls, private use,
    surrogates, ...) or bad bidirectional text raise ``ValueError``. Unassigned code
    points are allowed unless ``stored`` (RFC 3454's "query" vs "stored" strings).
    ASCII text without control characters comes back unchanged.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    out = unicodedata.normalize("NFKC", mapped)
    for ch in out:
        if (
            stringprep.in_table_c12(ch)
            or stringprep.in_table_c21_c22(ch)
            or stringprep.in_table_c3(ch)
            or stringprep.in_table_c4(ch)
            or stringprep.in_table_c5(ch)
            or stringprep.in_table_c6(ch)
            or stringprep.in_table_c7(ch)
            or stringprep.in_table_c8(ch)
            or stringprep.in_table_c9(ch)
        ):
            raise ValueError(f"prohibited character U+{ord(ch):04X}")
        if stored and stringprep.in_table_a1(ch):
            raise ValueError(f"unassigned character U+{ord(ch):04X}")
    if any(stringprep.in_table_d1(ch) for ch in out):
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise ValueError("mixes right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError("right-to-left text must start and end with an RTL character")
    return out


def _normalize_password(password: str | bytes) -> bytes:
    """SASLprep then UTF-8. As PostgreSQL does, a password that is not UTF-8 or that
    SASLprep refuses is used as it is, so every password still works."""
    if isinstance(password, bytes):
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return password
    else:
        text = password
    try:
        return saslprep(text, stored=True).encode("utf-8")
    except ValueError:
        return text.encode("utf-8", "surrogatepass")


def _salted_password(password: str | bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", _normalize_password(password), salt, iterations)


def _credentials_from_salted(salted: bytes, salt: bytes, iterations: int) -> ScramCredentials:
    client_key = _hmac(salted, b"Client Key")
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def make_credentials(
    password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredentials:
    """Derive what the server stores for ``password`` (SASLprep'd, UTF-8); a fresh
    random salt of :data:`SALT_BYTES` unless one is given."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if not salt:
        raise ValueError("salt must not be empty")
    return _credentials_from_salted(_salted_password(password, salt, iterations), salt, iterations)


def check_password(password: bytes, credentials: ScramCredentials) -> bool:
    """Whether a plain ``password`` matches SCRAM ``credentials`` (for protocols and
    clients that log in with username and password). Constant-time comparison."""
    salted = _salted_password(password, credentials.salt, credentials.iterations)
    derived = _credentials_from_salted(salted, credentials.salt, credentials.iterations)
    return hmac.compare_digest(derived.stored_key, credentials.stored_key)


# --- message syntax -----------------------------------------------------------------------


def _decode(data: bytes, what: str) -> str:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ScramError("other-error", f"{what} longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("invalid-encoding", f"{what} is not UTF-8") from None


def _attributes(text: str, what: str) -> list[tuple[str, str]]:
    """Split ``a=1,b=2`` into ``[("a", "1"), ("b", "2")]``. No SCRAM value may hold
    ``,`` (names escape it, base64 and nonces have none), so splitting is exact."""
    out = []
    for part in text.split(","):
        name = part[:1]
        if len(part) < 2 or part[1] != "=" or not (name.isascii() and name.isalpha()):
            raise ScramError("invalid-encoding", f"{what}: malformed attribute {part[:16]!r}")
        out.append((name, part[2:]))
    return out


def _escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape(saslname: str) -> str:
    """Undo ``=2C``/``=3D`` in one left-to-right pass (so ``=3D2C`` is ``=2C``); any
    other ``=`` is an encoding error (RFC 5802 section 5.1)."""
    out, i = [], 0
    while i < len(saslname):
        ch = saslname[i]
        if ch == "=":
            code = saslname[i + 1 : i + 3]
            if code not in ("2C", "3D"):
                raise ScramError("invalid-username-encoding", "'=' must be escaped as =3D")
            out.append("," if code == "2C" else "=")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _check_nonce(nonce: str, what: str) -> None:
    if not nonce or not all("\x21" <= ch <= "\x7e" for ch in nonce):
        raise ScramError("invalid-encoding", f"{what} must be printable ASCII")


def _new_nonce() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


# --- server ------------------------------------------------------------------------------


class ScramServer:
    """One server side of one SCRAM-SHA-256 exchange: :meth:`first`, then :meth:`final`.

    ``lookup(username)`` returns the user's :class:`ScramCredentials` or ``None``;
    it is called once, from :meth:`first`, with the SASLprep'd username. ``nonce``
    fixes the server nonce (tests against published vectors only). ``fake_secret``
    and ``fake_iterations`` shape the invented credentials of unknown users; the
    iteration count should be the one real entries use, or the difference shows.

    Every peer-caused failure raises :class:`ScramError` and leaves the object
    failed; calling the methods out of order is a programming error (``RuntimeError``).
    """

    def __init__(
        self,
        lookup: Callable[[str], ScramCredentials | None],
        *,
        nonce: str | None = None,
        fake_secret: bytes | None = None,
        fake_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self._lookup = lookup
        self._server_nonce = nonce
        self._fake_secret = _PROCESS_SECRET if fake_secret is None else fake_secret
        self._fake_iterations = fake_iterations
        self._state = "start"  # start -> first-sent -> done | failed
        self._username: str | None = None
        self._credentials: ScramCredentials | None = None
        self._known = False
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    @property
    def username(self) -> str | None:
        """The (unescaped, SASLprep'd) username from client-first; ``None`` before."""
        return self._username

    @property
    def done(self) -> bool:
        """Whether the client proved it knows the password."""
        return self._state == "done"

    def _expect(self, state: str, method: str) -> None:
        if self._state != state:
            raise RuntimeError(f"ScramServer.{method}() called in state {self._state!r}")

    def first(self, client_first: bytes) -> bytes:
        """Parse client-first and return server-first."""
        self._expect("start", "first")
        self._state = "failed"  # until this returns
        text = _decode(client_first, "client-first-message")
        if text.startswith("p="):
            raise ScramError(
                "channel-binding-not-supported",
                "channel binding (SCRAM-SHA-256-PLUS) is not offered; use gs2 header 'n,,'",
            )
        if text[:2] not in ("n,", "y,"):
            raise ScramError("invalid-encoding", "gs2 header must start with 'n,' or 'y,'")
        end = text.find(",", 2)
        if end < 0:
            raise ScramError("invalid-encoding", "gs2 header not terminated")
        authzid_field = text[2:end]
        self._gs2_header = text[: end + 1]
        self._client_first_bare = text[end + 1 :]
        attrs = _attributes(self._client_first_bare, "client-first-message")
        if attrs[0][0] == "m":
            raise ScramError("extensions-not-supported", "mandatory extension 'm' not supported")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            raise ScramError("invalid-encoding", "client-first-message must be n=<user>,r=<nonce>")
        username = self._prepare_username(attrs[0][1])
        if authzid_field:
            if not authzid_field.startswith("a="):
                raise ScramError("invalid-encoding", "bad authzid in gs2 header")
            if self._prepare_username(authzid_field[2:]) != username:
                raise ScramError("other-error", "authorization identity must be the username")
        client_nonce = attrs[1][1]
        _check_nonce(client_nonce, "client nonce")
        credentials = self._lookup(username)
        self._known = credentials is not None
        if credentials is None:
            credentials = self._fake_credentials(username)
        self._username = username
        self._credentials = credentials
        self._nonce = client_nonce + (self._server_nonce or _new_nonce())
        self._server_first = (
            f"r={self._nonce},s={_b64(credentials.salt)},i={credentials.iterations}"
        )
        self._state = "first-sent"
        return self._server_first.encode("ascii")

    def final(self, client_final: bytes) -> bytes:
        """Check client-final's proof and return server-final (``v=...``)."""
        self._expect("first-sent", "final")
        self._state = "failed"  # until the proof checks out
        text = _decode(client_final, "client-final-message")
        attrs = _attributes(text, "client-final-message")
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise ScramError(
                "invalid-encoding", "client-final-message must be c=...,r=...[,ext],p=..."
            )
        if _unb64(attrs[0][1], "channel binding") != self._gs2_header.encode("utf-8"):
            raise ScramError("channel-bindings-dont-match", "c= does not repeat the gs2 header")
        if attrs[1][1] != self._nonce:
            raise ScramError("other-error", "nonce mismatch")
        proof = _unb64(attrs[-1][1], "proof")
        if len(proof) != _KEY_BYTES:
            raise ScramError("invalid-proof", "authentication failed")
        without_proof = text.rsplit(",", 1)[0]
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        creds = self._credentials
        assert creds is not None
        signature = _hmac(creds.stored_key, auth_message.encode("utf-8"))
        client_key = _xor(proof, signature)
        matches = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (matches and self._known):
            raise ScramError("invalid-proof", "authentication failed")
        self._state = "done"
        verifier = _hmac(creds.server_key, auth_message.encode("utf-8"))
        return f"v={_b64(verifier)}".encode("ascii")

    @staticmethod
    def _prepare_username(saslname: str) -> str:
        name = _unescape(saslname)
        try:
            name = saslprep(name)
        except ValueError as exc:
            raise ScramError("invalid-username-encoding", str(exc)) from None
        if not name:
            raise ScramError("invalid-username-encoding", "empty username")
        return name

    def _fake_credentials(self, username: str) -> ScramCredentials:
        """Deterministic per (process secret, username), shaped like real ones. Its
        keys are random-looking, so the final proof check simply fails."""
        seed = _hmac(self._fake_secret, b"scram-fake:" + username.encode("utf-8"))
        return ScramCredentials(
            salt=_hmac(seed, b"salt")[:SALT_BYTES],
            iterations=self._fake_iterations,
            stored_key=_hmac(seed, b"stored"),
            server_key=_hmac(seed, b"server"),
        )


# --- client ------------------------------------------------------------------------------


class ScramClient:
    """The client side, for tests and FluxMQ's own tools: :meth:`first`,
    :meth:`final` (given server-first), :meth:`verify` (given server-final).

    Refuses a server asking for fewer than ``min_iterations`` (a fake server could
    otherwise make an eavesdropped exchange cheap to crack) or more than
    ``max_iterations`` (a denial of service on the client). ``nonce`` fixes the
    client nonce, for published test vectors only.
    """

    def __init__(
        self,
        username: str,
        password: str | bytes,
        *,
        nonce: str | None = None,
        min_iterations: int = DEFAULT_ITERATIONS,
        max_iterations: int = 1_000_000,
    ) -> None:
        try:
            self.username = saslprep(username)
        except ValueError as exc:
            raise ValueError(f"username: {exc}") from None
        self._password = password
        self._nonce = nonce if nonce is not None else _new_nonce()
        _check_nonce(self._nonce, "client nonce")
        self._min_iterations = min_iterations
        self._max_iterations = max_iterations
        self._client_first_bare = f"n={_escape(self.username)},r={self._nonce}"
        self._server_signature: bytes | None = None
        self.done = False

    def first(self) -> bytes:
        """client-first-message (no channel binding: gs2 header ``n,,``)."""
        return f"n,,{self._client_first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        """Check server-first and return client-final with the proof."""
        text = _decode(server_first, "server-first-message")
        attrs = _attributes(text, "server-first-message")
        if attrs[0][0] == "m":
            raise ScramError("extensions-not-supported", "mandatory extension 'm' not supported")
        if len(attrs) < 3 or [a[0] for a in attrs[:3]] != ["r", "s", "i"]:
            raise ScramError("invalid-encoding", "server-first-message must be r=...,s=...,i=...")
        nonce, salt_b64, count = attrs[0][1], attrs[1][1], attrs[2][1]
        _check_nonce(nonce, "nonce")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("other-error", "server nonce does not extend the client nonce")
        salt = _unb64(salt_b64, "salt")
        if not salt:
            raise ScramError("invalid-encoding", "empty salt")
        if not (count.isascii() and count.isdigit()) or len(count) > 10:
            raise ScramError("invalid-encoding", f"bad iteration count {count[:16]!r}")
        iterations = int(count)
        if not self._min_iterations <= iterations <= self._max_iterations:
            raise ScramError(
                "other-error",
                f"iteration count {iterations} outside "
                f"[{self._min_iterations}, {self._max_iterations}]",
            )
        salted = _salted_password(self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        """Check the server's signature; raises :class:`ScramError` if it is wrong
        or the server sent ``e=<error>``."""
        if self._server_signature is None:
            raise RuntimeError("ScramClient.verify() called before final()")
        text = _decode(server_final, "server-final-message")
        attrs = _attributes(text, "server-final-message")
        name, value = attrs[0]
        if name == "e":
            raise ScramError(value or "other-error", "server refused the exchange")
        if name != "v":
            raise ScramError("invalid-encoding", "server-final-message must be v=... or e=...")
        if not hmac.compare_digest(_unb64(value, "server signature"), self._server_signature):
            raise ScramError("invalid-proof", "server signature does not match")
        self.done = True
