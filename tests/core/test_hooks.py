"""One ``test_hook_<name>`` per hookspec, each against a running broker, plus the
guard tests that keep ``docs/plugin-hooks.md`` and these tests complete."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core import hookspecs
from fluxmq_core.auth import AuthRequest, AuthResult
from fluxmq_core.config import ConfigError
from fluxmq_core.contracts import AuthSetup
from fluxmq_core.errors import AuthFileError
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.message import Message
from fluxmq_core.plugins import PluginError
from fluxmq_core.router import SubscriptionOptions
from fluxmq_core.testing import BrokerThread
from fluxmq_core.transport import ListenerSpec, ProtocolServer

ROOT = Path(__file__).resolve().parents[2]
HOOK_NAMES = sorted(
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("fluxmq_")
)


class Recorder:
    """A throw-away plugin that records every call of the hooks it implements."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def start(factory: Any, plugin: object, **kwargs: Any) -> BrokerThread:
    return factory(plugins=[], extra_plugins=[("recorder", plugin)], **kwargs)


# --- guard tests ---------------------------------------------------------------------


def test_every_hookspec_has_a_docs_heading() -> None:
    doc = (ROOT / "docs" / "plugin-hooks.md").read_text()
    headings = set(re.findall(r"^#+\s+`?(fluxmq_\w+)", doc, re.M))
    missing = [h for h in HOOK_NAMES if h not in headings]
    assert not missing, f"hooks without a heading in docs/plugin-hooks.md: {missing}"
    extra = headings - set(HOOK_NAMES)
    assert not extra, f"docs/plugin-hooks.md documents hooks that do not exist: {extra}"


def test_every_hookspec_has_a_test() -> None:
    source = Path(__file__).read_text()
    missing = [h for h in HOOK_NAMES if f"def test_hook_{h}(" not in source]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_hookspecs_are_docstring_only() -> None:
    for name in HOOK_NAMES:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
        body = inspect.getsource(fn).split('"""')[-1].strip()
        assert body == "", f"{name} has a body beyond its docstring"


# --- one test per hook ---------------------------------------------------------------


def test_hook_fluxmq_add_config(fluxmq_broker_factory: Any, tmp_path: Path) -> None:
    @dataclass
    class Section:
        size: int = 3

    class P:
        @hookimpl
        def fluxmq_add_config(self) -> dict[str, type]:
            return {"recorder": Section}

    broker = start(fluxmq_broker_factory, P(), config={"recorder": {"size": 9}})
    assert broker.context.config.recorder.size == 9
    bad = BrokerThread(
        plugins=[], extra_plugins=[("recorder", P())], config={"recorder": {"size": "x"}}
    )
    with pytest.raises(ConfigError, match="recorder.size: expected int"):
        bad.start()
    bad.close()


def test_hook_fluxmq_register_servers(fluxmq_broker_factory: Any) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            self.t.write(data.upper())

    class P:
        @hookimpl
        def fluxmq_register_servers(self, context: Any) -> list[ProtocolServer]:
            return [ProtocolServer("echo", [ListenerSpec("echo.bind", "127.0.0.1:0", Echo)])]

    broker = start(fluxmq_broker_factory, P())
    with socket.create_connection(broker.address("echo.bind"), timeout=5) as s:
        s.sendall(b"hello")
        assert s.recv(5) == b"HELLO"


def test_hook_fluxmq_register_servers_rejects_non_servers() -> None:
    class P:
        @hookimpl
        def fluxmq_register_servers(self, context: Any) -> list[Any]:
            return ["not a server"]

    broker = BrokerThread(plugins=[], extra_plugins=[("recorder", P())])
    with pytest.raises(PluginError, match="recorder.*ProtocolServer"):
        broker.start()
    broker.close()


def test_hook_fluxmq_startup(fluxmq_broker_factory: Any) -> None:
    rec = Recorder()

    class P:
        @hookimpl
        async def fluxmq_startup(self, context: Any) -> None:
            await asyncio.sleep(0)
            rec.calls.append(("startup", {"bound": dict(context.bound)}))

    start(fluxmq_broker_factory, P())
    assert rec.names() == ["startup"]


