"""SCRAM-SHA-256: the sans-IO server and client against RFC 7677's vector, hostile and
malformed messages (including arbitrary bytes), unknown users that look like real ones,
and the enhanced-auth API of AuthService driven end to end with a real password file."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import logging
import re
import types
from pathlib import Path

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluxmq_core.auth_file
import fluxmq_core.hookspecs
import fluxmq_core.scram
from fluxmq_core.auth import (
    SCRAM_SHA_256,
    AuthConfig,
    AuthError,
    AuthRequest,
    AuthService,
    Step,
)
from fluxmq_core.auth_file import set_password
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.scram import (
    SALT_BYTES,
    ScramClient,
    ScramCredentials,
    ScramError,
    ScramServer,
    check_password,
    make_credentials,
    saslprep,
)

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

GOOD_NONCE = (RFC_CLIENT_NONCE + RFC_SERVER_NONCE).encode()

SERVER_FIRST_SHAPE = re.compile(rb"r=[!-+\--~]+,s=[A-Za-z0-9+/]+=*,i=[0-9]+")

USERS = {"user": make_credentials("pencil", RFC_SALT, 4096)}


def rfc_server(users=USERS) -> ScramServer:
    return ScramServer(users.get, nonce=RFC_SERVER_NONCE)


def exchange(server: ScramServer, client: ScramClient) -> None:
    """Run a whole exchange in memory; raises ScramError where it fails."""
    server_first = server.first(client.first())
    server_final = server.final(client.final(server_first))
    client.verify(server_final)


# --- RFC 7677 test vector ------------------------------------------------------------------


def test_rfc7677_vector_server_side():
    server = rfc_server()
    assert server.first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.username == "user" and not server.done
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.done


def test_rfc7677_vector_client_side():
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)
    assert client.done


def test_credentials_and_plain_password_check():
    creds = USERS["user"]
    assert (len(creds.stored_key), len(creds.server_key)) == (32, 32)
    assert check_password(b"pencil", creds)
    assert not check_password(b"Pencil", creds)
    fresh = make_credentials("pencil")
    assert len(fresh.salt) == SALT_BYTES and fresh.iterations == 4096
    assert fresh != make_credentials("pencil")  # fresh salt each time
    with pytest.raises(ValueError):
        make_credentials("x", iterations=0)


def test_client_and_server_with_random_nonces():
    server = ScramServer(USERS.get)
    client = ScramClient("user", "pencil")
    exchange(server, client)
    assert server.done and client.done


# --- usernames and SASLprep -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("user", "user"),
        ("I\u00adX", "IX"),  # soft hyphen is mapped to nothing (RFC 4013 section 3)
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u2003b", "a b"),  # non-ASCII space becomes a space
    ],
)
def test_saslprep(raw, prepared):
    assert saslprep(raw) == prepared


@pytest.mark.parametrize("bad", ["\u0007", "a\u0627\u0031", "\ue000"])
def test_saslprep_refuses_prohibited_text(bad):
    with pytest.raises(ValueError):
        saslprep(bad)


@pytest.mark.parametrize("name", ["a,b", "a=b", "=2C", ",=,", "ünïcode"])
def test_usernames_with_comma_and_equals_are_escaped(name):
    users = {name: make_credentials("pw")}
    server = ScramServer(users.get)
    client = ScramClient(name, "pw")
    assert b"=2C" in client.first() or "," not in name
    exchange(server, client)
    assert server.username == name


def test_username_is_saslprepped_before_lookup():
    seen = []
    server = ScramServer(lambda u: seen.append(u))
    server.first("n,,n=I\u00adX,r=abc".encode())
    assert seen == ["IX"]


# --- failures --------------------------------------------------------------------------------


def test_wrong_password_fails_at_final():
    server = rfc_server()
    client = ScramClient("user", "pencils")
    server_first = server.first(client.first())  # nothing is revealed yet
    with pytest.raises(ScramError) as info:
        server.final(client.final(server_first))
    assert info.value.reason == "invalid-proof"
    assert not server.done


def test_unknown_user_fails_only_at_final_and_looks_real():
    server = ScramServer(USERS.get)
    client = ScramClient("mallory", "pencil")
    server_first = server.first(client.first())
    assert SERVER_FIRST_SHAPE.fullmatch(server_first)
    real_first = ScramServer(USERS.get).first(ScramClient("user", "x").first())
    assert SERVER_FIRST_SHAPE.fullmatch(real_first)

    def fields(message):
        return dict(part.split(b"=", 1) for part in message.split(b","))

    fake, real = fields(server_first), fields(real_first)
    assert len(base64.b64decode(fake[b"s"])) == len(base64.b64decode(real[b"s"]))
    assert fake[b"i"] == real[b"i"]
    assert len(fake[b"r"]) == len(real[b"r"])
    # The same unknown user gets the same salt every time, as a real user would...
    again = fields(ScramServer(USERS.get).first(ScramClient("mallory", "x").first()))
    assert again[b"s"] == fake[b"s"]
    # ...and different users get different ones.
    other = fields(ScramServer(USERS.get).first(ScramClient("trudy", "x").first()))
    assert other[b"s"] != fake[b"s"]

    with pytest.raises(ScramError) as unknown:
        server.final(client.final(server_first))
    wrong = ScramServer(USERS.get)
    bad_client = ScramClient("user", "wrong")
    with pytest.raises(ScramError) as bad_password:
        wrong.final(bad_client.final(wrong.first(bad_client.first())))
    assert str(unknown.value) == str(bad_password.value)
    assert unknown.value.reason == "invalid-proof"


def test_fake_salt_depends_on_the_secret():
    a = ScramServer(USERS.get, fake_secret=b"a" * 32).first(b"n,,n=ghost,r=x")
    b = ScramServer(USERS.get, fake_secret=b"b" * 32).first(b"n,,n=ghost,r=x")
    assert a.split(b",")[1] != b.split(b",")[1]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "other-error"),
        (b"n,,", "other-error"),
        (b"n,,n=user", "other-error"),
        (b"n,,r=abc,n=user", "other-error"),
        (b"x,,n=user,r=abc", "other-error"),
        (b"n,n=user,r=abc", "other-error"),
        (b"n", "other-error"),
        (b"n,,n=user,r=", "other-error"),
        (b"n,,n=user,r=a b", "other-error"),
        (b"n,,n=,r=abc", "other-error"),
        (b"n,,n=a=2Db,r=abc", "invalid-username-encoding"),
        (b"n,,n=a=,r=abc", "invalid-username-encoding"),
        (b"n,,n=\x07,r=abc", "invalid-username-encoding"),
        (b"n,,n=user,r=abc,", "other-error"),
        (b"n,,n=user,r=abc,noequals", "other-error"),
        (b"n,,m=ext,n=user,r=abc", "extensions-not-supported"),
        (b"p=tls-unique,,n=user,r=abc", "channel-binding-not-supported"),
        (b"p=tls-server-end-point,,n=user,r=abc", "channel-binding-not-supported"),
        (b"n,b=x,n=user,r=abc", "other-error"),
        (b"n,a=other,n=user,r=abc", "other-error"),  # no authzid
        (b"n,a=user,n=user,r=abc", "other-error"),
        (b"n,,n=\xff\xfe,r=abc", "invalid-encoding"),
        (b"n,,n=user,r=" + b"a" * 5000, "other-error"),
    ],
)
def test_malformed_client_first(message, reason):
    server = rfc_server()
    with pytest.raises(ScramError) as info:
        server.first(message)
    assert info.value.reason == reason
    with pytest.raises(RuntimeError):  # the exchange is over
        server.final(RFC_CLIENT_FINAL)


def test_channel_binding_error_is_clear():
    with pytest.raises(ScramError, match="channel-binding-not-supported.*channel binding"):
        rfc_server().first(b"p=tls-unique,,n=user,r=abc")


def proof_by_hand(password, salt, iterations, auth_message):
    """RFC 5802 section 3 written out with hashlib, independently of the module."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


