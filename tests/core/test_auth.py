"""AuthService: Mosquitto 2-like login defaults (anonymous only from this machine, no
username without a source), the file provider as a plugin that declares itself, third-party
plugins before/after it, async and failing hookimpls, the decision cache and per-delivery
read checks."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import types

import pluggy
import pytest

import fluxmq_core.auth_file
import fluxmq_core.hookspecs
from fluxmq_core.auth import (
    PUBLISH,
    SUBSCRIBE,
    AuthConfig,
    AuthFileError,
    AuthRequest,
    AuthResult,
    AuthService,
)
from fluxmq_core.auth_file import set_password
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.plugins import PluginError

FAST = 1000


def req(
    username=None,
    password=None,
    *,
    client_id="c1",
    tls_identity=None,
    method=None,
    remote="127.0.0.1:5555",
    default_login=False,
):
    return AuthRequest(
        protocol="mqtt",
        client_id=client_id,
        username=username,
        password=password,
        remote=remote,
        tls_identity=tls_identity,
        method=method,
        default_login=default_login,
    )


REMOTE = "192.0.2.7:40000"  # not a loopback address


def make_service(*plugins, builtins=True, **config):
    """Built-ins first, then third-party plugins, as the server registers them."""
    pm = pluggy.PluginManager("fluxmq")
    pm.add_hookspecs(fluxmq_core.hookspecs)
    if builtins:
        pm.register(fluxmq_core.auth_file, name="fluxmq.auth_file")
    for n, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test-plugin-{n}")
    context = types.SimpleNamespace()
    service = AuthService(pm, context, AuthConfig(**config))
    context.auth = service
    return service


@pytest.fixture
def passwd(tmp_path):
    path = tmp_path / "passwd"
    set_password(path, "alice", "wonderland", iterations=FAST)
    return str(path)


@pytest.fixture
def acl_file(tmp_path):
    path = tmp_path / "acl.toml"
    path.write_text(
        """
        [[rule]]
        permission = "allow"
        topic = "sensors/%u/#"
        """
    )
    return str(path)


class CountingAuthorizer:
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    @hookimpl
    def fluxmq_authorize(self, context, client_id, username, action, topic):
        self.calls.append((client_id, action, topic))
        return self.answer


# --- authentication defaults (Mosquitto's) -----------------------------------------------------


async def test_no_files_anonymous_true_accepts_everyone():
    service = make_service(anonymous=True)
    assert not service.has_source
    assert (await service.authenticate(req())).ok
    assert (await service.authenticate(req(remote=REMOTE))).ok
    # Mosquitto 1.x: without a password file or plugin, any username is accepted.
    result = await service.authenticate(req("anyone", b"anything", remote=REMOTE))
    assert result.ok and result.username == "anyone"


@pytest.mark.parametrize(
    "remote",
    ["127.0.0.1:1", "127.8.9.10:2", "::1:3", "[::1]:4", "::ffff:127.0.0.1:5", "unix:/run/x"],
)
async def test_default_local_accepts_anonymous_from_this_machine(remote):
    service = make_service()
    assert service.config.anonymous == "local"
    result = await service.authenticate(req(remote=remote))
    assert result.ok and result.username is None


@pytest.mark.parametrize("remote", [REMOTE, "10.1.2.3:4", "2001:db8::1:5", "0.0.0.0:1", "?", ""])
async def test_default_local_refuses_anonymous_from_elsewhere(remote):
    service = make_service()
    result = await service.authenticate(req(remote=remote))
    assert not result.ok and "this machine" in result.reason


async def test_no_source_refuses_usernames_unless_anonymous_true():
    for anonymous in ("local", False):
        service = make_service(anonymous=anonymous)
        result = await service.authenticate(req("anyone", b"anything"))
        assert not result.ok and result.reason == "no authentication source configured"
        assert not (await service.authenticate(req("anyone", None))).ok
    refused = await make_service(anonymous=False).authenticate(req())
    assert not refused.ok and "anonymous" in refused.reason


async def test_zero_length_username_is_no_username(passwd):
    local = make_service(password_file=passwd)
    result = await local.authenticate(req("", b"whatever"))
    assert result.ok and result.username is None
    refused = await local.authenticate(req("", b"whatever", remote=REMOTE))
    assert not refused.ok and "this machine" in refused.reason
    closed = make_service(password_file=passwd, anonymous=False)
    assert not (await closed.authenticate(req("", None))).ok


async def test_default_login_counts_as_anonymous_unless_someone_knows_it(tmp_path):
    # AMQP clients send guest/guest when their user gave nothing: RabbitMQ's guest,
    # which works from this machine only.
    service = make_service()
    assert (await service.authenticate(req("guest", b"guest", default_login=True))).ok
    far = await service.authenticate(req("guest", b"guest", default_login=True, remote=REMOTE))
    assert not far.ok
    path = tmp_path / "passwd"
    set_password(path, "guest", "secret", iterations=FAST)
    known = make_service(password_file=str(path))
    wrong = await known.authenticate(req("guest", b"guest", default_login=True))
    assert not wrong.ok and wrong.reason == "bad password"


async def test_setup_reports_sources(passwd, acl_file):
    assert make_service().sources() == []
    service = make_service(password_file=passwd, acl_file=acl_file)
    assert service.has_source and service.authorization_active
    (line,) = service.sources()
    assert "password file" in line and "1 users" in line and "ACL file" in line
    acl_only = make_service(acl_file=acl_file)
    assert not acl_only.has_source and acl_only.authorization_active
    plugin = make_service(DenyAll())
    assert plugin.has_source and plugin.sources() == ["plugin test-plugin-0"]


def test_start_up_log_names_reachable_listeners(passwd, caplog):
    with caplog.at_level(logging.INFO, logger="fluxmq.auth"):
        make_service().log_exposure({"mqtt.tcp": ("127.0.0.1", 1883)})
        make_service().log_exposure({"mqtt.tcp": ("0.0.0.0", 1883), "http.bind": ("::1", 80)})
        make_service(password_file=passwd).log_exposure({"amqp.tcp": ("192.0.2.1", 5672)})
        make_service(anonymous=True).log_exposure({"mqtt.tcp": ("0.0.0.0", 1)})
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "fluxmq.auth"]
    assert "only this machine" in lines[0][1]
    assert lines[1][0] == "INFO" and "mqtt.tcp (0.0.0.0:1883)" in lines[1][1]
    assert "http.bind" not in lines[1][1] and "No authentication source" in lines[1][1]
    assert lines[2][0] == "INFO" and "amqp.tcp" in lines[2][1] and "password file" in lines[2][1]
    assert lines[3][0] == "WARNING" and "without credentials" in lines[3][1]


async def test_password_file(passwd):
    service = make_service(password_file=passwd)
    ok = await service.authenticate(req("alice", b"wonderland"))
    assert ok.ok and ok.username == "alice"
    assert not (await service.authenticate(req("alice", b"looking-glass"))).ok
    unknown = await service.authenticate(req("mallory", b"wonderland"))
    assert not unknown.ok and unknown.reason == "unknown user"
    no_password = await service.authenticate(req("alice", None))
    assert not no_password.ok
    assert (await service.authenticate(req())).ok  # anonymous still allowed locally
    remote = await service.authenticate(req("alice", b"wonderland", remote=REMOTE))
    assert remote.ok and remote.username == "alice"


async def test_password_file_anonymous_off(passwd):
    service = make_service(password_file=passwd, anonymous=False)
    assert not (await service.authenticate(req())).ok
    assert (await service.authenticate(req("alice", b"wonderland"))).ok


async def test_password_file_without_registered_plugin_fails_closed(passwd):
    service = make_service(builtins=False, password_file=passwd)
    assert not (await service.authenticate(req("alice", b"wonderland"))).ok


async def test_unknown_enhanced_auth_method_is_refused():
    service = make_service()
    result = await service.authenticate(req("alice", None, method="SCRAM-SHA-256"))
    assert not result.ok and "SCRAM-SHA-256" in result.reason


async def test_use_identity_as_username(passwd):
    service = make_service(password_file=passwd, use_identity_as_username=True)
    ok = await service.authenticate(req("alice", b"wrong", tls_identity="sensor-9"))
    assert ok.ok and ok.username == "sensor-9"
    assert not (await service.authenticate(req("alice", b"wonderland"))).ok
    bare = make_service(use_identity_as_username=True)
    ok = await bare.authenticate(req(None, None, tls_identity="sensor-9", remote=REMOTE))
    assert ok.ok and ok.username == "sensor-9"
    assert bare.has_source


# --- third-party plugins --------------------------------------------------------------------------


class DenyAll:
    @hookimpl
    def fluxmq_authenticate(self, context, request):
        return AuthResult(ok=False, reason="denied by policy")

    @hookimpl
    def fluxmq_authorize(self, context, client_id, username, action, topic):
        return False


async def test_third_party_plugin_overrides_file_provider(passwd, acl_file):
    service = make_service(DenyAll(), password_file=passwd, acl_file=acl_file)
    result = await service.authenticate(req("alice", b"wonderland"))
    assert not result.ok and result.reason == "denied by policy"
    assert await service.authorize("c1", "alice", PUBLISH, "sensors/alice/t") is False


class LateDirectory:
    """trylast and registered after the built-ins: asked after the password file."""

    def __init__(self):
        self.seen = []

    @hookimpl(trylast=True)
    async def fluxmq_authenticate(self, context, request):
        self.seen.append(request.username)
        if request.username == "bob":
            return AuthResult(ok=True, attributes={"source": "directory"})
        return None


async def test_trylast_plugin_answers_after_the_file_provider(passwd):
    late = LateDirectory()
    service = make_service(late, password_file=passwd)
    assert (await service.authenticate(req("alice", b"wonderland"))).ok
    assert late.seen == []  # the file provider answered first
    bob = await service.authenticate(req("bob", b"x"))
    assert bob.ok and bob.username == "bob" and bob.attributes == {"source": "directory"}
    assert not (await service.authenticate(req("carol", b"x"))).ok  # nobody knows carol
    assert late.seen == ["bob", "carol"]


class AsyncPasser:
    """An async hookimpl resolving to None must pass, not end the chain."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    async def fluxmq_authenticate(self, context, request):
        self.calls += 1
        return None


