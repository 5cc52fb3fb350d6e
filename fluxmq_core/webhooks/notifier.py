"""Webhook delivery: a bounded queue, worker tasks, retries and a breaker per endpoint.

:class:`Notifier` is an event *sink* of :class:`fluxmq_core.events.Events`: the core
calls it with the observer hook's name and arguments. That call is the only thing on
the broker's path and it stays tiny: a set lookup (does any endpoint want this?) and
an append to a ``deque``; a full queue drops the oldest or the new event and counts
it. Turning hook arguments into JSON envelopes, filtering per endpoint, and the HTTP
POSTs all happen in ``[webhooks] workers`` tasks, so a slow or dead endpoint never
slows a publisher.

Each endpoint has a :class:`Breaker`: after ``failure_threshold`` consecutive failed
attempts it opens and events for that endpoint are dropped (counted) without a
connection attempt until ``reset_timeout`` has passed; then one delivery is let
through (half-open) and its outcome closes or re-opens the breaker. Failed attempts
are retried up to ``max_attempts`` with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from fluxmq_core.router.topics import topic_matches
from fluxmq_core.webhooks.client import WebhookClientError, post
from fluxmq_core.webhooks.config import EVENT_TYPES, EndpointConfig, WebhooksConfig

__all__ = ["Breaker", "Endpoint", "HOOK_EVENTS", "Notifier"]

log = logging.getLogger("fluxmq.webhooks")

# The event types each core notification can produce (the first is the main one;
# the others are derived: a disconnect by takeover, a published retained message).
HOOK_EVENTS: dict[str, tuple[str, ...]] = {
    "fluxmq_client_connected": ("client.connected",),
    "fluxmq_client_disconnected": ("client.disconnected", "client.session_takeover"),
    "fluxmq_client_subscribed": ("subscription.created",),
    "fluxmq_client_unsubscribed": ("subscription.removed",),
    "fluxmq_message_published": ("message.published", "message.retained"),
    "fluxmq_message_delivered": ("message.delivered",),
    "auth_failure": ("auth.failure",),
    "authz_denied": ("authz.denied",),
}


class Breaker:
    """closed -> (``threshold`` consecutive failures) -> open -> (``reset_timeout``)
    -> half-open: one trial; success closes, failure re-opens."""

    __slots__ = ("threshold", "reset_timeout", "failures", "state", "opened_at", "clock", "trial")

    def __init__(
        self, threshold: int, reset_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.failures = 0
        self.state = "closed"
        self.opened_at = 0.0
        self.trial = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() - self.opened_at >= self.reset_timeout:
            self.state = "half-open"
            self.trial = False
        if self.state == "half-open" and not self.trial:
            self.trial = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.state = "closed"
        self.trial = False

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.threshold:
            if self.state != "open":
                log.warning("webhook breaker opened after %d failure(s)", self.failures)
            self.state = "open"
            self.opened_at = self.clock()
            self.trial = False


class Endpoint:
    """One configured endpoint with its filters, breaker and counters."""

    def __init__(self, cfg: EndpointConfig, settings: WebhooksConfig) -> None:
        self.cfg = cfg
        self.url = cfg.url
        self.events = frozenset(cfg.events or EVENT_TYPES)
        self.breaker = Breaker(settings.failure_threshold, settings.reset_timeout)
        self.sent = 0
        self.failed = 0
        self.rejected = 0  # dropped by an open breaker

    def wants(self, event_type: str, topic: str | None) -> bool:
        if event_type not in self.events:
            return False
        filters = self.cfg.topic_filters
        if topic is None or not filters:
            return True
        return any(topic_matches(f, topic) for f in filters)

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "sent": self.sent,
            "failed": self.failed,
            "rejected": self.rejected,
            "breaker": self.breaker.state,
        }


class Notifier:
    """The webhook sink and its workers (see the module docstring)."""

    def __init__(
        self, cfg: WebhooksConfig, broker_id: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.broker_id = broker_id
        self.clock = clock
        self.endpoints = [Endpoint(e, cfg) for e in cfg.endpoints]
        wanted = set().union(*(e.events for e in self.endpoints)) if self.endpoints else set()
        self.hooks = frozenset(h for h, types in HOOK_EVENTS.items() if wanted.intersection(types))
        self.queue: deque[tuple[str, dict[str, Any], float]] = deque()
        self.dropped = 0
        self.enqueued = 0
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    # -- the sink: called on the broker's path -------------------------------------------------

    def wants(self, hook: str) -> bool:
        return hook in self.hooks

    def __call__(self, hook: str, fields: dict[str, Any]) -> None:
        if hook not in self.hooks or self._closing:
            return
        queue = self.queue
        if len(queue) >= self.cfg.queue_size:
            self.dropped += 1
            if self.cfg.drop_policy == "newest":
                return
            queue.popleft()
        queue.append((hook, fields, self.clock()))
        self.enqueued += 1
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._worker(), name=f"webhook-worker-{i}")
            for i in range(self.cfg.workers)
        ]

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking events, deliver what is queued for up to ``timeout`` seconds
        (``[webhooks] shutdown_timeout`` by default), then cancel the workers."""
        self._closing = True
        limit = self.cfg.shutdown_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while self.queue or self._busy:
                    self._wake.set()
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            log.warning(
                "webhooks: %d event(s) not delivered at shutdown", len(self.queue) + self._busy
            )
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self.queue),
            "enqueued": self.enqueued,
            "dropped": self.dropped,
            "endpoints": [e.stats() for e in self.endpoints],
        }

    # -- workers --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if not self.queue:
                if not self._busy:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            hook, fields, at = self.queue.popleft()
            self._busy += 1
            try:
                await self._dispatch(hook, fields, at)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhooks: failed to handle %s", hook)
            finally:
                self._busy -= 1
                if not self._busy and not self.queue:
                    self._idle.set()

    async def _dispatch(self, hook: str, fields: dict[str, Any], at: float) -> None:
        jobs = []
        for event_type, data, topic, message in _events(hook, fields):
            for endpoint in self.endpoints:
                if not endpoint.wants(event_type, topic):
                    continue
                body = dict(data)
                if message is not None and endpoint.cfg.include_payload:
                    body["payload"] = base64.b64encode(message.payload).decode()
                envelope = {
                    "event_type": event_type,
                    "event_id": str(uuid.uuid4()),
                    "timestamp": _iso(at),
                    "broker_id": self.broker_id,
                    "data": body,
                }
                jobs.append(
                    self._deliver(endpoint, json.dumps(envelope, separators=(",", ":")).encode())
                )
        if jobs:
            await asyncio.gather(*jobs)

    async def _deliver(self, endpoint: Endpoint, body: bytes) -> None:
        cfg = self.cfg
        breaker = endpoint.breaker
        wait = cfg.initial_interval
        reason = ""
        for attempt in range(1, cfg.max_attempts + 1):
            if not breaker.allow():
                endpoint.rejected += 1
                return
            try:
                result = await post(
                    endpoint.url,
                    body,
                    endpoint.cfg.headers,
                    endpoint.cfg.timeout,
                    cfg.response_limit,
                )
                ok = 200 <= result.status < 300
                reason = f"HTTP {result.status}"
            except WebhookClientError as exc:
                ok = False
                reason = str(exc)
            if ok:
                breaker.success()
                endpoint.sent += 1
                return
            breaker.failure()
            log.debug("webhook %s attempt %d failed: %s", endpoint.url, attempt, reason)
            if attempt == cfg.max_attempts or breaker.state == "open":
                break
            spread = wait * cfg.jitter
            await asyncio.sleep(max(0.0, wait + random.uniform(-spread, spread)))
            wait = min(cfg.max_interval, wait * cfg.multiplier)
        endpoint.failed += 1
        log.warning("webhook to %s failed: %s", endpoint.url, reason)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _message_data(m: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "topic": m.topic,
        "qos": m.qos,
        "retain": m.retain,
        "payload_size": len(m.payload),
        "client_id": m.origin_client,
        "protocol": m.origin_protocol,
    }
    if m.content_type:
        data["content_type"] = m.content_type
    if m.user_properties:
        data["user_properties"] = [list(p) for p in m.user_properties]
    return data


