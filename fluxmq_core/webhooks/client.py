"""A minimal async HTTP/1.1 client for webhook deliveries: h11 over asyncio streams.

One POST per connection (``Connection: close``), the whole exchange bounded by a
timeout, and the response body read up to a limit: an endpoint that answers with
gigabytes costs us ``response_limit`` bytes and no more. TLS for ``https://`` URLs
uses the system's default verification.

Deliberately not here: connection pooling, redirects, proxies, HTTP/2. A webhook
receiver is expected to answer 2xx quickly.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass

import h11

__all__ = ["HTTPResult", "WebhookClientError", "post"]

USER_AGENT = b"FluxMQ-Webhooks/1"


class WebhookClientError(Exception):
    """The request could not be completed (connect, protocol error, timeout)."""


@dataclass
class HTTPResult:
    status: int
    body: bytes
    truncated: bool


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


async def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, response_limit: int
) -> HTTPResult:
    """POST ``body`` (JSON) to ``url``; raises :class:`WebhookClientError`."""
    try:
        async with asyncio.timeout(timeout):
            return await _post(url, body, headers, response_limit)
    except TimeoutError:
        raise WebhookClientError(f"no answer within {timeout} s") from None
    except (OSError, h11.ProtocolError, ssl.SSLError) as exc:
        raise WebhookClientError(f"{type(exc).__name__}: {exc}") from None


async def _post(url: str, body: bytes, headers: dict[str, str], response_limit: int) -> HTTPResult:
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(
        host, port, ssl=_ssl_context() if secure else None, server_hostname=host if secure else None
    )
    try:
        conn = h11.Connection(h11.CLIENT)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        hdrs = [
            (b"host", host_header.encode()),
            (b"user-agent", USER_AGENT),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        hdrs += [
            (k.encode(), v.encode())
            for k, v in headers.items()
            if k.lower() not in ("host", "content-length", "connection")
        ]
        out = conn.send(h11.Request(method=b"POST", target=target.encode(), headers=hdrs))
        out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()
        status = 0
        got = bytearray()
        truncated = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                room = response_limit - len(got)
                if len(event.data) > room:
                    got += event.data[: max(0, room)]
                    truncated = True
                    break  # stop reading: the rest is discarded with the connection
                got += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return HTTPResult(status, bytes(got), truncated)
    finally:
        writer.close()