async def test_async_hookimpl_resolving_to_none_passes_to_the_next(passwd):
    passer = AsyncPasser()
    service = make_service(passer, password_file=passwd)
    assert not (await service.authenticate(req("alice", b"bad"))).ok
    assert (await service.authenticate(req("alice", b"wonderland"))).ok
    assert passer.calls == 2


class AsyncAuthority:
    @hookimpl
    async def fluxmq_authenticate(self, context, request):
        return AuthResult(ok=request.password == b"token", username="from-token")

    @hookimpl
    async def fluxmq_authorize(self, context, client_id, username, action, topic):
        return topic.startswith("ok/")


async def test_async_hookimpls_decide():
    service = make_service(AsyncAuthority())
    result = await service.authenticate(req("x", b"token"))
    assert result.ok and result.username == "from-token"
    assert not (await service.authenticate(req("x", b"other"))).ok
    assert service.authorization_active
    assert await service.authorize("c", "x", PUBLISH, "ok/1") is True
    assert await service.authorize("c", "x", PUBLISH, "no/1") is False


class Exploding:
    @hookimpl
    def fluxmq_authenticate(self, context, request):
        raise RuntimeError("backend down")

    @hookimpl
    def fluxmq_authorize(self, context, client_id, username, action, topic):
        raise RuntimeError("backend down")


