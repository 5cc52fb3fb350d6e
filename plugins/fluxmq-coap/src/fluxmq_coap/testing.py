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


# --- raw datagrams: for tests where the bytes matter ----------------------------------

CON, NON, ACK, RST = 0, 1, 2, 3


def encode(
    mtype: int,
    code: int,
    mid: int,
    token: bytes = b"",
    options: list[tuple[int, bytes]] | None = None,
    payload: bytes = b"",
) -> bytes:
    """A CoAP datagram (RFC 7252 3), options given as ``(number, value)``."""
    out = bytearray([0x40 | (mtype << 4) | len(token), code, mid >> 8, mid & 0xFF])
    out += token
    last = 0
    for number, value in sorted(options or [], key=lambda o: o[0]):
        delta, length = number - last, len(value)
        last = number
        head, ext = 0, bytearray()
        for shift, n in ((4, delta), (0, length)):
            if n < 13:
                head |= n << shift
            elif n < 269:
                head |= 13 << shift
                ext.append(n - 13)
            else:
                head |= 14 << shift
                ext += (n - 269).to_bytes(2, "big")
        out.append(head)
        out += ext
        out += value
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def uint(n: int) -> bytes:
    """A CoAP uint option value (shortest form)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def path_options(path: str) -> list[tuple[int, bytes]]:
    """Uri-Path (11) and Uri-Query (15) options for ``/a/b?x=1&y``."""
    p, _, q = path.partition("?")
    opts = [(11, seg.encode()) for seg in p.strip("/").split("/")]
    if q:
        opts += [(15, item.encode()) for item in q.split("&")]
    return opts


def decode(data: bytes) -> dict[str, Any]:
    """The header, token, options and payload of a datagram (well-formed only)."""
    mtype, tkl = (data[0] >> 4) & 3, data[0] & 0x0F
    code, mid = data[1], int.from_bytes(data[2:4], "big")
    token = data[4 : 4 + tkl]
    i, number, options = 4 + tkl, 0, []
    payload = b""
    while i < len(data):
        if data[i] == 0xFF:
            payload = data[i + 1 :]
            break
        delta, length = data[i] >> 4, data[i] & 0x0F
        i += 1
        vals = []
        for n in (delta, length):
            if n == 13:
                n = data[i] + 13
                i += 1
            elif n == 14:
                n = int.from_bytes(data[i : i + 2], "big") + 269
                i += 2
            vals.append(n)
        number += vals[0]
        options.append((number, data[i : i + vals[1]]))
        i += vals[1]
    return {
        "mtype": mtype,
        "code": code,
        "mid": mid,
        "token": token,
        "options": options,
        "payload": payload,
    }