def test_hook_fluxmq_startup_failure_names_the_plugin() -> None:
    stopped = []

    class P:
        @hookimpl
        def fluxmq_startup(self, context: Any) -> None:
            raise RuntimeError("boom")

        @hookimpl
        def fluxmq_register_servers(self, context: Any) -> list[ProtocolServer]:
            async def stop() -> None:
                stopped.append(True)

            return [ProtocolServer("x", [], stop=stop)]

    broker = BrokerThread(plugins=[], extra_plugins=[("recorder", P())])
    with pytest.raises(PluginError, match="plugin 'recorder' failed in fluxmq_startup.*boom"):
        broker.start()
    assert stopped == [True]  # what had started was stopped again
    broker.close()


def test_hook_fluxmq_shutdown(fluxmq_broker_factory: Any) -> None:
    rec = Recorder()

    class P:
        @hookimpl
        def fluxmq_shutdown(self, context: Any) -> None:
            rec.calls.append(("shutdown", {"stopping": context.shutting_down.is_set()}))

    broker = start(fluxmq_broker_factory, P())
    assert rec.calls == []
    broker.stop()
    assert rec.calls == [("shutdown", {"stopping": True})]


def test_hook_fluxmq_reload(fluxmq_broker_factory: Any) -> None:
    rec = Recorder()

    class P:
        @hookimpl
        def fluxmq_reload(self, context: Any) -> None:
            rec.calls.append(("reload", {}))

    broker = start(fluxmq_broker_factory, P())
    applied = broker.call(broker.broker.reload())
    assert rec.names() == ["reload"]
    assert "auth" in applied


def test_hook_fluxmq_auth_setup(fluxmq_broker_factory: Any, tmp_path: Path) -> None:
    configs: list[Any] = []

    class P:
        @hookimpl
        def fluxmq_auth_setup(self, context: Any, config: Any) -> AuthSetup:
            configs.append(config.password_file)
            return AuthSetup(authenticates=True, summary="token directory", methods={"X": P})

        @hookimpl
        def fluxmq_authenticate(self, context: Any, request: AuthRequest) -> AuthResult | None:
            return AuthResult(ok=True) if request.password == b"token" else None

    broker = start(fluxmq_broker_factory, P())
    auth = broker.context.auth
    assert configs == [""] and auth.has_source and not auth.authorization_active
    assert "token directory" in auth.sources() and "X" in auth.enhanced_methods()
    remote = AuthRequest("test", "c1", "u", b"token", "192.0.2.1:1", None)
    assert broker.call(auth.authenticate(remote)).ok
    unknown = AuthRequest("test", "c1", "v", b"nope", "192.0.2.1:1", None)
    assert broker.call(auth.authenticate(unknown)).reason == "unknown user"
    # Called again on reload; a plugin that raises keeps the previous setup.
    auth.reload()
    assert configs == ["", ""]

    class Bad:
        @hookimpl
        def fluxmq_auth_setup(self, context: Any, config: Any) -> None:
            raise AuthFileError(tmp_path / "users", "broken", line=3)

    bad = BrokerThread(plugins=[], extra_plugins=[("bad", Bad())])
    with pytest.raises(ConfigError, match="users:3: broken"):
        bad.start()
    bad.close()


def test_hook_fluxmq_authenticate(fluxmq_broker_factory: Any) -> None:
    class P:
        @hookimpl
        async def fluxmq_authenticate(
            self, context: Any, request: AuthRequest
        ) -> AuthResult | None:
            if request.username == "carol":
                return AuthResult(ok=request.password == b"pw", username="carol")
            return None

    broker = start(fluxmq_broker_factory, P(), config={"auth": {"anonymous": False}})
    auth = broker.context.auth

    def req(user: str | None, pw: bytes | None) -> AuthRequest:
        return AuthRequest("test", "c1", user, pw, "127.0.0.1:1", None)

    assert broker.call(auth.authenticate(req("carol", b"pw"))).ok
    assert not broker.call(auth.authenticate(req("carol", b"no"))).ok
    assert not broker.call(auth.authenticate(req(None, None))).ok  # anonymous off


def test_hook_fluxmq_authorize(fluxmq_broker_factory: Any) -> None:
    calls: list[str] = []

    class P:
        @hookimpl
        def fluxmq_authorize(
            self, context: Any, client_id: str, username: str | None, action: str, topic: str
        ) -> bool | None:
            calls.append(topic)
            return not topic.startswith("secret/")

    broker = start(fluxmq_broker_factory, P())
    auth = broker.context.auth
    assert auth.authorization_active
    assert broker.call(auth.authorize("c1", None, "publish", "a/b")) is True
    assert broker.call(auth.authorize("c1", None, "publish", "secret/x")) is False
    assert broker.call(auth.authorize("c1", None, "publish", "secret/x")) is False
    assert calls == ["a/b", "secret/x"]  # the third answer came from the cache