async def test_raising_hook_is_failure_and_logged_with_plugin_name(caplog):
    service = make_service(Exploding())
    with caplog.at_level(logging.ERROR, logger="fluxmq.auth"):
        result = await service.authenticate(req("alice", b"pw"))
        allowed = await service.authorize("c", "alice", PUBLISH, "t")
    assert not result.ok
    assert allowed is False
    assert service.authorize_cached("c", "alice", PUBLISH, "t") is None  # errors not cached
    messages = [r.getMessage() for r in caplog.records if r.name == "fluxmq.auth"]
    assert any("test-plugin-0" in m and "fluxmq_authenticate" in m for m in messages)
    assert any("test-plugin-0" in m and "fluxmq_authorize" in m for m in messages)


class WrongType:
    @hookimpl
    def fluxmq_authenticate(self, context, request):
        return True


async def test_non_authresult_answer_is_refused():
    service = make_service(WrongType())
    assert not (await service.authenticate(req("a", b"b"))).ok


# --- authorization and the cache ----------------------------------------------------------------


async def test_authorization_inactive_without_acl_or_plugins():
    service = make_service()
    assert service.authorization_active is False
    assert service.authorize_cached("c", None, PUBLISH, "anything") is True
    assert await service.authorize("c", None, SUBSCRIBE, "#") is True
    assert service.cache_entries == 0


