"""The file provider on real files: password hashes (Mosquitto-compatible), the
password file editing functions, the TOML ACL and the topic-filter algebra."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest

from fluxmq_core.auth import AuthRequest
from fluxmq_core.auth_file import (
    DEFAULT_ITERATIONS,
    AuthFileError,
    FileProvider,
    delete_user,
    filter_covers,
    filters_overlap,
    hash_password,
    load_acl_file,
    load_password_file,
    set_password,
    verify_password,
)

FAST = 1000  # iterations in tests; the default is deliberately slow


def req(username=None, password=None, *, client_id="c1", tls_identity=None, method=None):
    return AuthRequest(
        protocol="mqtt",
        client_id=client_id,
        username=username,
        password=password,
        remote="127.0.0.1:5555",
        tls_identity=tls_identity,
        method=method,
    )


# --- hashes --------------------------------------------------------------------------------


def test_hash_password_format_and_verify():
    encoded = hash_password("s3cret", iterations=FAST)
    empty, kind, iterations, salt, digest = encoded.split("$")
    assert (empty, kind, iterations) == ("", "7", str(FAST))
    assert len(base64.b64decode(salt)) == 12
    assert len(base64.b64decode(digest)) == 64
    assert verify_password(b"s3cret", encoded)
    assert not verify_password(b"s3cret!", encoded)
    assert hash_password("s3cret", iterations=FAST) != encoded  # fresh salt each time


def test_default_iterations_is_strong():
    assert DEFAULT_ITERATIONS >= 210_000


def test_mosquitto_pbkdf2_entry_computed_independently():
    # What mosquitto_passwd 2.x writes: $7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>.
    salt = bytes(range(12))
    digest = hashlib.pbkdf2_hmac("sha512", b"mosquitto", salt, 101)
    encoded = f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password(b"mosquitto", encoded)
    assert not verify_password(b"Mosquitto", encoded)


def test_mosquitto_sha512_entry_computed_independently():
    # Mosquitto 1.x: $6$<b64 salt>$<b64 SHA-512(password || salt)>.
    salt = os.urandom(12)
    digest = hashlib.sha512(b"legacy" + salt).digest()
    encoded = f"$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password(b"legacy", encoded)
    assert not verify_password(b"legacy ", encoded)


@pytest.mark.parametrize(
    "encoded",
    ["plain", "$7$abc$AAAA$AAAA", "$7$0$AAAA$AAAA", "$6$!!!$AAAA", "$6$AAAA$AAAA", "$9$x$y"],
)
def test_verify_malformed_hash_is_false(encoded):
    assert verify_password(b"x", encoded) is False


# --- password file -----------------------------------------------------------------------------


def test_password_file_round_trip(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "one", iterations=FAST)
    set_password(path, "bob", "two", iterations=FAST)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    users = load_password_file(path)
    assert set(users) == {"alice", "bob"}
    assert verify_password(b"one", users["alice"])

    set_password(path, "alice", "uno", iterations=FAST)  # replace keeps one entry
    users = load_password_file(path)
    assert list(users) == ["alice", "bob"]
    assert verify_password(b"uno", users["alice"])
    assert not verify_password(b"one", users["alice"])

    assert delete_user(path, "alice") is True
    assert delete_user(path, "alice") is False
    assert list(load_password_file(path)) == ["bob"]
    assert delete_user(tmp_path / "missing", "bob") is False


def test_set_password_keeps_comments_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("# users of the plant\n\n")
    set_password(path, "carol", "pw", iterations=FAST)
    text = path.read_text()
    assert text.startswith("# users of the plant\n")
    assert os.listdir(tmp_path) == ["passwd"]


@pytest.mark.parametrize("username", ["", "a:b", "new\nline"])
def test_set_password_rejects_bad_usernames(tmp_path, username):
    with pytest.raises(ValueError):
        set_password(tmp_path / "passwd", username, "pw", iterations=FAST)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("alice\n", 1, "username:hash"),
        ("# c\nalice:plaintext\n", 2, "not hashed"),
        ("alice:$7$10$AAAA$AAAA\n", 1, "expected 64"),
        ("alice:$argon2id$v=19$m=1$x$y\n", 1, "argon2"),
    ],
)
def test_bad_password_file_names_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "passwd"
    path.write_text(content)
    with pytest.raises(AuthFileError) as info:
        load_password_file(path)
    assert info.value.line == line
    assert f"{path}:{line}:" in str(info.value)
    assert words in str(info.value)


def test_duplicate_user_is_an_error(tmp_path):
    path = tmp_path / "passwd"
    entry = hash_password("x", iterations=FAST)
    path.write_text(f"u:{entry}\nu:{entry}\n")
    with pytest.raises(AuthFileError, match="duplicate"):
        load_password_file(path)


def test_crlf_line_endings_are_accepted(tmp_path):
    path = tmp_path / "passwd"
    path.write_bytes(f"alice:{hash_password('pw', iterations=FAST)}\r\n".encode())
    assert verify_password(b"pw", load_password_file(path)["alice"])


# --- SCRAM-SHA-256 entries ---------------------------------------------------------------------


def scram_entry_by_hand(password: bytes, salt: bytes, iterations: int) -> str:
    """RFC 5802's StoredKey and ServerKey computed with hashlib alone."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = [base64.b64encode(x).decode() for x in (salt, stored, server)]
    return f"$scram-sha-256${iterations}${b64[0]}${b64[1]}${b64[2]}"


