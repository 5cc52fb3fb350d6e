"""Blocking hooks: ``[[hooks.endpoints]]``, services that may allow, deny or modify a
login, a publish, a subscribe or an unsubscribe before the broker goes on.

:class:`Hooks` lives on ``context.hooks`` only while at least one endpoint is
configured, so a protocol's publish path pays one ``is None`` check otherwise; when
set, :meth:`Hooks.wants` (a set lookup) says whether an event of a protocol is hooked.
Endpoints are called in the order configured, each seeing what the previous one
modified; the first denial stops the chain. A failed call (timeout, connection error,
malformed answer, breaker open) follows the endpoint's ``fail_mode``: ``"deny"``
(the default) refuses, ``"allow"`` goes on unmodified.

Contract: HTTP posts JSON to ``{url}/hooks``; gRPC calls
``fluxmq.auth.v1.HookService/Handle`` (the Go FluxMQ's ``HookReq``/``HookRes``).
JSON request: ``hook`` (``auth_on_register`` | ``auth_on_publish`` |
``auth_on_subscribe`` | ``auth_on_unsubscribe``), ``protocol`` (``MQTT``...),
``client_id``, ``external_id``, ``topic``, ``payload`` (base64), ``qos``, ``retain``,
``properties`` (string map), and ``username``/``password`` for register. JSON
answer: ``result`` (``"ok"`` | ``"deny"``, required), optional ``topic``,
``payload`` (base64), ``qos``, ``retain``, ``properties`` (merged), ``reason``,
``external_id`` (register only).

Where protocols call it: ``auth_on_register`` runs inside
:meth:`fluxmq_core.auth.AuthService.authenticate` after a successful login (every
protocol); publish and subscribe run where each protocol already waits for
authorization (MQTT's wait machinery, the HTTP handlers), and authorization runs again
on a modified topic or filter.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from fluxmq_core.callout.config import HOOK_EVENTS, _check_protocols
from fluxmq_core.callout.transport import Breaker, CalloutError, GrpcCaller, HttpCaller, Policy
from fluxmq_core.config import setting

log = logging.getLogger("fluxmq.hooks")

REGISTER, PUBLISH, SUBSCRIBE, UNSUBSCRIBE = HOOK_EVENTS
_PROTOCOL_JSON = {
    "mqtt": (1, "MQTT"),
    "amqp1": (2, "AMQP_1_0"),
    "amqp091": (3, "AMQP_0_9_1"),
    "http": (4, "HTTP"),
    "coap": (5, "CoAP"),
}
_HOOK_ENUM = {REGISTER: 1, PUBLISH: 2, SUBSCRIBE: 3, UNSUBSCRIBE: 4}


@dataclass
class HookEndpoint:
    """One ``[[hooks.endpoints]]`` table."""

    url: str = setting("", "http(s)://host:port (JSON POST {url}/hooks) or, for gRPC, host:port.")
    transport: Literal["http", "grpc"] = setting("http", '"http" or "grpc" (needs grpcio).')
    events: list[str] = setting(
        help="Events sent here; empty = all four (auth_on_register, auth_on_publish, "
        "auth_on_subscribe, auth_on_unsubscribe).",
        factory=list,
    )
    protocols: list[str] = setting(help="Protocols sent here; empty = all.", factory=list)
    timeout: float = setting(2.0, "Seconds one call may take.")
    fail_mode: Literal["deny", "allow"] = setting(
        "deny", "When the call fails: refuse (deny) or go on unmodified (allow)."
    )

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("url is required")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        unknown = [e for e in self.events if e not in HOOK_EVENTS]
        if unknown:
            raise ValueError(f"events: unknown {unknown}; known: {list(HOOK_EVENTS)}")
        _check_protocols(self.protocols, "protocols")


@dataclass
class HooksConfig:
    """``[hooks]``: blocking hook endpoints, as ``[[hooks.endpoints]]`` tables."""

    endpoints: list[HookEndpoint] = setting(
        help="Blocking hook services, called in order; see docs/auth.md.", factory=list
    )


@dataclass(frozen=True, slots=True)
class HookRequest:
    """What a hook is told about one event."""

    hook: str
    protocol: str
    client_id: str
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    password: bytes | None = None
    external_id: str = ""


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """The chain's decision: ``allow``, and what to use instead (``None`` = unchanged)."""

    allow: bool
    reason: str = ""
    topic: str | None = None
    payload: bytes | None = None
    qos: int | None = None
    retain: bool | None = None
    properties: dict[str, str] | None = None
    external_id: str | None = None


