"""A real etcd for tests: one member on free loopback ports in a temporary directory.

Used by this plugin's tests (``tests/conftest.py`` turns a missing binary into a
skip that says which Debian package to install) and usable by anyone testing
against the etcd driver::

    with EtcdServer() as etcd:
        env = {"FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint}

:meth:`EtcdServer.kill` and :meth:`EtcdServer.restart` (same ports, same data)
let a test show what a node does while etcd is gone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fluxmq_etcd.embedded import EtcdMember, find_etcd, free_port

__all__ = ["EtcdServer", "etcd_missing_reason"]


def etcd_missing_reason() -> str | None:
    """Why a real etcd cannot run here (for ``pytest.skip``), or None."""
    try:
        find_etcd()
    except Exception as exc:
        return f"no etcd binary: {exc}"
    return None


class EtcdServer:
    """One etcd member on ``127.0.0.1``, ephemeral ports, temporary data."""

    def __init__(self, name: str = "test") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fluxmq-etcd-")
        self.dir = Path(self._tmp.name)
        self.member = EtcdMember(
            name,
            self.dir / "data",
            f"127.0.0.1:{free_port()}",
            f"127.0.0.1:{free_port()}",
            log_path=self.dir / "etcd.log",
        )

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``[cluster] etcd_endpoints``."""
        return self.member.endpoint

    def start(self, timeout: float = 20.0) -> EtcdServer:
        self.member.start()
        self.member.wait_ready(timeout)
        return self

    def kill(self) -> None:
        self.member.kill()

    def stop(self) -> None:
        self.member.stop()

    def restart(self, timeout: float = 20.0) -> None:
        """Start again on the same ports and data (after :meth:`kill` or :meth:`stop`)."""
        self.member.stop()
        self.start(timeout)

    def close(self) -> None:
        self.member.stop()
        self._tmp.cleanup()

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