@pytest.mark.parametrize("gs2", [b"n,,", b"y,,"])
def test_gs2_headers_without_channel_binding_are_accepted(gs2):
    server = rfc_server()
    bare = b"n=user,r=" + RFC_CLIENT_NONCE.encode()
    server_first = server.first(gs2 + bare)
    assert server_first == RFC_SERVER_FIRST
    without_proof = b"c=" + base64.b64encode(gs2) + b",r=" + GOOD_NONCE
    proof = proof_by_hand(b"pencil", RFC_SALT, 4096, b",".join([bare, server_first, without_proof]))
    server_final = server.final(without_proof + b",p=" + base64.b64encode(proof))
    assert server.done and server_final.startswith(b"v=")


PROOF = b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "other-error"),
        (b"c=biws,r=" + GOOD_NONCE, "other-error"),  # no proof
        (b"r=" + GOOD_NONCE + b"," + PROOF, "other-error"),  # no channel binding
        (b"c=biws," + PROOF, "other-error"),  # no nonce
        (b"c=biws,r=" + GOOD_NONCE + b",p=!!!!", "invalid-encoding"),  # bad base64
        (b"c=b!ws,r=" + GOOD_NONCE + b"," + PROOF, "invalid-encoding"),
        (b"c=biws,r=" + GOOD_NONCE + b",p=AAAA", "invalid-proof"),  # proof too short
        (b"c=biws,r=" + GOOD_NONCE[:-1] + b"," + PROOF, "other-error"),  # nonce mismatch
        (b"c=biws,r=" + RFC_CLIENT_NONCE.encode() + b"," + PROOF, "other-error"),
        (b"c=eSws,r=" + GOOD_NONCE + b"," + PROOF, "channel-bindings-dont-match"),
        (b"c=cD10bHMtdW5pcXVlLCw=,r=" + GOOD_NONCE + b"," + PROOF, "channel-bindings-dont-match"),
        (b"c=biws,r=" + GOOD_NONCE + b",x=ext,p=" + b"A" * 44, "invalid-proof"),
        (RFC_CLIENT_FINAL + b"\xff", "invalid-encoding"),
    ],
)
def test_malformed_client_final(message, reason):
    server = rfc_server()
    server.first(RFC_CLIENT_FIRST)
    with pytest.raises(ScramError) as info:
        server.final(message)
    assert info.value.reason == reason
    assert not server.done