async def test_acl_file_through_the_service(acl_file):
    service = make_service(acl_file=acl_file)
    assert service.authorization_active
    assert service.authorize_cached("c1", "alice", PUBLISH, "sensors/alice/t") is None
    assert await service.authorize("c1", "alice", PUBLISH, "sensors/alice/t") is True
    assert await service.authorize("c1", "alice", PUBLISH, "sensors/bob/t") is False
    assert service.authorize_cached("c1", "alice", PUBLISH, "sensors/alice/t") is True
    assert service.authorize_cached("c1", "alice", PUBLISH, "sensors/bob/t") is False


async def test_cache_hit_does_not_call_the_hook():
    counter = CountingAuthorizer(True)
    service = make_service(counter)
    assert await service.authorize("c1", "u", PUBLISH, "a") is True
    assert await service.authorize("c1", "u", PUBLISH, "a") is True
    assert service.authorize_cached("c1", "u", PUBLISH, "a") is True
    assert len(counter.calls) == 1
    await service.authorize("c1", "u", SUBSCRIBE, "a")  # other action: new decision
    assert len(counter.calls) == 2


async def test_no_answer_means_allow_and_is_cached():
    counter = CountingAuthorizer(None)
    service = make_service(counter)
    assert await service.authorize("c1", "u", PUBLISH, "a") is True
    assert service.authorize_cached("c1", "u", PUBLISH, "a") is True
    assert len(counter.calls) == 1


async def test_forget_client_drops_only_that_client():
    counter = CountingAuthorizer(True)
    service = make_service(counter)
    await service.authorize("c1", "u", PUBLISH, "a")
    await service.authorize("c1", "u", PUBLISH, "b")
    await service.authorize("c2", "v", PUBLISH, "a")
    assert service.cache_entries == 3
    service.forget_client("c1")
    service.forget_client("never-seen")
    assert service.cache_entries == 1
    assert service.authorize_cached("c1", "u", PUBLISH, "a") is None
    assert service.authorize_cached("c2", "v", PUBLISH, "a") is True


async def test_same_client_id_with_another_username_is_a_miss():
    counter = CountingAuthorizer(True)
    service = make_service(counter)
    await service.authorize("c1", "alice", PUBLISH, "a")
    assert service.authorize_cached("c1", "mallory", PUBLISH, "a") is None
    await service.authorize("c1", "mallory", PUBLISH, "a")
    assert len(counter.calls) == 2
    assert service.cache_entries == 1


async def test_cache_is_bounded():
    counter = CountingAuthorizer(True)
    service = make_service(counter, cache_size=3)
    for n in range(10):
        await service.authorize(f"c{n % 2}", "u", PUBLISH, f"t/{n}")
        assert service.cache_entries <= 3
    disabled = make_service(CountingAuthorizer(True), cache_size=0)
    await disabled.authorize("c", "u", PUBLISH, "t")
    assert disabled.cache_entries == 0


async def test_reload_picks_up_changes_and_clears_the_cache(tmp_path, passwd):
    acl_path = tmp_path / "acl.toml"
    acl_path.write_text('[[rule]]\npermission = "allow"\ntopic = "a"\n')
    service = make_service(password_file=passwd, acl_file=str(acl_path))
    assert await service.authorize("c", "alice", PUBLISH, "a") is True

    acl_path.write_text('[[rule]]\npermission = "allow"\ntopic = "b"\n')
    set_password(passwd, "bob", "builder", iterations=FAST)
    assert service.authorize_cached("c", "alice", PUBLISH, "a") is True  # not yet reloaded
    service.reload()
    assert service.cache_entries == 0
    assert await service.authorize("c", "alice", PUBLISH, "a") is False
    assert await service.authorize("c", "alice", PUBLISH, "b") is True
    assert (await service.authenticate(req("bob", b"builder"))).ok


