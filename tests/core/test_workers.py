"""``--workers``: the parts the core owns (no etcd needed): SO_REUSEPORT listeners,
the worker count, and the clear refusals when the cluster driver is missing. The
workers running as one broker are tested in ``tests/e2e/test_workers.py``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core import workers
from fluxmq_core.config import ConfigError, ServerConfig, load_config, setting
from fluxmq_core.plugins import PluginRegistry
from fluxmq_core.stats import Stats
from fluxmq_core.transport import ListenerSet
from fluxmq_core.transport.base import ListenerSpec


def spec(address: str) -> ListenerSpec:
    return ListenerSpec(name="test.tcp", address=address, protocol_factory=asyncio.Protocol)


async def test_reuse_port_lets_two_listener_sets_share_a_port() -> None:
    first = ListenerSet(Stats(started_at=0.0), reuse_port=True)
    await first.bind([spec("127.0.0.1:0")])
    port = first.bound["test.tcp"][1]
    second = ListenerSet(Stats(started_at=0.0), reuse_port=True)
    try:
        await second.bind([spec(f"127.0.0.1:{port}")])
        assert second.bound["test.tcp"] == ("127.0.0.1", port)
        # Both accept: a connection is served whichever socket the kernel picks.
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
    finally:
        for ls in (first, second):
            ls.close()
            await ls.wait_closed()


async def test_without_reuse_port_a_taken_port_is_a_config_error() -> None:
    first = ListenerSet(Stats(started_at=0.0))
    await first.bind([spec("127.0.0.1:0")])
    port = first.bound["test.tcp"][1]
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            await ListenerSet(Stats(started_at=0.0)).bind([spec(f"127.0.0.1:{port}")])
    finally:
        first.close()
        await first.wait_closed()


def test_resolve_workers() -> None:
    assert workers.resolve_workers(3) == 3
    assert workers.resolve_workers("2") == 2
    assert workers.resolve_workers("auto") >= 1
    with pytest.raises(ConfigError, match="number or 'auto'"):
        workers.resolve_workers("many")
    with pytest.raises(ConfigError, match=">= 1"):
        workers.resolve_workers(0)


def test_server_workers_key_is_validated() -> None:
    assert ServerConfig(workers="auto").workers == "auto"
    schema = PluginRegistry(enable=[]).config_schema()
    cfg = load_config(schema, None, env={"FLUXMQ_SERVER__WORKERS": "auto"})
    assert cfg.server.workers == "auto"
    cfg = load_config(schema, None, env={"FLUXMQ_SERVER__WORKERS": "4"})
    assert cfg.server.workers == 4
    with pytest.raises(ConfigError, match="workers"):
        load_config(schema, None, env={"FLUXMQ_SERVER__WORKERS": "0"})


def _cfg(**cluster: Any) -> Any:
    schema = PluginRegistry(enable=[]).config_schema()
    return load_config(schema, None, env={}, overrides={"cluster": cluster} if cluster else None)


def test_missing_etcd_driver_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "installed_drivers", lambda: {"fluxmq.cluster": {"none": None}})
    with pytest.raises(ConfigError, match="fluxmq-etcd") as exc:
        workers.check_available(_cfg())
    assert "'etcd' cluster driver" in str(exc.value)


def test_other_cluster_driver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        workers, "installed_drivers", lambda: {"fluxmq.cluster": {"etcd": None, "other": None}}
    )
    with pytest.raises(ConfigError, match="driver 'none' or 'etcd'"):
        workers.check_available(_cfg(driver="other"))


def test_missing_etcd_binary_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "installed_drivers", lambda: {"fluxmq.cluster": {"etcd": None}})
    monkeypatch.setattr(workers.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="etcd-server"):
        workers.check_available(_cfg())
    # An external etcd needs no binary here.
    workers.check_available(_cfg(driver="etcd", etcd_endpoints=["http://127.0.0.1:2379"]))


def test_run_with_bad_workers_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXMQ_")}
    for value in ("0", "lots"):
        out = subprocess.run(
            [sys.executable, "-m", "fluxmq_core.cli", "run", "--workers", value],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert "--workers" in out.stderr and "Traceback" not in out.stderr


def test_worker_environment(tmp_path: Path) -> None:
    """Each worker: its own node id, data dir, loopback cluster port; worker 0 alone
    embeds etcd; the ports worker 0 bound are pinned for every worker."""
    cfg = _cfg()
    cfg.server.data_dir = str(tmp_path)
    cfg.server.node_id = "h"
    sup = workers.Supervisor(cfg, 3, run_args=[])
    envs = [w.env for w in sup.workers]
    assert [e["FLUXMQ_CLUSTER__NODE_ID"] for e in envs] == ["h-w0", "h-w1", "h-w2"]
    assert [e["FLUXMQ_CLUSTER__ETCD_EMBEDDED"] for e in envs] == ["true", "false", "false"]
    assert all(e["FLUXMQ_CLUSTER__BIND"] == "127.0.0.1:0" for e in envs)
    assert all(e["FLUXMQ_SERVER__REUSE_PORT"] == "true" for e in envs)
    endpoint = envs[1]["FLUXMQ_CLUSTER__ETCD_ENDPOINTS"]
    assert endpoint == f"http://{envs[0]['FLUXMQ_CLUSTER__ETCD_CLIENT']}"
    sup._pin_ports({"http.bind": ["127.0.0.1", 4242], "cluster.bind": ["127.0.0.1", 9]})
    assert all(e["FLUXMQ_HTTP__BIND"] == "127.0.0.1:4242" for e in envs)
    assert all(
        "FLUXMQ_CLUSTER__BIND" in e and e["FLUXMQ_CLUSTER__BIND"].endswith(":0") for e in envs
    )


def test_worker_environment_on_a_configured_cluster(tmp_path: Path) -> None:
    cfg = _cfg(
        driver="etcd",
        node_id="n",
        bind="0.0.0.0:7000",
        advertise="10.0.0.1:7000",
        etcd_endpoints=["http://10.0.0.5:2379"],
    )
    cfg.server.data_dir = str(tmp_path)
    sup = workers.Supervisor(cfg, 2, run_args=[])
    envs = [w.env for w in sup.workers]
    assert [e["FLUXMQ_CLUSTER__BIND"] for e in envs] == ["0.0.0.0:7000", "0.0.0.0:7001"]
    assert [e["FLUXMQ_CLUSTER__ADVERTISE"] for e in envs] == ["10.0.0.1:7000", "10.0.0.1:7001"]
    assert [e["FLUXMQ_CLUSTER__ETCD_EMBEDDED"] for e in envs] == ["false", "false"]
    assert "FLUXMQ_CLUSTER__ETCD_ENDPOINTS" not in envs[0]  # the configured etcd as is


def test_worker_output_is_tagged() -> None:
    assert workers.tag_line(b"INFO hello\n", 1) == b"[w1] INFO hello\n"
    tagged = workers.tag_line(b'{"level": "info", "msg": "hi"}\n', 0, as_json=True)
    assert tagged.endswith(b"\n") and json.loads(tagged) == {
        "level": "info",
        "msg": "hi",
        "worker": 0,
    }
    # A line that is not JSON (a traceback) keeps the text prefix.
    assert workers.tag_line(b"Traceback\n", 2, as_json=True) == b"[w2] Traceback\n"


@dataclass
class _CoAPSection:
    """Stands in for the CoAP plugin's [coap] section (a UDP listener)."""

    bind: str = setting("0.0.0.0:5683", "UDP listener", listener=True)
    dtls_bind: str = setting("", "DTLS listener")


def test_coap_stays_on_worker_0(tmp_path: Path) -> None:
    schema = {**PluginRegistry(enable=[]).config_schema(), "coap": _CoAPSection}
    cfg = load_config(schema, None, env={})
    cfg.server.data_dir = str(tmp_path)
    sup = workers.Supervisor(cfg, 3, run_args=[])
    assert "FLUXMQ_COAP__BIND" not in sup.workers[0].env
    assert [w.env["FLUXMQ_COAP__BIND"] for w in sup.workers[1:]] == ["", ""]
    sup._pin_ports({"coap.bind": ["127.0.0.1", 5999], "http.bind": ["127.0.0.1", 4242]})
    assert sup.workers[0].env["FLUXMQ_COAP__BIND"] == "127.0.0.1:5999"
    assert [w.env["FLUXMQ_COAP__BIND"] for w in sup.workers[1:]] == ["", ""]
    assert all(w.env["FLUXMQ_HTTP__BIND"] == "127.0.0.1:4242" for w in sup.workers)