ALLOW = HookOutcome(True)


class _Endpoint:
    def __init__(self, cfg: HookEndpoint, clock: Any) -> None:
        self.cfg = cfg
        self.events = frozenset(cfg.events or HOOK_EVENTS)
        self.protocols = frozenset(cfg.protocols or _PROTOCOL_JSON)
        self.policy = Policy(
            timeout=cfg.timeout, retries=0, backoff=0.0, breaker=Breaker(5, 10.0, clock)
        )
        self.http = HttpCaller(cfg.url) if cfg.transport == "http" else None
        self.grpc = GrpcCaller(cfg.url) if cfg.transport == "grpc" else None

    async def call(self, req: HookRequest) -> HookOutcome:
        if self.grpc is not None:
            return await self.policy.run(lambda: self._grpc(req))
        return await self.policy.run(lambda: self._http(req))

    async def _http(self, req: HookRequest) -> HookOutcome:
        assert self.http is not None
        body: dict[str, Any] = {
            "hook": req.hook,
            "protocol": _PROTOCOL_JSON.get(req.protocol, (0, "Unspecified"))[1],
            "client_id": req.client_id,
            "external_id": req.external_id,
            "topic": req.topic,
            "payload": base64.b64encode(req.payload).decode(),
            "qos": req.qos,
            "retain": req.retain,
            "properties": req.properties,
        }
        if req.hook == REGISTER:
            body["username"] = req.username or ""
            body["password"] = (req.password or b"").decode("utf-8", "replace")
        answer = await self.http.post("/hooks", body)
        return _parse_json(answer)

    async def _grpc(self, req: HookRequest) -> HookOutcome:
        assert self.grpc is not None
        pb = self.grpc.pb
        res = await self.grpc.call(
            "/fluxmq.auth.v1.HookService/Handle",
            pb.HookReq(
                hook=_HOOK_ENUM[req.hook],
                client_id=req.client_id,
                external_id=req.external_id,
                protocol=_PROTOCOL_JSON.get(req.protocol, (0, ""))[0],
                topic=req.topic,
                payload=req.payload,
                qos=req.qos,
                retain=req.retain,
                properties=req.properties,
                username=req.username or "",
                password=(req.password or b"").decode("utf-8", "replace"),
            ),
            pb.HookRes,
        )
        if res.result not in (pb.HookResultOk, pb.HookResultDeny):
            raise CalloutError("malformed answer: result unspecified", retry=False)
        return HookOutcome(
            allow=res.result == pb.HookResultOk,
            reason=res.reason,
            topic=res.topic or None,
            payload=res.payload if res.payload_set else None,
            qos=res.qos if res.qos_set else None,
            retain=res.retain if res.retain_set else None,
            properties=dict(res.properties) or None,
            external_id=res.external_id or None,
        )


