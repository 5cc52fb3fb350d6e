"""The Connect face of the queue API: ``POST /fluxmq.queue.v1.QueueService/<Method>``
on the broker's HTTP listener (the core HTTP service's router, as the otel plugin
adds ``/metrics``).

The Connect protocol (connectrpc.com/docs/protocol) over HTTP/1.1:

- unary RPCs: ``Content-Type: application/json`` (protobuf JSON mapping; what
  ``curl`` sends) or ``application/proto`` (binary); the answer has the same type;
  an error is a non-200 status with ``{"code": "not_found", "message": "..."}``.
  ``Content-Encoding: gzip`` request bodies and ``Connect-Timeout-Ms`` are honoured.
- streaming RPCs: ``application/connect+json`` or ``application/connect+proto``;
  the body is enveloped messages (1 flag byte, 4-byte big-endian length, message);
  the answer is status 200 and a stream of envelopes ending with an end-of-stream
  envelope (flag 0x02) holding ``{}`` or ``{"error": {...}}``. Server streaming
  (``Tail``, ``ConsumeQueue``) streams as messages come; the client-streaming
  ``AppendQueue`` takes every envelope of the request body (HTTP/1.1 has no
  full-duplex), which is what Connect clients send over HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from fluxmq_core.http.server import Request, Response, StreamResponse, StreamWriter
from fluxmq_queue_api import SERVICE
from fluxmq_queue_api.errors import HTTP_STATUS, ApiError, error_detail, internal
from fluxmq_queue_api.service import METHODS, Method, QueueAPI

__all__ = ["ConnectFace", "envelope", "read_envelopes"]

END_STREAM = 0x02
COMPRESSED = 0x01
_HEADER = struct.Struct(">BI")


def envelope(flags: int, data: bytes) -> bytes:
    return _HEADER.pack(flags, len(data)) + data


def read_envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """``(flags, data)`` of every envelope of ``body``; INVALID_ARGUMENT when cut short."""
    out = []
    i = 0
    while i < len(body):
        if len(body) - i < _HEADER.size:
            raise ApiError("invalid_argument", "truncated envelope header")
        flags, size = _HEADER.unpack_from(body, i)
        i += _HEADER.size
        if len(body) - i < size:
            raise ApiError("invalid_argument", "truncated envelope")
        out.append((flags, body[i : i + size]))
        i += size
    return out


def error_json(exc: ApiError) -> dict[str, Any]:
    """Connect's error body, with the ``QueueErrorDetail`` as a detail (unpadded
    base64 of the binary message, as connect-go writes it)."""
    detail = error_detail(exc)
    value = base64.b64encode(detail.SerializeToString()).decode().rstrip("=")
    return {
        "code": exc.code,
        "message": exc.message,
        "details": [{"type": detail.DESCRIPTOR.full_name, "value": value}],
    }


class ConnectFace:
    """Route handler of every queue API procedure on the HTTP listener."""

    def __init__(self, api: QueueAPI) -> None:
        self.api = api

    def install(self, router: Any) -> None:
        """One route per procedure (fixed paths: the OpenAPI document of the HTTP
        listener stays valid, and an unknown procedure is the router's 404)."""
        for name in METHODS:
            router.add(
                "POST",
                f"/{SERVICE}/{name}",
                functools.partial(self.handle, name=name),
                f"Queue API {name} over the Connect protocol (see docs/queue-api.md)",
                "queue-api",
            )

    async def handle(self, req: Request, name: str) -> Response | StreamResponse:
        m = METHODS[name]
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if m.kind == "unary":
            if ctype not in ("application/json", "application/proto"):
                return _unary_error(
                    ApiError(
                        "invalid_argument",
                        f"{m.name} is unary: send Content-Type application/json or application/proto",
                    ),
                    status=415,
                )
            return await self._unary(req, m, ctype == "application/json")
        if ctype not in ("application/connect+json", "application/connect+proto"):
            return _unary_error(
                ApiError(
                    "invalid_argument",
                    f"{m.name} is a streaming method: send Content-Type "
                    "application/connect+json or application/connect+proto",
                ),
                status=415,
            )
        return self._stream(req, m, ctype == "application/connect+json")

    # --- unary ------------------------------------------------------------------------------

    async def _unary(self, req: Request, m: Method, use_json: bool) -> Response:
        try:
            body = _decompress(req.body, req.headers.get("content-encoding", ""))
            request = _decode(m.request, body, use_json)
            caller = await self.api.login(
                req.headers.get("authorization"),
                req.remote,
                req.headers.get("x-fluxmq-client-id", ""),
            )
            call = self.api.handlers[m.name](request, caller)
            timeout = _timeout(req)
            result = await (asyncio.wait_for(call, timeout) if timeout is not None else call)
        except ApiError as exc:
            return _unary_error(exc)
        except TimeoutError:
            return _unary_error(
                ApiError("deadline_exceeded", f"{m.name}: Connect-Timeout-Ms passed")
            )
        except Exception as exc:
            return _unary_error(internal(m.name, exc))
        if use_json:
            data = json_format.MessageToJson(result, indent=None).encode()
            return Response(200, data, "application/json")
        return Response(200, result.SerializeToString(), "application/proto")

    # --- streaming --------------------------------------------------------------------------

    def _stream(self, req: Request, m: Method, use_json: bool) -> StreamResponse:
        ctype = "application/connect+json" if use_json else "application/connect+proto"
        encode = (
            (lambda msg: json_format.MessageToJson(msg, indent=None).encode())
            if use_json
            else (lambda msg: msg.SerializeToString())
        )

        async def run(writer: StreamWriter) -> None:
            end: dict[str, Any] = {}
            try:
                requests = []
                for flags, data in read_envelopes(req.body):
                    if flags & COMPRESSED:
                        data = _decompress(data, req.headers.get("connect-content-encoding", ""))
                    requests.append(_decode(m.request, data, use_json))
                caller = await self.api.login(
                    req.headers.get("authorization"),
                    req.remote,
                    req.headers.get("x-fluxmq-client-id", ""),
                )
                fn = self.api.handlers[m.name]
                if m.kind == "client_stream":
                    result = await fn(_aiter(requests), caller)
                    writer.write(envelope(0, encode(result)))
                else:
                    if len(requests) != 1:
                        raise ApiError(
                            "invalid_argument", f"{m.name} takes exactly one request message"
                        )
                    await self._pump(fn(requests[0], caller), writer, encode)
            except ApiError as exc:
                end = {"error": error_json(exc)}
            except Exception as exc:
                end = {"error": error_json(internal(m.name, exc))}
            if not writer.closed.is_set():
                writer.write(envelope(END_STREAM, json.dumps(end).encode()))

        return StreamResponse(run, 200, ctype)

    async def _pump(self, items: AsyncIterator[Any], writer: StreamWriter, encode: Any) -> None:
        """Send what a server-streaming handler yields until it ends or the client
        goes away (then the handler is closed, which removes its consumer)."""
        gone = asyncio.ensure_future(writer.closed.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(items))
                done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    try:
                        await nxt
                    except (asyncio.CancelledError, StopAsyncIteration, ApiError):
                        pass
                    return
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                writer.write(envelope(0, encode(item)))
                await writer.drain()
        finally:
            gone.cancel()
            await items.aclose()  # type: ignore[attr-defined]


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _decode(cls: Any, data: bytes, use_json: bool) -> Any:
    msg = cls()
    try:
        if use_json:
            json_format.Parse(
                data.decode("utf-8") if data.strip() else "{}", msg, ignore_unknown_fields=True
            )
        else:
            msg.ParseFromString(data)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ApiError("invalid_argument", f"malformed {cls.DESCRIPTOR.name}: {exc}") from None
    return msg


def _decompress(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise ApiError("invalid_argument", "malformed gzip body") from None
    raise ApiError("unimplemented", f"unsupported content encoding {encoding!r} (use gzip)")


def _timeout(req: Request) -> float | None:
    value = req.headers.get("connect-timeout-ms")
    if not value:
        return None
    if not value.isdigit() or len(value) > 10:
        raise ApiError("invalid_argument", "Connect-Timeout-Ms must be a positive integer")
    return int(value) / 1000


def _unary_error(exc: ApiError, status: int | None = None) -> Response:
    body = json.dumps(error_json(exc)).encode()
    return Response(status or HTTP_STATUS[exc.code], body, "application/json")