def test_extensions_before_the_proof_are_covered_by_it():
    # An extension is part of client-final-without-proof, so adding one to a valid
    # message breaks the proof instead of being silently accepted.
    server = rfc_server()
    server.first(RFC_CLIENT_FIRST)
    tampered = RFC_CLIENT_FINAL.replace(b",p=", b",x=1,p=")
    with pytest.raises(ScramError, match="invalid-proof"):
        server.final(tampered)


def test_api_misuse_is_a_runtime_error():
    server = rfc_server()
    with pytest.raises(RuntimeError):
        server.final(RFC_CLIENT_FINAL)
    server.first(RFC_CLIENT_FIRST)
    with pytest.raises(RuntimeError):
        server.first(RFC_CLIENT_FIRST)
    with pytest.raises(RuntimeError):
        ScramClient("user", "pencil").verify(RFC_SERVER_FINAL)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_first_with_arbitrary_bytes_raises_only_scram_error(data):
    server = ScramServer(USERS.get)
    try:
        answer = server.first(data)
    except ScramError:
        return
    assert SERVER_FIRST_SHAPE.fullmatch(answer)


SCRAMISH = st.lists(
    st.sampled_from(
        [
            "n",
            "y",
            "p",
            "c",
            "r",
            "s",
            "i",
            "m",
            "a",
            "=",
            ",",
            "=2C",
            "=3D",
            "biws",
            "user",
            "AAAA",
            "\u00e9",
            "\x00",
            RFC_CLIENT_NONCE,
            RFC_SERVER_NONCE,
            "p=",
            "n,,",
        ]
    ),
    max_size=20,
).map(lambda parts: "".join(parts).encode())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), SCRAMISH))
def test_final_with_arbitrary_bytes_raises_only_scram_error(data):
    server = rfc_server()
    server.first(RFC_CLIENT_FIRST)
    with pytest.raises(ScramError):
        server.final(data)


@settings(max_examples=200, deadline=None)
@given(SCRAMISH)
def test_first_with_scram_like_text_raises_only_scram_error(data):
    try:
        ScramServer(USERS.get).first(data)
    except ScramError:
        pass


# --- the client's own checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nonce not ours
        b"r=" + RFC_CLIENT_NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # not extended
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=1"),  # downgrade
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=99999999999"),
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=x"),
        RFC_SERVER_FIRST.replace(b"s=W22ZaJ0SNY7soEsUEjb6gQ==", b"s="),
        b"m=x," + RFC_SERVER_FIRST,
        b"e=other-error",
    ],
)
def test_client_refuses_bad_server_first(server_first):
    with pytest.raises(ScramError):
        ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE).final(server_first)


