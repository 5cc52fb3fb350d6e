"""Fake external auth / hook services for tests: a real HTTP server
(``http.server`` in a thread) and a real gRPC server (grpcio, generic handlers),
speaking the ``[auth_external]`` and ``[[hooks.endpoints]]`` contracts.

Behaviour is data: ``users`` (username -> (password, external id)), ``denied``
(topics refused), ``mode`` (``"ok"``, ``"slow"`` -- the answer waits until the
server is closed --, ``"error"`` -- HTTP 500 --, ``"garbage"`` -- not JSON --,
``"wrong-type"`` -- a JSON object with a string where a boolean belongs --,
``"wrong-authz"`` -- the same for authorization answers only) and, for
hooks, ``hook_answer`` (a function from the request body to the answer). Every
request is recorded in ``calls`` as ``(path, body)``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CalloutHTTPServer", "CalloutGrpcServer"]

_EVENTS = {
    1: "auth_on_register",
    2: "auth_on_publish",
    3: "auth_on_subscribe",
    4: "auth_on_unsubscribe",
}


class _Behaviour:
    def __init__(self) -> None:
        self.users: dict[str, tuple[str, str]] = {"alice": ("secret", "uuid-alice")}
        self.denied: set[str] = {"forbidden"}
        self.mode = "ok"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.released = threading.Event()
        self.hook_answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: {"result": "ok"}
        self._lock = threading.Lock()

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((path, body))

    def paths(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for p, b in self.calls if p == path]

    def authenticate(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(body.get("username", ""))
        if user is None or user[0] != body.get("password"):
            return {"authenticated": False, "reason_code": 4, "reason": "bad credentials"}
        return {"authenticated": True, "id": user[1]}

    def authorize(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"authorized": body.get("topic") not in self.denied}


class CalloutHTTPServer(_Behaviour):
    """The HTTP JSON contract on ``127.0.0.1:<ephemeral>``; use as a context manager."""

    def __init__(self) -> None:
        super().__init__()
        behaviour = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                behaviour.record(self.path, body)
                mode = behaviour.mode
                if mode == "slow":
                    behaviour.released.wait(30)
                    return
                if mode == "error":
                    self._send(500, b'{"error": "down"}')
                    return
                if mode == "garbage":
                    self._send(200, b"<html>not json")
                    return
                if self.path.endswith("/auth/authenticate"):
                    answer = behaviour.authenticate(body)
                    if mode == "wrong-type":
                        answer = {"authenticated": "yes"}
                elif self.path.endswith("/auth/authorize"):
                    answer = behaviour.authorize(body)
                    if mode in ("wrong-type", "wrong-authz"):
                        answer = {"authorized": "yes"}
                elif self.path.endswith("/hooks"):
                    answer = behaviour.hook_answer(body)
                else:
                    self._send(404, b"{}")
                    return
                self._send(200, json.dumps(answer).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CalloutHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class CalloutGrpcServer(_Behaviour):
    """``fluxmq.auth.v1.AuthService`` and ``HookService`` on a real grpcio server."""

    def __init__(self) -> None:
        super().__init__()
        import importlib
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        # Imported by name: the generated module has no type stub (see generate.py).
        pb: Any = importlib.import_module("fluxmq_core.callout._proto.auth_pb2")

        self.pb = pb

        def authenticate(req: Any, ctx: Any) -> Any:
            body = {"username": req.username, "password": req.password, "protocol": req.protocol}
            self.record("Authenticate", {**body, "client_id": req.client_id})
            if self.mode == "slow":
                self.released.wait(30)
            if self.mode == "error":
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "down")
            return pb.AuthnRes(**self.authenticate(body))

        def authorize(req: Any, ctx: Any) -> Any:
            body = {"external_id": req.external_id, "topic": req.topic, "action": req.action}
            self.record("Authorize", body)
            if self.mode == "error":
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "down")
            return pb.AuthzRes(**self.authorize(body))

        def handle(req: Any, ctx: Any) -> Any:
            body = {
                # Our event names, so one hook_answer serves both transports.
                "hook": _EVENTS.get(req.hook, ""),
                "hook_enum": pb.HookType.Name(req.hook),
                "client_id": req.client_id,
                "topic": req.topic,
                "payload": base64.b64encode(req.payload).decode(),
                "qos": req.qos,
                "retain": req.retain,
                "properties": dict(req.properties),
            }
            self.record("Handle", body)
            answer = dict(self.hook_answer(body))
            result = {"ok": pb.HookResultOk, "deny": pb.HookResultDeny}.get(
                answer.pop("result", "ok"), pb.HookResultOk
            )
            if "payload" in answer:
                answer["payload"] = base64.b64decode(answer["payload"])
                answer["payload_set"] = True
            for key in ("qos", "retain"):
                if key in answer:
                    answer[f"{key}_set"] = True
            return pb.HookRes(result=result, **answer)

        def unary(fn: Any, req: Any, res: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=res.SerializeToString
            )

        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "fluxmq.auth.v1.AuthService",
                    {
                        "Authenticate": unary(authenticate, pb.AuthnReq, pb.AuthnRes),
                        "Authorize": unary(authorize, pb.AuthzReq, pb.AuthzRes),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "fluxmq.auth.v1.HookService",
                    {"Handle": unary(handle, pb.HookReq, pb.HookRes)},
                ),
            )
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{port}"

    def __enter__(self) -> CalloutGrpcServer:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.released.set()
        self.server.stop(0)
