"""A real webhook receiver for tests: ``http.server`` in a thread on
``127.0.0.1:<ephemeral>`` recording every POSTed event envelope.

Plugins test the events they emit against it::

    with WebhookReceiver() as rec:
        b = fluxmq_broker_factory(plugins=["amqp091"], config=rec.config())
        ...
        ev = rec.wait_for("client.connected", protocol="amqp091")

Webhook workers deliver concurrently, so arrival order is not event order:
:meth:`WebhookReceiver.wait_for` looks for a matching event among everything
received (bounded wait), never at "the next" one.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """Records envelopes (``{"event_type", "data", ...}``) in :attr:`events`."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event = json.loads(body)
                except json.JSONDecodeError:
                    event = {"event_type": "<not json>", "data": {}}
                with rec._cond:
                    rec.events.append(event)
                    rec._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def config(self, *, ordered: bool = False, **endpoint: Any) -> dict[str, Any]:
        """A ``[webhooks]`` section sending every event here with fast retries.
        ``ordered``: one worker, so events arrive in the order they happened (an
        event seen means every earlier one was seen)."""
        section: dict[str, Any] = {
            "endpoints": [{"url": self.url, **endpoint}],
            "initial_interval": 0.01,
            "max_interval": 0.05,
        }
        if ordered:
            section["workers"] = 1
        return {"webhooks": section}

    def matching(self, event_type: str, **data: Any) -> list[dict[str, Any]]:
        """Events received so far of that type whose ``data`` has those values."""
        with self._cond:
            return [
                e
                for e in self.events
                if e.get("event_type") == event_type
                and all(e.get("data", {}).get(k) == v for k, v in data.items())
            ]

    def wait_for(self, event_type: str, timeout: float = 10.0, **data: Any) -> dict[str, Any]:
        """The first event of that type with those ``data`` values (bounded wait)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e
                    for e in self.events
                    if e.get("event_type") == event_type
                    and all(e.get("data", {}).get(k) == v for k, v in data.items())
                ]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({str(e.get("event_type")) for e in self.events})
                    raise AssertionError(
                        f"no {event_type} event with {data} within {timeout:g} s; got: {seen}"
                    )
                self._cond.wait(left)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