def _events(hook: str, f: dict[str, Any]) -> list[tuple[str, dict[str, Any], str | None, Any]]:
    """``(event type, data, topic or None, message or None)`` for one notification.
    Only message.* events carry a topic: endpoint topic filters apply to them alone."""
    if hook == "fluxmq_message_published":
        m = f["message"]
        out = [("message.published", _message_data(m), m.topic, m)]
        if m.retain:
            data = _message_data(m)
            data["cleared"] = not m.payload
            out.append(("message.retained", data, m.topic, m))
        return out
    if hook == "fluxmq_message_delivered":
        m = f["message"]
        data = _message_data(m)
        data["client_id"] = f["client_id"]
        data["protocol"] = f["protocol"]
        data["origin_client"] = m.origin_client
        data["origin_protocol"] = m.origin_protocol
        return [("message.delivered", data, m.topic, m)]
    if hook == "fluxmq_client_connected":
        return [
            (
                "client.connected",
                {
                    "client_id": f["client_id"],
                    "protocol": f["protocol"],
                    "username": f["username"],
                    "remote": f["remote"],
                },
                None,
                None,
            )
        ]
    if hook == "fluxmq_client_disconnected":
        data = {"client_id": f["client_id"], "protocol": f["protocol"], "reason": f["reason"]}
        out = [("client.disconnected", data, None, None)]
        reason = str(f["reason"]).lower()
        if "taken over" in reason or "takeover" in reason:
            out.append(("client.session_takeover", dict(data), None, None))
        return out
    if hook == "fluxmq_client_subscribed":
        options = f["options"]
        return [
            (
                "subscription.created",
                {
                    "client_id": f["client_id"],
                    "protocol": f["protocol"],
                    "topic_filter": f["topic_filter"],
                    "qos": getattr(options, "qos", 0),
                },
                None,
                None,
            )
        ]
    if hook == "fluxmq_client_unsubscribed":
        return [
            (
                "subscription.removed",
                {
                    "client_id": f["client_id"],
                    "protocol": f["protocol"],
                    "topic_filter": f["topic_filter"],
                },
                None,
                None,
            )
        ]
    if hook == "auth_failure":
        return [
            (
                "auth.failure",
                {k: f[k] for k in ("client_id", "protocol", "username", "remote", "reason")},
                None,
                None,
            )
        ]
    if hook == "authz_denied":
        return [
            (
                "authz.denied",
                {k: f[k] for k in ("client_id", "username", "action", "topic")},
                None,
                None,
            )
        ]
    return []