def _parse_json(answer: dict[str, Any]) -> HookOutcome:
    def bad(what: str) -> CalloutError:
        return CalloutError(f"malformed answer: {what}", retry=False)

    result = answer.get("result")
    if result not in ("ok", "deny"):
        raise bad('\'result\' must be "ok" or "deny"')
    topic = answer.get("topic")
    if topic is not None and (not isinstance(topic, str) or not topic):
        raise bad("'topic' must be a non-empty string")
    payload = answer.get("payload")
    if payload is not None:
        try:
            payload = base64.b64decode(payload, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise bad("'payload' must be base64") from None
    qos = answer.get("qos")
    if qos is not None and qos not in (0, 1, 2):
        raise bad("'qos' must be 0, 1 or 2")
    retain = answer.get("retain")
    if retain is not None and not isinstance(retain, bool):
        raise bad("'retain' must be a boolean")
    props = answer.get("properties")
    if props is not None and not (
        isinstance(props, dict) and all(isinstance(v, str) for v in props.values())
    ):
        raise bad("'properties' must map strings to strings")
    ext = answer.get("external_id")
    return HookOutcome(
        allow=result == "ok",
        reason=str(answer.get("reason") or ""),
        topic=topic,
        payload=payload,
        qos=qos,
        retain=retain,
        properties=props or None,
        external_id=ext if isinstance(ext, str) and ext else None,
    )


class Hooks:
    """The ``context.hooks`` service (only set while endpoints are configured)."""

    def __init__(self, cfg: HooksConfig, clock: Any = time.monotonic) -> None:
        self.endpoints = [_Endpoint(e, clock) for e in cfg.endpoints]
        self._wanted = frozenset(
            (event, proto) for e in self.endpoints for event in e.events for proto in e.protocols
        )
        self.calls = 0

    def wants(self, event: str, protocol: str) -> bool:
        return (event, protocol) in self._wanted

    async def call(self, req: HookRequest) -> HookOutcome:
        """Run the chain; never raises (a failure follows the endpoint's fail mode)."""
        merged: dict[str, Any] = {}
        props = dict(req.properties)
        current = req
        for ep in self.endpoints:
            if req.hook not in ep.events or req.protocol not in ep.protocols:
                continue
            self.calls += 1
            try:
                out = await ep.call(current)
            except CalloutError as exc:
                log.warning(
                    "hook %s at %s failed (%s): %s", req.hook, ep.cfg.url, ep.cfg.fail_mode, exc
                )
                if ep.cfg.fail_mode == "deny":
                    return HookOutcome(False, reason=f"hook service unavailable: {exc.reason}")
                continue
            if not out.allow:
                return HookOutcome(False, reason=out.reason or "denied by hook")
            changes = {
                k: getattr(out, k)
                for k in ("topic", "payload", "qos", "retain", "external_id")
                if getattr(out, k) is not None
            }
            if out.properties:
                props.update(out.properties)
                changes["properties"] = dict(props)
            if changes:
                merged.update(changes)
                current = _replace(current, changes)
        return HookOutcome(True, **merged) if merged else ALLOW


def apply_outcome(message: Any, outcome: HookOutcome) -> None:
    """Put a publish hook's modifications other than the topic (which the protocol
    applies itself, to authorize it again) on a core :class:`~fluxmq_core.message.Message`.
    ``properties`` become user properties (replacing those of the same name)."""
    if outcome.payload is not None:
        message.payload = outcome.payload
    if outcome.retain is not None:
        message.retain = outcome.retain
    if outcome.qos is not None:
        message.qos = outcome.qos
    if outcome.properties:
        kept = [(k, v) for k, v in (message.user_properties or []) if k not in outcome.properties]
        message.user_properties = kept + list(outcome.properties.items())


def external_id(context: Any, client_id: str) -> str:
    """The identity the external auth callout returned for a client, or ``""``."""
    ext = context.extras.get("auth_external")
    known = ext.clients.get(client_id) if ext is not None else None
    return (known[1] or "") if known else ""


def _replace(req: HookRequest, changes: dict[str, Any]) -> HookRequest:
    fields = {k: v for k, v in changes.items() if k in HookRequest.__dataclass_fields__}
    return HookRequest(**{**{k: getattr(req, k) for k in HookRequest.__slots__}, **fields})


def build(context: Any) -> Hooks | None:
    """``context.hooks`` from ``[hooks]``: ``None`` while no endpoint is configured."""
    if not context.config.has("hooks"):
        return None
    cfg: HooksConfig = context.config.section("hooks")
    return Hooks(cfg, context.clock) if cfg.endpoints else None
