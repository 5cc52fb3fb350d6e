"""WebSocket as a transport adapter: any binary ``asyncio.Protocol`` over WebSocket.

:class:`WebSocketProtocol` sits on the TCP/TLS transport. It answers the HTTP
upgrade with h11 (path check, origin allow-list, subprotocol negotiation, proper
4xx answers for bad upgrades), then speaks WebSocket frames with wsproto and hands
the inner protocol a :class:`WebSocketTransport`: an ``asyncio.Transport`` look-alike
whose ``write`` sends one binary message and whose ``close`` sends a close frame.
The inner protocol sees a plain byte stream (``data_received`` with the payload of
every binary frame received in one network chunk, joined), so MQTT, or any other
binary protocol, runs over it unchanged: packets may span frames and a frame may
hold several packets.

Close codes: 1000 when the inner protocol closes, 1001 (going away) when the broker
is shutting down, 1002 for a WebSocket protocol error (bad framing, unmasked client
frame), 1003 for a text frame, 1009 for a message over ``max_message_size``.
Backpressure is the raw transport's: ``pause_writing`` / ``resume_writing`` reach
the inner protocol unchanged and the write-buffer limits are the raw transport's.

What it does not do: permessage-deflate (no extension is negotiated), text frames,
or anything HTTP beyond the upgrade (that is ``fluxmq_core.http``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "WebSocketOptions",
    "WebSocketProtocol",
    "WebSocketTransport",
    "websocket_factory",
    "websocket_header",
]

log = logging.getLogger("fluxmq.transport.websocket")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009
_NO_STATUS = 1005


@dataclass
class WebSocketOptions:
    """How one WebSocket listener accepts connections.

    ``subprotocols`` are those we speak, in our order of preference; a client that
    offers some but none of ours is refused (400), a client that offers none is
    accepted without one. ``origins`` is an allow-list of ``Origin`` header values
    (empty = any; a request without ``Origin``, i.e. not from a browser, is always
    allowed). ``max_message_size`` 0 means no limit. ``shutting_down`` (the broker's
    event) turns a close into 1001 Going Away.
    """

    path: str = "/"
    subprotocols: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    max_message_size: int = 0
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    shutting_down: asyncio.Event | None = None
    server_header: bytes = b"FluxMQ"


def websocket_factory(
    inner_factory: Callable[[], asyncio.Protocol],
    *,
    path: str = "/",
    subprotocols: Iterable[str] = (),
    origins: Iterable[str] = (),
    max_message_size: int = 0,
    shutting_down: asyncio.Event | None = None,
    handshake_timeout: float = 10.0,
    close_timeout: float = 5.0,
) -> Callable[[], WebSocketProtocol]:
    """A protocol factory for a :class:`~fluxmq_core.transport.ListenerSpec` that
    runs ``inner_factory``'s protocol over WebSocket."""
    options = WebSocketOptions(
        path=path,
        subprotocols=tuple(subprotocols),
        origins=tuple(o.rstrip("/") for o in origins),
        max_message_size=max_message_size,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
        shutting_down=shutting_down,
    )
    return lambda: WebSocketProtocol(inner_factory, options)


