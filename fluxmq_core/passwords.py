"""Password files in Mosquitto's format: hashing, checking, reading and editing.

One ``username:hash`` per line, ``#`` comments, so that a file written by
``mosquitto_passwd`` works unchanged and one written by ``fluxmq passwd`` works in
Mosquitto. ``$7$`` (PBKDF2-HMAC-SHA512) and ``$6$`` (salted SHA-512, read only) hashes
are understood, plus FluxMQ's own ``$scram-sha-256$`` entries (SCRAM credentials,
:mod:`fluxmq_core.scram`), which serve both plain password logins and SCRAM exchanges
but which Mosquitto cannot read.

Plain functions over files and strings, used by the file provider
(:mod:`fluxmq_core.auth_file`) and by ``fluxmq passwd``; no broker state. Edits are
atomic (a 0600 temporary file renamed over the original).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from fluxmq_core import scram
from fluxmq_core.errors import AuthFileError
from fluxmq_core.filemodes import warn_if_exposed
from fluxmq_core.scram import ScramCredentials

__all__ = [
    "DEFAULT_ITERATIONS",
    "SALT_BYTES",
    "SCHEMES",
    "SCRAM_PREFIX",
    "decode_scram",
    "delete_user",
    "hash_password",
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


def decode_scram(encoded: str) -> ScramCredentials:
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
        decode_scram(encoded)
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
            credentials = decode_scram(encoded)
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
    warn_if_exposed(path, "password file")  # hashes are offline-guessable: keep them 0600
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
