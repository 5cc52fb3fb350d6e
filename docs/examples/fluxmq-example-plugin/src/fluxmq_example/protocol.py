"""A line protocol spoken over TCP: ``SUB <filter>``, ``UNSUB <filter>``,
``PUB <topic> <payload>``; the server answers ``OK``/``ERR <why>`` and pushes
``MSG <topic> <payload>`` for every matching message.

It shows the whole server side of a protocol plugin in one page: an
``asyncio.Protocol`` per connection, a ``Subscriber`` the router delivers to, and
publishes that enter the shared router as :class:`fluxmq_core.message.Message`.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, SubscriptionOptions
from fluxmq_core.router.topics import TopicError, validate_topic_filter, validate_topic_name
from fluxmq_core.transport import peer_name

MAX_LINE = 64 * 1024
_ids = itertools.count(1)


class LineProtocol(asyncio.Protocol):
    """One text-protocol connection."""

    protocol = "example"

    def __init__(self, context: Any) -> None:
        self.context = context
        self.client_id = f"example-{next(_ids)}"
        self.transport: asyncio.Transport | None = None
        self._buf = b""

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream server hands a Transport
        self.context.stats.clients_connected += 1
        self.context.events.client_connected(
            self.protocol, self.client_id, None, peer_name(transport)
        )

    def data_received(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_LINE:
            self._reply(b"ERR line too long")
            assert self.transport is not None
            self.transport.close()
            return
        for line in lines:
            self._handle(line.rstrip(b"\r"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.router.unsubscribe_all(self)
        self.context.stats.clients_connected -= 1
        self.context.events.client_disconnected(self.protocol, self.client_id, "closed")

    # Subscriber ------------------------------------------------------------------------

    def deliver(self, message: Message, delivery: Delivery) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"MSG " + message.topic.encode() + b" " + message.payload + b"\n")

    # commands --------------------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        verb, _, rest = line.partition(b" ")
        try:
            text = rest.decode()
        except UnicodeDecodeError:
            self._reply(b"ERR not UTF-8")
            return
        try:
            if verb == b"SUB":
                validate_topic_filter(text)
                self.context.router.subscribe(self, text, SubscriptionOptions())
                self._reply(b"OK")
            elif verb == b"UNSUB":
                self.context.router.unsubscribe(self, text)
                self._reply(b"OK")
            elif verb == b"PUB":
                topic, _, payload = text.partition(" ")
                validate_topic_name(topic)
                msg = Message(
                    topic,
                    payload.encode(),
                    origin_protocol=self.protocol,
                    origin_client=self.client_id,
                    timestamp=self.context.clock(),
                )
                self.context.publish(msg)
                self._reply(b"OK")
            else:
                self._reply(b"ERR unknown command")
        except TopicError as exc:
            self._reply(b"ERR " + str(exc).encode())

    def _reply(self, line: bytes) -> None:
        if self.transport is not None:
            self.transport.write(line + b"\n")