@pytest.mark.parametrize(
    "server_final",
    [b"v=" + base64.b64encode(b"\0" * 32), b"e=invalid-proof", b"x=1", b"v=!!"],
)
def test_client_refuses_bad_server_final(server_final):
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.final(RFC_SERVER_FIRST)
    with pytest.raises(ScramError):
        client.verify(server_final)
    assert not client.done


def test_error_server_final_form():
    assert ScramError("invalid-proof").server_final == b"e=invalid-proof"


def test_scram_module_is_sans_io():
    tree = ast.parse(Path(fluxmq_core.scram.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("fluxmq_core.")
    }
    assert not imported & {"asyncio", "socket", "time", "anyio"}
    # Of FluxMQ only the leaf errors module (ScramError is an AuthError).
    assert {m for m in source_modules(tree) if m.startswith("fluxmq")} == {"fluxmq_core.errors"}


def source_modules(tree: ast.AST) -> set[str]:
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


# --- enhanced authentication through AuthService ---------------------------------------------


def make_service(*plugins, **config) -> AuthService:
    pm = pluggy.PluginManager("fluxmq")
    pm.add_hookspecs(fluxmq_core.hookspecs)
    pm.register(fluxmq_core.auth_file, name="fluxmq.auth_file")
    for n, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test-plugin-{n}")
    context = types.SimpleNamespace()
    service = AuthService(pm, context, AuthConfig(**config))
    context.auth = service
    return service


@pytest.fixture
def scram_passwd(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "wonderland", scheme="scram-sha-256")
    set_password(path, "bob", "builder", iterations=1000)  # a $7$ entry
    return str(path)


async def run_exchange(service: AuthService, client: ScramClient):
    session = service.start_enhanced(SCRAM_SHA_256, "c1", protocol="mqtt")
    assert session is not None
    status, server_first = await session.step(client.first())
    assert status is Step.CONTINUE and status == "continue"
    status, server_final = await session.step(client.final(server_first))
    assert status is Step.SUCCESS and status == "success"
    client.verify(server_final)
    return session


async def test_full_exchange_through_auth_service(scram_passwd):
    service = make_service(password_file=scram_passwd)
    assert service.enhanced_methods() == [SCRAM_SHA_256]
    session = await run_exchange(service, ScramClient("alice", "wonderland"))
    assert session.done and session.username == "alice"
    result = session.result
    assert result.ok and result.username == "alice"
    with pytest.raises(AuthError):
        await session.step(b"n,,n=alice,r=again")  # finished: no more steps


async def test_wrong_password_and_unknown_user_through_auth_service(scram_passwd):
    service = make_service(password_file=scram_passwd)
    for name, password in [("alice", "looking-glass"), ("nobody", "x"), ("bob", "builder")]:
        client = ScramClient(name, password)
        session = service.start_enhanced(SCRAM_SHA_256, "c1")
        status, server_first = await session.step(client.first())
        assert status is Step.CONTINUE  # no hint yet, not even for bob's $7$ entry
        with pytest.raises(AuthError) as info:
            await session.step(client.final(server_first))
        assert info.value.reason == "invalid-proof"
        assert not session.done and not session.result.ok and session.username is None
        with pytest.raises(AuthError):
            await session.step(b"anything")


async def test_malformed_data_through_auth_service_is_auth_error(scram_passwd):
    service = make_service(password_file=scram_passwd)
    session = service.start_enhanced(SCRAM_SHA_256, "c1")
    with pytest.raises(AuthError) as info:
        await session.step(b"p=tls-unique,,n=alice,r=x")
    assert info.value.reason == "channel-binding-not-supported"


async def test_plain_login_with_a_scram_entry(scram_passwd):
    service = make_service(password_file=scram_passwd)

    def req(username, password):
        return AuthRequest("mqtt", "c1", username, password, "127.0.0.1:1", None)

    assert (await service.authenticate(req("alice", b"wonderland"))).ok
    assert not (await service.authenticate(req("alice", b"wonder"))).ok
    assert (await service.authenticate(req("bob", b"builder"))).ok


def test_scram_offered_only_with_a_password_file(tmp_path, scram_passwd):
    assert make_service().enhanced_methods() == []
    assert make_service().start_enhanced(SCRAM_SHA_256, "c1") is None
    assert make_service(password_file=scram_passwd).start_enhanced("SCRAM-SHA-1", "c1") is None
    service = make_service(password_file=scram_passwd, use_identity_as_username=True)
    assert service.enhanced_methods() == []
    assert service.start_enhanced(SCRAM_SHA_256, "c1") is None


async def test_reload_mid_exchange_keeps_the_exchange_consistent(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "one", scheme="scram-sha-256")
    service = make_service(password_file=str(path))
    client = ScramClient("alice", "one")
    session = service.start_enhanced(SCRAM_SHA_256, "c1")
    _, server_first = await session.step(client.first())
    set_password(path, "alice", "two", scheme="scram-sha-256")
    service.reload()
    status, server_final = await session.step(client.final(server_first))
    assert status is Step.SUCCESS
    await run_exchange(service, ScramClient("alice", "two"))


class OneTimeCode:
    """A toy two-step method a plugin might register: the server sends a challenge,
    the client answers with the code; step is async, as a real one may be."""

    def __init__(self, request: AuthRequest) -> None:
        self.request = request
        self.username: str | None = None
        self._user = ""

    async def step(self, data: bytes):
        if not self._user:
            self._user = data.decode()
            return "continue", b"code?"
        if data != b"1234":
            raise AuthError("bad code")
        self.username = self._user
        return "success", b""


async def test_plugin_registers_a_method():
    service = make_service()
    made = []

    def factory(request):
        made.append(request)
        return OneTimeCode(request)

    service.register_method("OTP", factory)
    assert service.enhanced_methods() == ["OTP"]
    session = service.start_enhanced("OTP", "c9", protocol="amqp", remote="10.0.0.1:5")
    assert made[0].client_id == "c9" and made[0].protocol == "amqp"
    assert made[0].method == "OTP" and made[0].username is None
    assert await session.step(b"carol") == (Step.CONTINUE, b"code?")
    assert await session.step(b"1234") == (Step.SUCCESS, b"")
    assert session.result.username == "carol"

    session = service.start_enhanced("OTP", "c9")
    await session.step(b"carol")
    with pytest.raises(AuthError, match="bad code"):
        await session.step(b"0000")

    with pytest.raises(ValueError, match="already registered"):
        service.register_method("OTP", factory)
    service.register_method("OTP", lambda request: None, replace=True)
    assert service.start_enhanced("OTP", "c9") is None


async def test_plugin_replaces_builtin_scram(scram_passwd):
    service = make_service(password_file=scram_passwd)
    with pytest.raises(ValueError):
        service.register_method(SCRAM_SHA_256, OneTimeCode)
    service.register_method(SCRAM_SHA_256, OneTimeCode, replace=True)
    session = service.start_enhanced(SCRAM_SHA_256, "c1")
    assert await session.step(b"x") == (Step.CONTINUE, b"code?")


class Broken:
    username = None

    def __init__(self, answer):
        self.answer = answer

    def step(self, data):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    "answer",
    [KeyError("boom"), None, ("maybe", b""), ("continue", "not bytes"), b"xx"],
)
async def test_broken_method_is_auth_error_and_logged(answer, caplog):
    service = make_service()
    service.register_method("BROKEN", lambda request: Broken(answer))
    session = service.start_enhanced("BROKEN", "c1")
    with caplog.at_level(logging.ERROR, logger="fluxmq.auth"):
        with pytest.raises(AuthError) as info:
            await session.step(b"")
    assert info.value.reason == "other-error"
    assert any("BROKEN" in r.getMessage() for r in caplog.records if r.name == "fluxmq.auth")


def test_failing_factory_is_logged_and_means_unsupported(caplog):
    service = make_service()

    def factory(request):
        raise RuntimeError("no backend")

    service.register_method("X", factory)
    with caplog.at_level(logging.ERROR, logger="fluxmq.auth"):
        assert service.start_enhanced("X", "c1") is None
    assert any("'X'" in r.getMessage() for r in caplog.records)


def test_plugin_registers_its_method_at_startup(fluxmq_broker_factory):
    class OtpPlugin:
        @hookimpl
        def fluxmq_startup(self, context):
            context.auth.register_method("OTP", OneTimeCode)

    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("otp", OtpPlugin())])
    auth = broker.context.auth
    assert "OTP" in auth.enhanced_methods()

    async def login():
        session = auth.start_enhanced("OTP", "c1")
        await session.step(b"dave")
        return await session.step(b"1234"), session.username

    assert broker.call(login()) == ((Step.SUCCESS, b""), "dave")


def test_credentials_type_is_frozen():
    creds = make_credentials("x")
    assert isinstance(creds, ScramCredentials)
    with pytest.raises(AttributeError):
        creds.iterations = 1  # type: ignore[misc]
