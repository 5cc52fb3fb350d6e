"""A real etcd for tests: one member (or a few) on free loopback ports in a
temporary directory.

Used by this plugin's tests (``tests/conftest.py`` turns a missing binary into a
skip that says which Debian package to install) and usable by anyone testing
against the etcd driver::

    with EtcdServer() as etcd:
        env = {"FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint}

:meth:`EtcdServer.kill` and :meth:`EtcdServer.restart` (same ports, same data)
let a test show what a node does while etcd is gone; ``EtcdServer(members=3)``
runs a three-member etcd cluster whose members can be killed one by one.

:func:`node` starts a broker in a thread as a node of that etcd's cluster,
:class:`Sink` is a subscriber whose deliveries a test thread takes from a queue,
and :func:`until` is the bounded poll to wait for what the cluster learns.
"""

from __future__ import annotations

import queue
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery
from fluxmq_core.testing.broker import BrokerThread
from fluxmq_etcd.embedded import EtcdMember, find_etcd, free_port

__all__ = ["WAIT", "EtcdServer", "Sink", "etcd_missing_reason", "node", "until"]

#: Seconds a test waits for the cluster to learn something.
WAIT = 15.0


def etcd_missing_reason() -> str | None:
    """Why a real etcd cannot run here (for ``pytest.skip``), or None."""
    try:
        find_etcd()
    except Exception as exc:
        return f"no etcd binary: {exc}"
    return None


class EtcdServer:
    """``members`` etcd members on ``127.0.0.1``, ephemeral ports, temporary data."""

    def __init__(self, name: str = "test", members: int = 1) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fluxmq-etcd-")
        self.dir = Path(self._tmp.name)
        names = [name] if members == 1 else [f"{name}{i}" for i in range(members)]
        peers = {n: f"127.0.0.1:{free_port()}" for n in names}
        initial = ",".join(f"{n}=http://{p}" for n, p in peers.items())
        self.members = [
            EtcdMember(
                n,
                self.dir / n,
                f"127.0.0.1:{free_port()}",
                peers[n],
                initial,
                log_path=self.dir / f"{n}.log",
            )
            for n in names
        ]
        self.member = self.members[0]

    @property
    def endpoint(self) -> str:
        """The first member's ``http://127.0.0.1:<port>``."""
        return self.member.endpoint

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL (for ``[cluster] etcd_endpoints``)."""
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 20.0) -> EtcdServer:
        for m in self.members:  # together: a new cluster answers once a quorum runs
            m.start()
        for m in self.members:
            m.wait_ready(timeout)
        return self

    def leader(self) -> EtcdMember:
        """The member that leads the cluster now (asked over the v3 JSON gateway)."""
        import json

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for m in self.members:
                if not m.alive():
                    continue
                try:
                    req = urllib.request.Request(
                        m.endpoint + "/v3/maintenance/status", data=b"{}", method="POST"
                    )
                    with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                        status = json.loads(resp.read())
                except OSError:
                    continue
                if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                    return m
            time.sleep(0.1)
        raise TimeoutError("no etcd member says it leads")

    def kill(self) -> None:
        for m in self.members:
            m.kill()

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def restart(self, timeout: float = 20.0) -> None:
        """Start again on the same ports and data (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def node(etcd: EtcdServer, name: str, **cluster: Any) -> BrokerThread:
    """A started broker in a thread (this plugin only) as node ``name`` of the
    cluster on ``etcd`` (3 s lease, 2 s etcd timeout); ``cluster`` adds or
    overrides ``[cluster]`` keys. The caller closes it."""
    config = {
        "driver": "etcd",
        "node_id": name,
        "etcd_endpoints": [etcd.endpoint],
        "lease_ttl": 3.0,
        "etcd_timeout": 2.0,
        **cluster,
    }
    return BrokerThread(plugins=["etcd"], config={"cluster": config}).start()


class Sink:
    """A router subscriber or queue consumer that hands its deliveries to the test
    thread through ``got``."""

    protocol = "test"

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.got: queue.Queue[tuple[Message, Delivery]] = queue.Queue()

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.got.put((message, delivery))


def until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail saying
    ``what`` was awaited once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
