"""Byte streams under the MQTT client: TCP, TLS, WebSocket (ws/wss) and broker URLs.

The MQTT state machine reads and writes whole chunks through :class:`Stream`; how the
bytes travel (plain, TLS, inside WebSocket binary frames) stays here. WebSocket framing
is wsproto's sans-IO state machine, the one the broker uses.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from .errors import ConnectError, InvalidURL

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 8083, "wss": 8084}
SCHEMES = {"mqtt": "tcp", "tcp": "tcp", "mqtts": "tls", "ssl": "tls", "tls": "tls"}
SCHEMES.update({"ws": "ws", "wss": "wss"})


@dataclass
class BrokerURL:
    """What a broker URL says: ``mqtt[s]://user:pass@host:port/topic`` or
    ``ws[s]://host:port/path`` (the path is the WebSocket path; a topic then goes
    after ``#``: ``ws://host:8083/mqtt#sensors/1``)."""

    transport: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    topic: str | None = None
    ws_path: str = "/mqtt"


def parse_url(url: str) -> BrokerURL:
    """Parse a broker URL; raises :class:`InvalidURL` naming what is wrong."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"bad broker URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidURL(
            f"bad broker URL {url!r}: scheme must be mqtt, mqtts, ws or wss, not {scheme!r}"
        )
    if not parts.hostname:
        raise InvalidURL(f"bad broker URL {url!r}: no host")
    transport = SCHEMES[scheme]
    default = DEFAULT_PORTS[{"tcp": "mqtt", "tls": "mqtts"}.get(transport, transport)]
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if transport in ("ws", "wss"):
        return BrokerURL(
            transport,
            parts.hostname,
            port or default,
            user,
            password,
            urllib.parse.unquote(parts.fragment) or None,
            parts.path or "/mqtt",
        )
    topic = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else None
    return BrokerURL(transport, parts.hostname, port or default, user, password, topic)


class Stream:
    """A connected byte stream: ``read()`` (b"" at EOF), ``write()``, ``close()``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(65536)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2)
        except (OSError, TimeoutError, ssl.SSLError):
            pass


class WebSocketStream(Stream):
    """MQTT inside WebSocket binary messages (subprotocol ``mqtt``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._closed = False

    async def handshake(self, host: str, path: str) -> None:
        self._writer.write(self._ws.send(Request(host=host, target=path, subprotocols=["mqtt"])))
        await self._writer.drain()
        while True:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectError("WebSocket upgrade failed: the server closed the connection")
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise ConnectError(
                        f"WebSocket upgrade refused: HTTP {event.status_code} (path {path!r})"
                    )

    async def read(self) -> bytes:
        while True:
            if self._closed:
                return b""
            data = await self._reader.read(65536)
            if not data:
                return b""
            self._ws.receive_data(data)
            out = bytearray()
            for event in self._ws.events():
                if isinstance(event, BytesMessage | TextMessage):
                    chunk = event.data
                    out += chunk if isinstance(chunk, bytes | bytearray) else chunk.encode()
                elif isinstance(event, Ping):
                    self._writer.write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self._closed = True
                    try:
                        self._writer.write(self._ws.send(event.response()))
                    except Exception:  # the state machine may already be closed
                        pass
            if out:
                return bytes(out)

    async def write(self, data: bytes) -> None:
        self._writer.write(self._ws.send(BytesMessage(data=data)))
        await self._writer.drain()


async def open_stream(
    transport: str,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    ws_path: str = "/mqtt",
    timeout: float = 10.0,
) -> Stream:
    """Connect; raises :class:`ConnectError` naming the failure (refused, TLS...)."""
    tls = transport in ("tls", "wss")
    if tls and ssl_context is None:
        ssl_context = ssl.create_default_context()
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl_context if tls else None, server_hostname=host if tls else None
            ),
            timeout,
        )
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS failure with {where}: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise ConnectError(f"connection refused by {where}") from None
    except TimeoutError:
        raise ConnectError(f"timed out connecting to {where}") from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    if transport in ("ws", "wss"):
        stream = WebSocketStream(reader, writer)
        try:
            await asyncio.wait_for(stream.handshake(host, ws_path), timeout)
        except TimeoutError:
            await stream.close()
            raise ConnectError(f"WebSocket upgrade to {where} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            await stream.close()
            raise ConnectError(f"WebSocket upgrade to {where} failed: {exc}") from None
        return stream
    return Stream(reader, writer)


def make_ssl_context(
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """A client TLS context; ``insecure`` skips certificate and host name checks."""
    try:
        ctx = ssl.create_default_context(cafile=cafile)
        if certfile:
            ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"TLS setup failed: {exc}") from None
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