def websocket_header(path: str) -> Callable[[bytes], bool | None]:
    """A port-sharing predicate (:attr:`ListenerSpec.header`) that claims a
    connection whose request line is ``GET <path>`` (then a space or ``?``).

    It decides on the same bytes as the HTTP listener's predicate (the request
    target complete), so when a WebSocket endpoint shares a port with the HTTP
    listener, which registers last, the upgrade reaches the WebSocket endpoint and
    everything else the HTTP listener.
    """
    prefix = b"GET " + path.encode()
    need = len(prefix) + 1

    def predicate(buf: bytes) -> bool | None:
        if len(buf) < need:
            return None if prefix.startswith(buf) else False
        return buf.startswith(prefix) and buf[len(prefix)] in b" ?"

    return predicate


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class WebSocketProtocol(asyncio.Protocol):
    """The outer protocol on the raw transport: upgrade, then frames."""

    # No __slots__: the core's listener counter wraps connection_made/lost.

    def __init__(
        self, inner_factory: Callable[[], asyncio.Protocol], options: WebSocketOptions
    ) -> None:
        self._inner_factory = inner_factory
        self.options = options
        self.raw: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.transport: WebSocketTransport | None = None
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=16 * 1024
        )
        self._ws: Connection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._message_size = 0
        self._closing = False
        self._lost = False
        self.subprotocol: str | None = None
        self.origin: str | None = None
        self.close_code: int | None = None  # the code we sent, for logs and tests

    # -- raw transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)  # a stream server's transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.options.handshake_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if self._ws is None:
            self._handshake(data)
        else:
            self._frames(data)

    def eof_received(self) -> bool | None:
        return False  # close; connection_lost tells the inner protocol

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inner = self.inner
        if inner is not None:
            self.inner = None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the upgrade -------------------------------------------------------------------------

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._ws is None and self.raw is not None:
            log.debug("websocket handshake timed out")
            self.raw.close()

    def _handshake(self, data: bytes) -> None:
        conn = self._h11
        assert conn is not None and self.raw is not None
        try:
            conn.receive_data(data)
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            self._reject(_Rejected(exc.error_status_hint, f"bad HTTP request: {exc}"))
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 gives a Request first
            self._reject(_Rejected(400, "bad request"))
            return
        try:
            subprotocol, key = self._check(event)
        except _Rejected as rej:
            self._reject(rej)
            return
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(key)),
            (b"server", self.options.server_header),
        ]
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        try:
            self.raw.write(conn.send(h11.InformationalResponse(status_code=101, headers=headers)))
        except h11.LocalProtocolError as exc:  # the request was not an upgrade after all
            self._reject(_Rejected(400, f"not a websocket upgrade: {exc}"))
            return
        trailing, _closed = conn.trailing_data
        self._h11 = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.subprotocol = subprotocol
        self._ws = Connection(ConnectionType.SERVER)
        self.transport = WebSocketTransport(self)
        inner = self.inner = self._inner_factory()
        inner.connection_made(self.transport)
        if trailing and not self._closing:
            self._frames(bytes(trailing))

    def _check(self, req: h11.Request) -> tuple[str | None, bytes]:
        """Validate the upgrade request; returns (subprotocol, key) or raises."""
        opts = self.options
        target = req.target.decode("latin-1")
        path = target.split("?", 1)[0]
        if path != opts.path:
            raise _Rejected(404, f"no websocket endpoint at {path}")
        if req.method != b"GET":
            raise _Rejected(405, "websocket upgrade needs GET", [(b"allow", b"GET")])
        headers: dict[bytes, list[bytes]] = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), []).append(value)

        def tokens(name: bytes) -> list[str]:
            return [
                t.strip().lower()
                for v in headers.get(name, [])
                for t in v.decode("latin-1").split(",")
                if t.strip()
            ]

        if "upgrade" not in tokens(b"connection") or "websocket" not in tokens(b"upgrade"):
            raise _Rejected(400, "missing 'Connection: Upgrade' / 'Upgrade: websocket' headers")
        version = tokens(b"sec-websocket-version")
        if version != ["13"]:
            raise _Rejected(
                426, "unsupported websocket version", [(b"sec-websocket-version", b"13")]
            )
        key_values = headers.get(b"sec-websocket-key", [])
        key = key_values[0].strip() if len(key_values) == 1 else b""
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except (binascii.Error, ValueError):
            raise _Rejected(400, "missing or invalid Sec-WebSocket-Key") from None
        origin_values = headers.get(b"origin")
        if origin_values:
            self.origin = origin_values[0].decode("latin-1").strip()
            if (
                opts.origins
                and self.origin.rstrip("/") not in opts.origins
                and "*" not in opts.origins
            ):
                raise _Rejected(403, f"origin {self.origin!r} not allowed")
        offered = [
            t.strip()
            for v in headers.get(b"sec-websocket-protocol", [])
            for t in v.decode("latin-1").split(",")
            if t.strip()
        ]
        subprotocol = None
        if offered:
            for candidate in offered:
                if candidate in opts.subprotocols:
                    subprotocol = candidate
                    break
            else:
                supported = ", ".join(opts.subprotocols) or "none"
                raise _Rejected(400, f"no supported subprotocol offered (supported: {supported})")
        return subprotocol, key

    def _reject(self, rej: _Rejected) -> None:
        conn = self._h11
        raw = self.raw
        assert raw is not None
        log.debug("websocket upgrade refused: %s %s", rej.status, rej.reason)
        body = (rej.reason + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"server", self.options.server_header),
            *rej.headers,
        ]
        try:
            assert conn is not None
            out = conn.send(h11.Response(status_code=rej.status, headers=headers))
            out += conn.send(h11.Data(data=body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            # h11 will not answer in this state (e.g. a broken request line): write by hand.
            out = f"HTTP/1.1 {rej.status} Error\r\n".encode()
            out += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body
        self._closing = True
        raw.write(out)
        raw.close()

    # -- frames ------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        if ws.state is ConnectionState.CLOSED:
            return
        try:
            ws.receive_data(data)
        except LocalProtocolError:  # pragma: no cover - data after the close handshake
            return
        chunks: list[bytes] = []
        limit = self.options.max_message_size
        for event in ws.events():
            if isinstance(event, BytesMessage):
                if self._closing:
                    continue  # closing: only the peer's close frame matters now
                if limit:
                    self._message_size += len(event.data)
                    if self._message_size > limit:
                        self._deliver(chunks)
                        self._send_close(CLOSE_TOO_BIG, "message too big")
                        return
                    if event.message_finished:
                        self._message_size = 0
                if event.data:
                    chunks.append(bytes(event.data))
            elif isinstance(event, TextMessage):
                if self._closing:
                    continue
                self._deliver(chunks)
                self._send_close(CLOSE_UNSUPPORTED_DATA, "binary frames only")
                return
            elif isinstance(event, Ping):
                self._write_raw(ws.send(Pong(payload=event.payload)))
            elif isinstance(event, Pong):
                pass
            elif isinstance(event, CloseConnection):
                self._deliver(chunks)
                chunks = []
                self._on_close(event)
                return
        self._deliver(chunks)

    def _deliver(self, chunks: list[bytes]) -> None:
        inner = self.inner
        if not chunks or inner is None:
            return
        inner.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _on_close(self, event: CloseConnection) -> None:
        ws = self._ws
        assert ws is not None and self.raw is not None
        state = ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The client closed: answer with its code (none when it sent none).
            code = None if event.code == _NO_STATUS else event.code
            try:
                self._write_raw(ws.send(CloseConnection(code=code or _NO_STATUS)))
            except LocalProtocolError:  # pragma: no cover
                pass
            self._closing = True
            self.raw.close()
        elif state is ConnectionState.OPEN:
            # A parse failure reported by wsproto (our side): close with its code.
            log.debug("websocket protocol error: %s (%s)", event.reason, event.code)
            self._send_close(int(event.code), (event.reason or "")[:120])
        else:  # CLOSED: the answer to our own close frame
            self._closing = True
            self.raw.close()

    def _write_raw(self, data: bytes) -> None:
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    def _send_close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once) and close the TCP connection when the peer
        answers, or after ``close_timeout`` at the latest."""
        ws = self._ws
        raw = self.raw
        if self._closing or raw is None:
            return
        self._closing = True
        self.close_code = code
        if ws is None or ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            raw.close()
            return
        try:
            self._write_raw(ws.send(CloseConnection(code=code, reason=reason or None)))
        except LocalProtocolError:  # pragma: no cover
            raw.close()
            return
        if ws.state is ConnectionState.CLOSED or self._lost:
            raw.close()
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.options.close_timeout, raw.close)

    # -- for WebSocketTransport --------------------------------------------------------------

    def _send_binary(self, data: bytes) -> None:
        ws = self._ws
        if self._closing or ws is None or ws.state is not ConnectionState.OPEN:
            return
        self._write_raw(ws.send(BytesMessage(data=data)))

    def _close_from_inner(self) -> None:
        ev = self.options.shutting_down
        self._send_close(CLOSE_GOING_AWAY if ev is not None and ev.is_set() else CLOSE_NORMAL)


class WebSocketTransport(asyncio.Transport):
    """What the inner protocol writes to: one binary message per ``write``.

    Everything about the socket (peer name, TLS, write-buffer limits, pausing) is the
    raw transport's; ``get_extra_info`` adds ``websocket_subprotocol``,
    ``websocket_path`` and ``websocket_origin``.
    """

    def __init__(self, outer: WebSocketProtocol) -> None:
        super().__init__()
        self._outer = outer

    def _raw(self) -> asyncio.Transport:
        raw = self._outer.raw
        assert raw is not None
        return raw

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        outer = self._outer
        if name == "websocket_subprotocol":
            return outer.subprotocol
        if name == "websocket_path":
            return outer.options.path
        if name == "websocket_origin":
            return outer.origin
        return self._raw().get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._outer._send_binary(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a WebSocket transport cannot half-close")

    def is_closing(self) -> bool:
        return self._outer._closing or self._raw().is_closing()

    def close(self) -> None:
        self._outer._close_from_inner()

    def abort(self) -> None:
        self._outer._closing = True
        self._raw().abort()

    def get_write_buffer_size(self) -> int:
        return self._raw().get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw().get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw().set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._raw().pause_reading()

    def resume_reading(self) -> None:
        self._raw().resume_reading()

    def is_reading(self) -> bool:
        return self._raw().is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # asyncio's signature takes any BaseProtocol; what runs over a WebSocket is
        # always a stream Protocol (a byte-stream broker protocol).
        self._outer.inner = cast("asyncio.Protocol", protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._outer.inner  # type: ignore[return-value]  # None before the upgrade