def _observer_broker(factory: Any, hook: str) -> tuple[BrokerThread, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    spec = inspect.signature(getattr(hookspecs, hook))
    params = list(spec.parameters)

    def impl(**kwargs: Any) -> None:
        seen.append(kwargs)

    # Build a hookimpl with exactly the spec's argument names.
    src = f"def {hook}(self, {', '.join(params)}):\n    impl(**{{k: v for k, v in locals().items() if k != 'self'}})\n"
    ns: dict[str, Any] = {"impl": impl}
    exec(src, ns)  # noqa: S102 - test helper building a signature-exact hookimpl
    plugin_cls = type("P", (), {hook: hookimpl(ns[hook])})
    return start(factory, plugin_cls()), seen


def test_hook_fluxmq_client_connected(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_client_connected")
    broker.call_soon(broker.context.events.client_connected, "mqtt", "c1", "u", "127.0.0.1:5")
    assert (
        seen[0]["client_id"] == "c1"
        and seen[0]["username"] == "u"
        and seen[0]["context"] is broker.context
    )


def test_hook_fluxmq_client_disconnected(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_client_disconnected")
    broker.call_soon(broker.context.events.client_disconnected, "mqtt", "c1", "normal")
    assert seen[0]["reason"] == "normal"


def test_hook_fluxmq_client_subscribed(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_client_subscribed")
    opts = SubscriptionOptions(qos=1)
    broker.call_soon(broker.context.events.client_subscribed, "mqtt", "c1", "a/#", opts)
    assert seen[0]["topic_filter"] == "a/#" and seen[0]["options"] is opts


def test_hook_fluxmq_client_unsubscribed(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_client_unsubscribed")
    broker.call_soon(broker.context.events.client_unsubscribed, "mqtt", "c1", "a/#")
    assert seen[0]["topic_filter"] == "a/#"


def test_hook_fluxmq_message_published(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_message_published")
    assert broker.context.events.on_published
    msg = Message("a/b", b"x")
    broker.call_soon(broker.context.publish, msg)
    assert seen[0]["message"] is msg


def test_message_published_flag_is_off_without_implementations(fluxmq_broker_factory: Any) -> None:
    broker = fluxmq_broker_factory(plugins=[])
    assert not broker.context.events.on_published
    assert not broker.context.events.on_delivered
    assert not broker.context.events.on_dropped


def test_hook_fluxmq_message_delivered(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_message_delivered")
    assert broker.context.events.on_delivered
    msg = Message("a/b", b"x")
    broker.call_soon(broker.context.events.message_delivered, msg, "mqtt", "c2")
    assert seen[0]["message"] is msg and seen[0]["client_id"] == "c2"


def test_hook_fluxmq_message_dropped(fluxmq_broker_factory: Any) -> None:
    broker, seen = _observer_broker(fluxmq_broker_factory, "fluxmq_message_dropped")
    msg = Message("a/b", b"x")
    broker.call_soon(broker.context.events.message_dropped, msg, "mqtt", "c2", "expired")
    assert seen[0]["reason"] == "expired"


def test_observer_failure_is_isolated(fluxmq_broker_factory: Any, caplog: Any) -> None:
    seen: list[str] = []

    class Bad:
        @hookimpl
        def fluxmq_client_connected(self, client_id: str) -> None:
            raise RuntimeError("observer bug")

    class Good:
        @hookimpl
        def fluxmq_client_connected(self, client_id: str) -> None:
            seen.append(client_id)

    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("good", Good()), ("bad", Bad())])
    broker.call_soon(broker.context.events.client_connected, "mqtt", "c9", None, "?")
    assert seen == ["c9"]
    assert any(
        "plugin bad failed in fluxmq_client_connected" in r.getMessage() for r in caplog.records
    )


def test_async_observer_runs_and_is_drained(fluxmq_broker_factory: Any) -> None:
    seen: list[str] = []

    class P:
        @hookimpl
        async def fluxmq_client_disconnected(self, client_id: str) -> None:
            await asyncio.sleep(0.01)
            seen.append(client_id)

    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("p", P())])
    broker.call_soon(broker.context.events.client_disconnected, "mqtt", "c3", "normal")
    broker.call(broker.context.events.drain())
    assert seen == ["c3"]
