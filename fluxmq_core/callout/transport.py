"""Calling an external service: HTTP JSON over asyncio + h11, or gRPC (lazily
imported), behind timeouts, jittered retries and a circuit breaker.

Every failure becomes :class:`CalloutError` with a one-line reason; the auth plugin
turns it into a refusal (fail closed). What counts as a failure: a connection error,
a timeout, an HTTP status other than 200, a body that is not the JSON object expected
(a *malformed answer*), a gRPC error. Malformed answers are not retried (the service
answered; asking again gives the same), the others are, ``retries`` times with
exponential backoff and full jitter. Each failed *call* (after its retries) counts
towards the breaker; ``breaker_failures`` in a row open it for ``breaker_reset``
seconds, during which calls fail at once without touching the network, then one trial
call is let through (half-open): success closes the breaker, failure opens it again.

The HTTP client opens one connection per call (``Connection: close``): calls are rare
by construction (logins, and one authorization per client, action and topic thanks
to the auth service's cache), so pooling is not worth its state.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from typing import Any
from urllib.parse import urlsplit

import h11

__all__ = ["Breaker", "CalloutError", "GrpcCaller", "HttpCaller", "Policy"]

MAX_BODY = 1 << 20  # an answer larger than this is malformed


class CalloutError(Exception):
    """A call failed (after retries) or was not attempted (breaker open)."""

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class Breaker:
    """A consecutive-failure circuit breaker on an injectable clock."""

    __slots__ = ("failures", "threshold", "reset", "opened_at", "clock", "trial")

    def __init__(self, threshold: int, reset: float, clock: Any) -> None:
        self.threshold = threshold
        self.reset = reset
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset else "open"

    def admit(self) -> bool:
        """Whether a call may go out now (one trial at a time when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.trial:
            self.trial = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial = False

    def failure(self) -> None:
        self.trial = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock()


class Policy:
    """Timeout, retries with jittered backoff, and the breaker around one transport."""

    def __init__(self, *, timeout: float, retries: int, backoff: float, breaker: Breaker) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker

    async def run(self, attempt: Any) -> Any:
        """Call ``attempt()`` (a coroutine factory) under the policy."""
        breaker = self.breaker
        if not breaker.admit():
            raise CalloutError("circuit breaker open", retry=False)
        last: CalloutError | None = None
        for n in range(self.retries + 1):
            if n:
                await asyncio.sleep(random.uniform(0, self.backoff * (2 ** (n - 1))))
            try:
                result = await asyncio.wait_for(attempt(), self.timeout)
            except TimeoutError:
                last = CalloutError(f"timed out after {self.timeout:g} s")
            except CalloutError as exc:
                last = exc
            except (OSError, h11.ProtocolError) as exc:
                last = CalloutError(f"connection failed: {exc}")
            else:
                breaker.success()
                return result
            if not last.retry:
                break
        breaker.failure()
        assert last is not None
        raise last


class HttpCaller:
    """POST a JSON object to ``{base}{path}`` and return the JSON object answered."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {base_url!r} is not an http(s) URL with a host")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self.prefix = parts.path.rstrip("/")
        self.authority = parts.netloc

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        try:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_BODY)
            data = json.dumps(body).encode()
            headers = [
                ("Host", self.authority),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
                ("User-Agent", "fluxmq-callout"),
            ]
            writer.write(
                conn.send(h11.Request(method="POST", target=self.prefix + path, headers=headers))
                + (conn.send(h11.Data(data=data)) or b"")
                + (conn.send(h11.EndOfMessage()) or b"")
            )
            await writer.drain()
            status = 0
            chunks: list[bytes] = []
            size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    raw = await reader.read(65536)
                    conn.receive_data(raw)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_BODY:
                        raise CalloutError("malformed answer: body too large", retry=False)
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        finally:
            writer.close()
        if status >= 500 or status == 0:
            raise CalloutError(f"HTTP {status} from {path}")
        if status != 200:
            raise CalloutError(f"HTTP {status} from {path}", retry=False)
        try:
            answer = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CalloutError(f"malformed answer from {path}: not JSON", retry=False) from None
        if not isinstance(answer, dict):
            raise CalloutError(f"malformed answer from {path}: not an object", retry=False)
        return answer


def _grpc_modules() -> tuple[Any, Any]:
    """``(grpc, auth_pb2)``, or a clear error naming what to install."""
    try:
        import grpc
        import grpc.aio  # noqa: F401 - the submodule is what is used

        from fluxmq_core.callout._proto import auth_pb2
    except ImportError as exc:
        raise ImportError(
            '[auth_external] transport = "grpc" needs the grpcio and protobuf packages '
            f"(pip install grpcio protobuf): {exc}"
        ) from None
    return grpc, auth_pb2


class GrpcCaller:
    """Unary calls to ``fluxmq.auth.v1`` services through grpc's generic stubs."""

    def __init__(self, target: str) -> None:
        self.grpc, self.pb = _grpc_modules()
        self.target = target.removeprefix("grpc://")
        self._channel: Any = None
        self._stubs: dict[str, Any] = {}

    def _stub(self, method: str, response: Any) -> Any:
        stub = self._stubs.get(method)
        if stub is None:
            if self._channel is None:
                self._channel = self.grpc.aio.insecure_channel(self.target)
            stub = self._stubs[method] = self._channel.unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )
        return stub

    async def call(self, method: str, request: Any, response: Any) -> Any:
        try:
            return await self._stub(method, response)(request)
        except self.grpc.aio.AioRpcError as exc:
            raise CalloutError(f"gRPC {exc.code().name}: {exc.details()}") from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
