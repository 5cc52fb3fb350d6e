"""Helpers for tests of the queue API (and of plugins using it): the gRPC target of
a test broker, and a plain ``http.client`` Connect caller, which is what ``curl``
does (no Connect library in between)."""

from __future__ import annotations

import http.client
import json
import struct
from typing import Any

TOKEN = "s3cret"
SERVICE_PATH = "/fluxmq.queue.v1.QueueService"


def grpc_target(broker: Any) -> str:
    host, port = broker.address("api.grpc")
    return f"{host}:{port}"


def connect_call(
    broker: Any,
    method: str,
    body: dict[str, Any] | bytes,
    *,
    token: str | None = TOKEN,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, str, bytes]:
    """POST one Connect request; ``(status, content type, body)``."""
    host, port = broker.address("http.bind")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        h = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request("POST", f"{SERVICE_PATH}/{method}", data, h)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def connect_stream_open(
    broker: Any, method: str, body: bytes, *, token: str | None = TOKEN, timeout: float = 10.0
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Start a Connect streaming call with ``application/connect+json``; the caller
    reads envelopes with :func:`read_envelope` and closes the connection."""
    host, port = broker.address("http.bind")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Content-Type": "application/connect+json"}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    conn.request("POST", f"{SERVICE_PATH}/{method}", body, h)
    return conn, conn.getresponse()


def read_envelope(resp: http.client.HTTPResponse) -> tuple[int, Any]:
    """``(flags, decoded JSON)`` of the next envelope of a streaming answer."""
    head = resp.read(5)
    if len(head) < 5:
        raise EOFError("the stream ended without an end-of-stream envelope")
    flags, size = struct.unpack(">BI", head)
    return flags, json.loads(resp.read(size))
