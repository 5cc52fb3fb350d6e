"""Connecting to etcd: endpoint URLs from ``[cluster]`` turned into aetcd clients.

aetcd speaks the etcd v3 gRPC API on asyncio; it opens only plaintext channels, so
:class:`TLSClient` adds ``https://`` endpoints (CA, optional client certificate)
by opening a secure channel in its place. Username/password authentication is
aetcd's own.

What it does not do: pick the healthy endpoint among several; the driver rotates
through ``etcd_endpoints`` when a connection fails.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aetcd
import grpc
from aetcd import rpc, watcher

from fluxmq_core.config import ClusterConfig, ConfigError

__all__ = ["Endpoint", "TLSClient", "make_client", "parse_endpoints"]


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def parse_endpoints(raw: list[str]) -> list[Endpoint]:
    """``["http://10.0.0.5:2379", "https://h:2379", "h:2379"]`` -> endpoints; a
    malformed one is a :class:`ConfigError` naming it."""
    out = []
    for text in raw:
        url = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"cluster.etcd_endpoints: expected http://host:port or https://host:port, "
                f"got {text!r}",
                key="cluster.etcd_endpoints",
            )
        try:
            port = url.port or 2379
        except ValueError:
            raise ConfigError(
                f"cluster.etcd_endpoints: bad port in {text!r}", key="cluster.etcd_endpoints"
            ) from None
        out.append(Endpoint(url.hostname, port, url.scheme == "https"))
    return out


class TLSClient(aetcd.Client):
    """An aetcd client over a TLS channel (``https://`` endpoints)."""

    def __init__(self, *args: Any, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        # aetcd.Client.connect with a secure channel; kept in step with aetcd 1.0.
        if self._connected.is_set():
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(
                target, self._credentials, options=self._options.items()
            )
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                resp = await self.auth_stub.Authenticate(
                    rpc.AuthenticateRequest(name=self._username, password=self._password),
                    timeout=self._timeout,
                )
                self.metadata = (("token", resp.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cluster.{key}: cannot read {path!r}: {exc}", key=key) from None


def make_client(endpoint: Endpoint, cfg: ClusterConfig) -> aetcd.Client:
    """An (unconnected) aetcd client for ``endpoint`` with ``cfg``'s credentials."""
    user = cfg.etcd_username or None
    password = cfg.etcd_password or None
    timeout: Any = cfg.etcd_timeout  # aetcd passes it to grpc as a float deadline
    if not endpoint.tls:
        if cfg.etcd_ca_file or cfg.etcd_cert_file:
            raise ConfigError(
                f"cluster.etcd_ca_file/etcd_cert_file are set but endpoint {endpoint} is not "
                "https://",
                key="cluster.etcd_endpoints",
            )
        return aetcd.Client(endpoint.host, endpoint.port, user, password, timeout)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(cfg.etcd_ca_file, "etcd_ca_file") if cfg.etcd_ca_file else None,
        private_key=_read(cfg.etcd_key_file, "etcd_key_file") if cfg.etcd_key_file else None,
        certificate_chain=(
            _read(cfg.etcd_cert_file, "etcd_cert_file") if cfg.etcd_cert_file else None
        ),
    )
    return TLSClient(endpoint.host, endpoint.port, user, password, timeout, credentials=creds)