def test_scram_entry_format_and_verify():
    encoded = hash_password("s3cret", scheme="scram-sha-256")
    empty, kind, iterations, salt, stored, server = encoded.split("$")
    assert (empty, kind, iterations) == ("", "scram-sha-256", "4096")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(stored)) == len(base64.b64decode(server)) == 32
    assert verify_password(b"s3cret", encoded)
    assert not verify_password(b"s3cret!", encoded)
    assert hash_password("s3cret", 5000, scheme="scram-sha-256").startswith("$scram-sha-256$5000$")
    with pytest.raises(ValueError, match="scheme"):
        hash_password("x", scheme="md5")


def test_scram_entry_computed_independently():
    encoded = scram_entry_by_hand(b"pencil", bytes(range(16)), 4096)
    assert verify_password(b"pencil", encoded)
    assert not verify_password(b"Pencil", encoded)
    # The RFC 7677 user, as a file entry, serves plain logins too.
    rfc = scram_entry_by_hand(b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    assert verify_password(b"pencil", rfc)


def test_scram_entry_password_is_saslprepped():
    # U+2168 ROMAN NUMERAL NINE is "IX" after SASLprep (NFKC), as a SCRAM client sends it.
    encoded = hash_password("\u2168", scheme="scram-sha-256")
    assert verify_password(b"IX", encoded)
    assert verify_password("\u2168".encode(), encoded)
    assert not verify_password(b"\xff", encoded)  # not UTF-8: used raw, and wrong


def test_set_password_scram_and_provider_credentials(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "wonderland", scheme="scram-sha-256")
    set_password(path, "bob", "builder", iterations=FAST)
    users = load_password_file(path)
    assert users["alice"].startswith("$scram-sha-256$") and users["bob"].startswith("$7$")
    provider = FileProvider(str(path), "")
    creds = provider.scram_credentials("alice")
    assert creds is not None and creds.iterations == 4096
    assert provider.scram_credentials("bob") is None  # a $7$ entry cannot serve SCRAM
    assert provider.scram_credentials("carol") is None
    ok = provider.authenticate(req("alice", b"wonderland"))
    assert ok is not None and ok.ok
    bad = provider.authenticate(req("alice", b"wonder"))
    assert bad is not None and not bad.ok
    # Switching a user between schemes replaces the entry.
    set_password(path, "alice", "wonderland", iterations=FAST)
    provider.reload()
    assert provider.scram_credentials("alice") is None


@pytest.mark.parametrize("name", ["\u2168", "a\u00adb", "bell\u0007"])
def test_set_password_scram_refuses_usernames_saslprep_would_change(tmp_path, name):
    with pytest.raises(ValueError):
        set_password(tmp_path / "passwd", name, "pw", scheme="scram-sha-256")
    assert not (tmp_path / "passwd").exists()


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("$scram-sha-256$4096$AAAA$AAAA", "expected $scram-sha-256$"),
        ("$scram-sha-256$x$AAAA$" + "A" * 43 + "=$" + "A" * 43 + "=", "iteration"),
        ("$scram-sha-256$0$AAAA$" + "A" * 43 + "=$" + "A" * 43 + "=", "iteration"),
        ("$scram-sha-256$4096$!!!!$" + "A" * 43 + "=$" + "A" * 43 + "=", "base64"),
        ("$scram-sha-256$4096$$" + "A" * 43 + "=$" + "A" * 43 + "=", "12 bytes"),
        ("$scram-sha-256$4096$AAAA$" + "A" * 43 + "=$" + "A" * 43 + "=", "12 bytes"),
        ("$scram-sha-256$4095$" + "A" * 22 + "==$" + "A" * 43 + "=$" + "A" * 43 + "=", "4096"),
        ("$scram-sha-256$4096$" + "A" * 22 + "==$AAAA$" + "A" * 43 + "=", "32 bytes"),
    ],
)
def test_bad_scram_entry_names_file_and_line(tmp_path, entry, words):
    path = tmp_path / "passwd"
    path.write_text(f"# users\nalice:{entry}\n")
    with pytest.raises(AuthFileError) as info:
        load_password_file(path)
    assert info.value.line == 2
    assert words in str(info.value)
    assert not verify_password(b"x", entry)


