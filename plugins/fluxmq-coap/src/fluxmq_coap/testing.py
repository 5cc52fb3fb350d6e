"""Small helpers for tests of CoAP against FluxMQ (used by this plugin's tests; handy
for plugin authors too). Every wait is bounded."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from typing import Any

WAIT = 5.0


def broker_plugins() -> list[str]:
    """``["coap"]`` plus ``"mqtt"`` when the MQTT plugin is installed (the
    cross-protocol tests need it; this plugin's tests also run without it)."""
    plugins = ["coap"]
    if importlib.util.find_spec("fluxmq_mqtt") is not None:
        plugins.append("mqtt")
    return plugins


class Collector:
    """A router subscriber that records what it gets (call its methods on the
    broker's loop: ``broker.call_soon(router.subscribe, collector, "a/#")``)."""

    def __init__(self, client_id: str = "collector") -> None:
        self.client_id = client_id
        self.protocol = "test"
        self.messages: list[Any] = []

    def deliver(self, message: Any, delivery: Any) -> None:
        self.messages.append(message)

    def wait(self, n: int, timeout: float = WAIT) -> list[Any]:
        """Block (bounded) until ``n`` messages arrived; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` (a condition, not a fixed wait) until true or timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def coap_url(broker: Any, path: str) -> str:
    """``coap://127.0.0.1:<port><path>`` of a test broker's CoAP listener."""
    return f"coap://127.0.0.1:{broker.port('coap.bind')}{path}"