async def test_reload_with_a_bad_file_raises_and_keeps_the_old_rules(tmp_path):
    acl_path = tmp_path / "acl.toml"
    acl_path.write_text('[[rule]]\npermission = "allow"\ntopic = "a"\n')
    service = make_service(acl_file=str(acl_path))
    await service.authorize("c", "u", PUBLISH, "a")
    acl_path.write_text('[[rule]]\npermission = "allow"\ntopic = "a"\nextra = 1\n')
    with pytest.raises(AuthFileError, match="extra"):
        service.reload()
    assert service.authorize_cached("c", "u", PUBLISH, "a") is True
    assert await service.authorize("c", "u", PUBLISH, "z") is False


def test_bad_file_at_start_up_raises(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("alice:plain\n")
    with pytest.raises(AuthFileError, match=":1:"):
        make_service(password_file=str(path))


async def test_reload_applies_changed_paths_from_the_config(tmp_path, passwd):
    service = make_service(anonymous=True)
    assert not service.has_source and not service.authorization_active
    acl_path = tmp_path / "acl.toml"
    acl_path.write_text('[[rule]]\npermission = "allow"\ntopic = "a"\n')
    service.config.password_file = passwd
    service.config.acl_file = str(acl_path)
    service.reload()
    assert service.authorization_active
    assert await service.authorize("c", "alice", PUBLISH, "b") is False
    assert not (await service.authenticate(req("mallory", b"x"))).ok
    service.config.password_file = ""
    service.config.acl_file = ""
    service.reload()
    assert not service.has_source and not service.authorization_active
    assert (await service.authenticate(req("mallory", b"x"))).ok


# --- module structure -----------------------------------------------------------------------------


def _modules_loaded_by(module: str) -> set[str]:
    code = (
        f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('fluxmq')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_contracts_and_hookspecs_are_leaves_and_the_service_knows_no_provider():
    leaves = {"fluxmq_core", "fluxmq_core.config", "fluxmq_core.errors", "fluxmq_core.contracts"}
    assert _modules_loaded_by("fluxmq_core.contracts") <= leaves
    assert _modules_loaded_by("fluxmq_core.hookspecs") <= leaves | {"fluxmq_core.hookspecs"}
    service = _modules_loaded_by("fluxmq_core.auth")
    assert not service & {"fluxmq_core.auth_file", "fluxmq_core.scram", "fluxmq_core.passwords"}


class BrokenSetup:
    def __init__(self, answer):
        self.answer = answer

    @hookimpl
    def fluxmq_auth_setup(self, context, config):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [RuntimeError("ldap down"), "yes", ({},)])
def test_failing_or_wrong_setup_names_the_plugin(answer):
    with pytest.raises(PluginError, match="test-plugin-0"):
        make_service(BrokenSetup(answer))


# --- per-delivery read checks (acl_subscribe = "filter") ---------------------------------------


async def test_may_read_asks_a_sync_authorizer_once_per_topic():
    counter = CountingAuthorizer(True)
    service = make_service(counter)
    assert service.filter_reads
    assert service.may_read("c1", "u", "a/b") is True
    assert service.may_read("c1", "u", "a/b") is True
    assert counter.calls == [("c1", SUBSCRIBE, "a/b")]
    assert service.authorize_cached("c1", "u", SUBSCRIBE, "a/b") is True
    assert not make_service(counter, acl_subscribe="strict").filter_reads
    assert not make_service().filter_reads  # no authorization at all: nothing to check


async def test_may_read_with_an_async_authorizer_refuses_then_decides(caplog):
    service = make_service(AsyncAuthority())
    with caplog.at_level(logging.WARNING, logger="fluxmq.auth"):
        assert service.may_read("c", "x", "ok/1") is False  # cannot wait at delivery
        assert service.may_read("c", "x", "ok/1") is False  # one decision in flight
    assert sum("async fluxmq_authorize" in r.getMessage() for r in caplog.records) == 1
    for _ in range(20):  # let the background decision finish
        if service.authorize_cached("c", "x", SUBSCRIBE, "ok/1") is not None:
            break
        await asyncio.sleep(0)
    assert service.may_read("c", "x", "ok/1") is True


async def test_may_read_failing_authorizer_refuses_and_is_not_cached():
    service = make_service(Exploding())
    assert service.may_read("c", "u", "t") is False
    assert service.authorize_cached("c", "u", SUBSCRIBE, "t") is None