def test_cli_passwd_scram_writes_a_usable_entry(tmp_path):
    from fluxmq_core.scram import ScramClient, ScramServer

    path = tmp_path / "passwd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXMQ_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxmq_core.cli",
            "passwd",
            "--scram",
            "--password-stdin",
            str(path),
            "alice",
        ],
        input="wonder land\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert path.read_text().startswith("alice:$scram-sha-256$4096$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    provider = FileProvider(str(path), "")
    assert verify_password(b"wonder land", load_password_file(path)["alice"])
    server = ScramServer(provider.scram_credentials)
    client = ScramClient("alice", "wonder land")
    client.verify(server.final(client.final(server.first(client.first()))))
    assert server.done and server.username == "alice"


# --- filter algebra ----------------------------------------------------------------------------

COVERS = [
    # rule, requested, covered?
    ("a/#", "a/+/b", True),
    ("a/#", "a", True),
    ("a/#", "a/#", True),
    ("a/#", "#", False),
    ("a/b", "a/#", False),
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/+", True),
    ("a/+", "a/#", False),
    ("a/+", "a", False),
    ("a/+", "a/b/c", False),
    ("a/b", "a/+", False),
    ("+/+", "a/+", True),
    ("#", "a/b/c", True),
    ("#", "#", True),
    ("+/#", "#", True),
    ("a/+/#", "a/#", False),
    ("a/+/#", "a/x/#", True),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
]


@pytest.mark.parametrize(("rule", "requested", "expected"), COVERS)
def test_filter_covers(rule, requested, expected):
    assert filter_covers(rule, requested) is expected


