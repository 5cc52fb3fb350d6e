"""A small HTTP/1.1 server on h11: requests in, routed to async handlers.

:class:`HTTPProtocol` is the ``asyncio.Protocol`` of one connection. It feeds bytes
to h11, enforces the body limit (413, also before reading a body whose
Content-Length is already too big), answers ``Expect: 100-continue``, runs one
handler at a time (pipelined requests wait in h11's buffer), keeps connections alive
between requests and closes idle or slow ones after ``request_timeout``. A handler
returns a :class:`Response`, or a :class:`StreamResponse` whose body is written
piece by piece (Server-Sent Events) with backpressure from the transport.

:class:`Router` maps ``(method, path pattern)`` to handlers; a pattern segment
``{name}`` captures one URL-decoded path segment into ``request.params``.

What it does not do: HTTP/2, TLS termination of its own (a ListenerSpec may carry
an SSL context), compression, or any route: those live in ``routes.py`` and
``admin.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import h11

from fluxmq_core.transport import peer_name

__all__ = [
    "HTTPError",
    "HTTPProtocol",
    "Request",
    "Response",
    "Route",
    "Router",
    "StreamResponse",
    "StreamWriter",
    "http_header",
    "json_response",
]

log = logging.getLogger("fluxmq.http")

SERVER_HEADER = b"FluxMQ"
_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def http_header(buf: bytes) -> bool | None:
    """Port-sharing predicate (:attr:`ListenerSpec.header`): an HTTP/1.x request.

    Decides only once the request target is complete (or 60 bytes arrived), the
    same moment a WebSocket endpoint's predicate decides, so an upgrade on a shared
    port is claimed by the WebSocket endpoint registered before this listener.
    """
    for method in _METHODS:
        if buf.startswith(method):
            rest = buf[len(method) :]
            return True if (b" " in rest or len(buf) >= 60) else None
        if method.startswith(buf):
            return None
    return False


@dataclass
class Request:
    """One HTTP request with its whole body (bounded by ``[http] max_body``)."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    remote: str
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def int_arg(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self.arg(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPError(400, f"query parameter {name!r} must be an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and <= {maximum}" if maximum is not None else ""
            raise HTTPError(400, f"query parameter {name!r} must be >= {minimum}{bound}")
        return value

    @property
    def remote_host(self) -> str:
        host = self.remote.rsplit(":", 1)[0] if ":" in self.remote else self.remote
        return host.strip("[]")


@dataclass
class Response:
    """A whole response. ``headers`` are extra (name, value) pairs."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class StreamWriter:
    """What a :class:`StreamResponse` body writes to."""

    def __init__(self, proto: HTTPProtocol) -> None:
        self._proto = proto

    @property
    def closed(self) -> asyncio.Event:
        """Set when the client went away or the server is stopping."""
        return self._proto.gone

    def write(self, data: bytes) -> None:
        self._proto.send_data(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        await self._proto.writable.wait()


@dataclass
class StreamResponse:
    """A response whose body ``stream(writer)`` writes until it returns or the
    client goes away (chunked under HTTP/1.1, close-delimited under 1.0)."""

    stream: Callable[[StreamWriter], Awaitable[None]]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: list[tuple[str, str]] = field(default_factory=list)


class HTTPError(Exception):
    """Raised by handlers: becomes a JSON ``{"error": reason}`` response."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def json_response(
    obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(
        status,
        json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n",
        headers=headers or [],
    )


def error_response(
    status: int, reason: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    return json_response({"error": reason}, status, headers)


Handler = Callable[[Request], Awaitable["Response | StreamResponse"]]


@dataclass
class Route:
    """A route: method, pattern, handler and the words the OpenAPI document uses."""

    method: str
    pattern: str
    handler: Handler
    summary: str = ""
    tag: str = ""
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.parts = tuple(self.pattern.strip("/").split("/")) if self.pattern != "/" else ()

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for part, seg in zip(self.parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not seg:
                    return None
                params[part[1:-1]] = urllib.parse.unquote(seg)
            elif part != seg:
                return None
        return params


class Router:
    """Routes by method and path; 404 for an unknown path, 405 for a known path
    with another method."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self, method: str, pattern: str, handler: Handler, summary: str = "", tag: str = ""
    ) -> None:
        self.routes.append(Route(method.upper(), pattern, handler, summary, tag))

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        segments = tuple(path.strip("/").split("/")) if path.strip("/") else ()
        allowed = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise HTTPError(
                405,
                f"method {method} not allowed on {path}",
                [("Allow", ", ".join(sorted(set(allowed))))],
            )
        raise HTTPError(404, f"no route for {path}")


class HTTPProtocol(asyncio.Protocol):
    """One HTTP connection (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        *,
        max_body: int,
        request_timeout: float,
        connections: set[HTTPProtocol] | None = None,
    ) -> None:
        self.router = router
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.connections = connections
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        self.transport: asyncio.Transport | None = None
        self.remote = "?"
        self.gone = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._streaming = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's transport
        self.remote = peer_name(transport)
        if self.connections is not None:
            self.connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except h11.RemoteProtocolError as exc:  # pragma: no cover - h11 raises on next_event
            self._fail(exc.error_status_hint, str(exc))
            return
        self._process()

    def eof_received(self) -> bool | None:
        try:
            self.conn.receive_data(b"")
        except h11.RemoteProtocolError:
            pass
        if self._streaming:
            self.gone.set()  # an event-stream reader hung up: stop the stream
            return None
        if self._task is None:
            self._process()
        return True if self._task is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone.set()
        self.writable.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.connections is not None:
            self.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- request processing ---------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self.request_timeout, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        if self._task is None and self.transport is not None:
            if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                self.transport.close()  # idle keep-alive connection: just close
            else:
                self._fail(408, "request not received in time")

    def _process(self) -> None:
        """Take events until a request is complete (then run it) or h11 needs data."""
        while self._task is None and self.transport is not None:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, f"bad request: {exc}")
                return
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue and self._request is not None:
                    self._send(h11.InformationalResponse(status_code=100, headers=[]))
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body = bytearray()
                length = _content_length(event)
                if length is not None and length > self.max_body:
                    self._fail(413, f"request body over {self.max_body} bytes")
                    return
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_body:
                    self._fail(413, f"request body over {self.max_body} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                assert self._request is not None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                if self.transport is not None:
                    self.transport.pause_reading()
                self._task = self._loop.create_task(self._run(self._request, bytes(self._body)))
                self._request = None
                self._body = bytearray()
                return
            elif isinstance(event, h11.ConnectionClosed):
                if self.transport is not None:
                    self.transport.close()
                return

    async def _run(self, req: h11.Request, body: bytes) -> None:
        try:
            request = self._make_request(req, body)
            try:
                route, params = self.router.resolve(request.method, request.path)
                request.params = params
                response = await route.handler(request)
            except HTTPError as exc:
                response = error_response(exc.status, exc.reason, exc.headers)
            except Exception:
                log.exception(
                    "HTTP %s %s failed", req.method.decode(), req.target.decode("latin-1")
                )
                response = error_response(500, "internal error")
            if isinstance(response, StreamResponse):
                await self._stream(response)
            else:
                self._respond(response)
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug in the framing code
            log.exception("HTTP connection failed")
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self._task = None
        self._next_cycle()

    def _make_request(self, req: h11.Request, body: bytes) -> Request:
        target = req.target.decode("latin-1")
        split = urllib.parse.urlsplit(target)
        headers: dict[str, str] = {}
        for name, value in req.headers:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return Request(
            method=req.method.decode("ascii", "replace").upper(),
            target=target,
            path=split.path,  # still %-encoded: Route.match decodes each segment
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
            remote=self.remote,
        )

    def _respond(self, response: Response) -> None:
        reason = _REASONS.get(response.status, "").encode()
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            (b"server", SERVER_HEADER),
            *((k.encode(), v.encode()) for k, v in response.headers),
        ]
        self._send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if response.body:
            self._send(h11.Data(data=response.body))
        self._send(h11.EndOfMessage())

    async def _stream(self, response: StreamResponse) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"server", SERVER_HEADER),
            *((k.encode(), v.encode()) for k, v in response.headers),
        ]
        self._send(h11.Response(status_code=response.status, headers=headers))
        if self.transport is not None:
            self.transport.resume_reading()  # so that a client's close is noticed
        self._streaming = True
        try:
            await response.stream(StreamWriter(self))
        finally:
            if self.transport is not None and not self.gone.is_set():
                self._send(h11.EndOfMessage())

    def send_data(self, data: bytes) -> None:
        if data and not self.gone.is_set():
            self._send(h11.Data(data=data))

    def _send(self, event: Any) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            out = self.conn.send(event)
        except h11.LocalProtocolError:
            log.debug("cannot send %r in state %s", type(event).__name__, self.conn.our_state)
            transport.close()
            return
        if out:
            transport.write(out)

    def _next_cycle(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if (
            self.conn.our_state is h11.MUST_CLOSE
            or self.conn.their_state is h11.MUST_CLOSE
            or self.conn.our_state is not h11.DONE
            or self.conn.their_state is not h11.DONE
        ):
            transport.close()
            return
        try:
            self.conn.start_next_cycle()
        except h11.LocalProtocolError:  # pragma: no cover
            transport.close()
            return
        transport.resume_reading()
        self._arm_timer()
        self._process()

    def _fail(self, status: int, reason: str) -> None:
        """Answer an error (when h11 still lets us) and close the connection."""
        transport = self.transport
        if transport is None:
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = json.dumps({"error": reason}).encode() + b"\n"
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"server", SERVER_HEADER),
            ]
            try:
                out = self.conn.send(
                    h11.Response(
                        status_code=status,
                        headers=headers,
                        reason=_REASONS.get(status, "").encode(),
                    )
                )
                out += self.conn.send(h11.Data(data=body)) or b""
                out += self.conn.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:
                # h11 refuses to answer a request it could not parse: write by hand.
                out = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode()
                    + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
                    + b"\r\n"
                    + body
                )
            transport.write(out)
        transport.close()


def _content_length(req: h11.Request) -> int | None:
    for name, value in req.headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # pragma: no cover - h11 validated it
                return None
    return None