OVERLAPS = [
    ("a/#", "#", True),
    ("a/b", "+/#", True),
    ("a/b", "a/c", False),
    ("a/+", "+/b", True),
    ("a/#", "a", True),
    ("a/+", "a", False),
    ("#", "$SYS/x", False),
    ("$SYS/#", "$SYS/+", True),
    ("a/b/c", "a/+", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS)
def test_filters_overlap_is_symmetric(a, b, expected):
    assert filters_overlap(a, b) is expected
    assert filters_overlap(b, a) is expected


# --- ACL file ----------------------------------------------------------------------------------


def acl(tmp_path, text, acl_subscribe="filter"):
    path = tmp_path / "acl.toml"
    path.write_text(text)
    return FileProvider("", str(path), acl_subscribe=acl_subscribe)


def test_first_match_wins_in_file_order(tmp_path):
    provider = acl(
        tmp_path,
        """
        [[rule]]
        permission = "deny"
        action = "publish"
        topic = "a/secret"

        [[rule]]
        permission = "allow"
        topic = "a/#"

        [[rule]]
        permission = "deny"
        topic = "a/open"
        """,
    )
    assert provider.authorize("c", "u", "publish", "a/secret") is False
    assert provider.authorize("c", "u", "subscribe", "a/secret") is True  # rule 1 is publish only
    assert provider.authorize("c", "u", "publish", "a/open") is True  # rule 2 came first
    assert provider.authorize("c", "u", "publish", "b") is False  # default deny


def test_default_allow(tmp_path):
    provider = acl(
        tmp_path,
        """
        default = "allow"
        [[rule]]
        permission = "deny"
        topic = "private/#"
        """,
    )
    assert provider.authorize("c", None, "publish", "x") is True
    assert provider.authorize("c", None, "publish", "private/x") is False


def test_empty_acl_denies(tmp_path):
    provider = acl(tmp_path, "")
    assert provider.authorize("c", "u", "publish", "x") is False


WIDE = """
    [[rule]]
    permission = "deny"
    topic = "secret/#"
    [[rule]]
    permission = "allow"
    topic = "#"
    """


def test_strict_mode_deny_rule_blocks_a_wider_subscription(tmp_path):
    provider = acl(tmp_path, WIDE, acl_subscribe="strict")
    assert provider.authorize("c", "u", "subscribe", "#") is False
    assert provider.authorize("c", "u", "subscribe", "public/#") is True
    assert provider.authorize("c", "u", "subscribe", "$share/g/secret/x") is False
    assert provider.authorize("c", "u", "subscribe", "$share/g/public/x") is True


def test_filter_mode_allows_a_partly_readable_subscription(tmp_path):
    provider = acl(tmp_path, WIDE)  # acl_subscribe = "filter", the default
    assert provider.authorize("c", "u", "subscribe", "#") is True
    assert provider.authorize("c", "u", "subscribe", "+/x") is True
    assert provider.authorize("c", "u", "subscribe", "secret/#") is False  # wholly denied
    assert provider.authorize("c", "u", "subscribe", "secret/+/x") is False
    # Topic names (what each delivery is checked with) are decided as strictly as ever.
    assert provider.authorize("c", "u", "subscribe", "secret/x") is False
    assert provider.authorize("c", "u", "subscribe", "public/x") is True
    only = acl(
        tmp_path,
        """
        [[rule]]
        permission = "allow"
        topic = "sensors/%u/#"
        """,
    )
    assert only.authorize("c", "ann", "subscribe", "#") is True  # part of it is hers
    assert only.authorize("c", "ann", "subscribe", "sensors/+/t") is True
    assert only.authorize("c", "ann", "subscribe", "other/#") is False  # nothing of it
    assert only.authorize("c", None, "subscribe", "#") is False  # %u unfillable
    assert only.authorize("c", "ann", "subscribe", "sensors/bob/t") is False


def test_users_clients_and_anonymous(tmp_path):
    provider = acl(
        tmp_path,
        """
        [[rule]]
        permission = "allow"
        topic = "ops/#"
        users = ["alice"]

        [[rule]]
        permission = "allow"
        topic = "dev/#"
        clients = ["dev-*"]

        [[rule]]
        permission = "allow"
        action = "subscribe"
        topic = "public/#"
        users = ["*anonymous*"]
        """,
    )
    assert provider.authorize("x", "alice", "publish", "ops/1") is True
    assert provider.authorize("x", "bob", "publish", "ops/1") is False
    assert provider.authorize("x", None, "publish", "ops/1") is False
    assert provider.authorize("dev-7", "bob", "publish", "dev/1") is True
    assert provider.authorize("prod-7", "bob", "publish", "dev/1") is False
    assert provider.authorize("x", None, "subscribe", "public/news") is True
    assert provider.authorize("x", "alice", "subscribe", "public/news") is False
    assert provider.authorize("x", "*anonymous*", "subscribe", "public/news") is False


def test_placeholders_and_widening_guard(tmp_path):
    provider = acl(
        tmp_path,
        """
        [[rule]]
        permission = "allow"
        topic = "sensors/%u/#"

        [[rule]]
        permission = "allow"
        action = "publish"
        topic = "clients/%c/status"
        """,
    )
    assert provider.authorize("c1", "alice", "publish", "sensors/alice/t") is True
    assert provider.authorize("c1", "alice", "subscribe", "sensors/alice/#") is True
    assert provider.authorize("c1", "alice", "publish", "sensors/bob/t") is False
    assert provider.authorize("c1", None, "publish", "sensors//t") is False
    # A username that would act as a wildcard or add a level does not widen access.
    assert provider.authorize("c1", "+", "subscribe", "sensors/+/#") is False
    assert provider.authorize("c1", "#", "publish", "sensors/x/t") is False
    assert provider.authorize("c1", "a/b", "publish", "sensors/a/b/t") is False
    assert provider.authorize("c1", "u", "publish", "clients/c1/status") is True
    assert provider.authorize("c/1", "u", "publish", "clients/c/1/status") is False
    # A username holding "%c" is literal, not substituted again.
    assert provider.authorize("zz", "%c", "publish", "sensors/zz/t") is False
    assert provider.authorize("zz", "%c", "publish", "sensors/%c/t") is True


def test_deny_rule_with_unfillable_placeholder_fails_closed(tmp_path):
    provider = acl(
        tmp_path,
        """
        [[rule]]
        permission = "deny"
        topic = "private/%u/#"
        [[rule]]
        permission = "allow"
        topic = "#"
        """,
    )
    assert provider.authorize("c", "alice", "publish", "private/alice/x") is False
    assert provider.authorize("c", "alice", "publish", "private/bob/x") is True
    assert provider.authorize("c", None, "publish", "private/bob/x") is False
    assert provider.authorize("c", "a/b", "publish", "private/z/x") is False
    assert provider.authorize("c", None, "publish", "public/x") is True


@pytest.mark.parametrize(
    ("text", "rule", "key"),
    [
        ('[[rule]]\npermission = "allow"\ntopic = "a"\ncolour = "red"\n', 1, "colour"),
        ('[[rule]]\npermission = "maybe"\ntopic = "a"\n', 1, "permission"),
        ('[[rule]]\npermission = "allow"\n', 1, "topic"),
        (
            '[[rule]]\npermission = "allow"\ntopic = "a"\n'
            '[[rule]]\npermission = "allow"\ntopic = "a/#/b"\n',
            2,
            "topic",
        ),
        ('[[rule]]\npermission = "allow"\ntopic = "a+"\n', 1, "topic"),
        ('[[rule]]\npermission = "allow"\ntopic = "a"\naction = "read"\n', 1, "action"),
        ('[[rule]]\npermission = "allow"\ntopic = "a"\nusers = "alice"\n', 1, "users"),
        ('[[rule]]\npermission = "allow"\ntopic = "a"\nclients = [1]\n', 1, "clients"),
    ],
)
def test_bad_acl_names_file_rule_and_key(tmp_path, text, rule, key):
    path = tmp_path / "acl.toml"
    path.write_text(text)
    with pytest.raises(AuthFileError) as info:
        load_acl_file(path)
    assert info.value.rule == rule
    assert info.value.key == key
    assert str(path) in str(info.value)
    assert f"rule {rule}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [('default = "maybe"\n', "default"), ('deafult = "deny"\n', "deafult")],
)
def test_bad_acl_top_level_key(tmp_path, text, key):
    path = tmp_path / "acl.toml"
    path.write_text(text)
    with pytest.raises(AuthFileError) as info:
        load_acl_file(path)
    assert info.value.key == key


def test_invalid_toml_and_missing_file(tmp_path):
    path = tmp_path / "acl.toml"
    path.write_text("[[rule]\n")
    with pytest.raises(AuthFileError, match="invalid TOML"):
        load_acl_file(path)
    with pytest.raises(AuthFileError, match="cannot read"):
        load_acl_file(tmp_path / "nope.toml")


# --- provider authentication ---------------------------------------------------------------------


def test_provider_authenticate(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw", iterations=FAST)
    provider = FileProvider(str(path), "")
    ok = provider.authenticate(req("alice", b"pw"))
    assert ok is not None and ok.ok and ok.username == "alice"
    bad = provider.authenticate(req("alice", b"nope"))
    assert bad is not None and not bad.ok
    no_pw = provider.authenticate(req("alice", None))
    assert no_pw is not None and not no_pw.ok and "password" in no_pw.reason
    assert provider.authenticate(req("mallory", b"pw")) is None  # unknown: pass on
    assert provider.authenticate(req(None, None)) is None  # anonymous: pass on
    assert provider.authenticate(req("alice", b"pw", method="SCRAM-SHA-1")) is None
    assert provider.authorize("c", "alice", "publish", "t") is None  # no ACL file


def test_provider_identity_as_username(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw", iterations=FAST)
    provider = FileProvider(str(path), "", use_identity_as_username=True)
    ok = provider.authenticate(req("ignored", b"wrong", tls_identity="device-42"))
    assert ok is not None and ok.ok and ok.username == "device-42"
    no_cert = provider.authenticate(req("alice", b"pw"))
    assert no_cert is not None and not no_cert.ok


def test_provider_reload_keeps_old_state_on_error(tmp_path):
    path = tmp_path / "acl.toml"
    path.write_text('[[rule]]\npermission = "allow"\ntopic = "a"\n')
    provider = FileProvider("", str(path))
    assert provider.authorize("c", "u", "publish", "a") is True
    path.write_text('[[rule]]\npermission = "allow"\n')
    with pytest.raises(AuthFileError):
        provider.reload()
    assert provider.authorize("c", "u", "publish", "a") is True
    path.write_text('[[rule]]\npermission = "allow"\ntopic = "b"\n')
    provider.reload()
    assert provider.authorize("c", "u", "publish", "a") is False
    assert provider.authorize("c", "u", "publish", "b") is True


# --- interop with the real Mosquitto tools (skipped when not installed) ---------------------------

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
# Debian installs the broker in sbin, which is often not on a user's PATH.
MOSQUITTO = shutil.which(
    "mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
)


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd not installed")
def test_interop_file_written_by_mosquitto_passwd(tmp_path):
    path = tmp_path / "passwd"
    run = [MOSQUITTO_PASSWD, "-b", str(path)]
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), "alice", "wonder land"], check=True)
    subprocess.run([MOSQUITTO_PASSWD, "-H", "sha512", "-b", str(path), "bob", "pw2"], check=True)
    users = load_password_file(path)
    assert users["alice"].startswith("$7$") and users["bob"].startswith("$6$")
    assert verify_password(b"wonder land", users["alice"])
    assert not verify_password(b"wonderland", users["alice"])
    assert verify_password(b"pw2", users["bob"])
    # mosquitto_passwd edits a file of ours and leaves our entries readable.
    set_password(path, "carol", "c4", iterations=FAST)
    subprocess.run([*run, "dave", "d4"], check=True)
    users = load_password_file(path)
    assert verify_password(b"c4", users["carol"]) and verify_password(b"d4", users["dave"])


def _connack_code(port: int, username: str, password: str) -> int:
    """Send a hand-made MQTT 3.1.1 CONNECT with credentials; return the CONNACK code."""

    def field(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    body = field(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30)
    body += field(b"interop") + field(username.encode()) + field(password.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                break
            reply += chunk
    assert reply[:2] == b"\x20\x02", reply
    return reply[3]


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed")
def test_interop_mosquitto_broker_reads_our_password_file(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "wonderland", iterations=FAST)
    set_password(path, "bob", "builder")  # the default iteration count
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {path}\n"
        "user root\npersistence false\n"
    )
    log = tmp_path / "mosquitto.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log_fh, stderr=log_fh)
    try:
        for _ in range(200):  # wait until it listens (or has exited)
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        assert _connack_code(port, "alice", "wonderland") == 0
        assert _connack_code(port, "bob", "builder") == 0
        assert _connack_code(port, "alice", "looking-glass") != 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
