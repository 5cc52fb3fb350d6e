"""The ``memory`` BrokerStore: everything in dicts, gone when the process exits.

It is the default driver and the reference implementation of the
:class:`~fluxmq_core.storage.base.BrokerStore` contract: writes apply at once,
``sync()`` returns at once, nothing survives a restart. It still behaves like a
durable driver in the ways code can notice, so that code tested against it keeps
working on a durable one: it stores copies (a caller mutating a message or a record
afterwards changes nothing), hands out fresh copies on every read, and refuses
record values that a serialising driver could not store.

The copy helpers (:func:`copy_message`, :func:`copy_record`) are shared with the
memory queue log. What this module deliberately does not do: bounds, expiry or any
MQTT rule; those belong to the session layer that calls it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable
from itertools import islice
from typing import Any

from fluxmq_core.message import Message
from fluxmq_core.storage.base import BrokerStore, StorageOptions

_SCALARS = (str, int, float, bool, bytes, type(None))


def copy_record(value: Any, _where: str = "record") -> Any:
    """A deep copy of a JSON-friendly record (plus bytes), checking its types.

    Faster than :func:`copy.deepcopy` (no memo; records are trees) and strict on
    purpose: a value a durable driver could not serialise (a set, an object, a
    non-``str`` key) raises ``TypeError`` naming where it was, here in tests rather
    than in production. Tuples come back as lists, as they would from a
    serialising driver.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{_where}: keys must be str, got {k!r}")
            out[k] = copy_record(v, f"{_where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [copy_record(v, f"{_where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"{_where}: {type(value).__name__} is not storable "
        "(use None, bool, int, float, str, bytes, list or dict)"
    )


def copy_message(message: Message) -> Message:
    """An independent copy of ``message``: its mutable parts (``properties``,
    ``user_properties``) are copied and the encode cache is dropped. ``payload``
    and ``correlation_data`` are bytes (made so if given a bytearray), hence shared
    safely."""
    m = message.copy()
    if m.properties is not None:
        m.properties = copy.deepcopy(m.properties)
    if m.user_properties is not None:
        m.user_properties = [(k, v) for k, v in m.user_properties]
    if not isinstance(m.payload, bytes):
        m.payload = bytes(m.payload)
    if m.correlation_data is not None and not isinstance(m.correlation_data, bytes):
        m.correlation_data = bytes(m.correlation_data)
    return m


class MemoryBrokerStore(BrokerStore):
    """Broker state in process memory. Not durable; ``sync()`` is immediate.

    Offline queues are ``OrderedDict``s keyed by sequence number, so that
    ``drop_oldest`` and removal by sequence are O(1) and draining a long queue
    does not degrade as it would with a plain dict's deleted slots.
    """

    name = "memory"

    def __init__(self, options: StorageOptions | None = None) -> None:
        super().__init__(options if options is not None else StorageOptions(data_dir=""))
        self._sessions: dict[str, dict[str, Any]] = {}
        self._subscriptions: dict[str, dict[str, dict[str, Any]]] = {}
        self._retained: dict[str, Message] = {}
        self._wills: dict[str, tuple[Message, float]] = {}
        self._queues: dict[str, OrderedDict[int, Message]] = {}
        self._next_seq: dict[str, int] = {}
        self._inflight: dict[str, dict[int, dict[str, Any]]] = {}

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def sync(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self._sessions),
            "subscriptions": sum(len(s) for s in self._subscriptions.values()),
            "retained": len(self._retained),
            "wills": len(self._wills),
            "queued": sum(len(q) for q in self._queues.values()),
            "inflight": sum(len(i) for i in self._inflight.values()),
        }

    # --- sessions ---------------------------------------------------------------

    def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        self._sessions[client_id] = copy_record(record, "session record")

    async def load_session(self, client_id: str) -> dict[str, Any] | None:
        record = self._sessions.get(client_id)
        return None if record is None else copy_record(record)

    def delete_session(self, client_id: str) -> None:
        self._sessions.pop(client_id, None)
        self._subscriptions.pop(client_id, None)
        self._queues.pop(client_id, None)
        self._next_seq.pop(client_id, None)
        self._inflight.pop(client_id, None)

    async def list_sessions(self) -> list[str]:
        return list(self._sessions)

    # --- subscriptions ----------------------------------------------------------

    def save_subscription(self, client_id: str, topic_filter: str, options: dict[str, Any]) -> None:
        subs = self._subscriptions.setdefault(client_id, {})
        subs[topic_filter] = copy_record(options, "subscription options")

    def delete_subscription(self, client_id: str, topic_filter: str) -> None:
        subs = self._subscriptions.get(client_id)
        if subs is not None:
            subs.pop(topic_filter, None)
            if not subs:
                del self._subscriptions[client_id]

    async def load_subscriptions(self, client_id: str) -> dict[str, dict[str, Any]]:
        subs = self._subscriptions.get(client_id)
        return {} if subs is None else copy_record(subs)

    # --- retained messages ------------------------------------------------------

    def save_retained(self, message: Message) -> None:
        self._retained[message.topic] = copy_message(message)

    def delete_retained(self, topic: str) -> None:
        self._retained.pop(topic, None)

    async def load_retained(self) -> list[Message]:
        return [copy_message(m) for m in self._retained.values()]

    # --- wills ------------------------------------------------------------------

    def save_will(self, client_id: str, message: Message, publish_at: float) -> None:
        self._wills[client_id] = (copy_message(message), float(publish_at))

    def delete_will(self, client_id: str) -> None:
        self._wills.pop(client_id, None)

    async def load_wills(self) -> list[tuple[str, Message, float]]:
        return [(cid, copy_message(m), at) for cid, (m, at) in self._wills.items()]

    # --- offline queues ---------------------------------------------------------

    def enqueue(self, client_id: str, message: Message) -> int:
        seq = self._next_seq.get(client_id, 0)
        self._next_seq[client_id] = seq + 1
        queue = self._queues.get(client_id)
        if queue is None:
            queue = self._queues[client_id] = OrderedDict()
        queue[seq] = copy_message(message)
        return seq

    async def queued(self, client_id: str, limit: int | None = None) -> list[tuple[int, Message]]:
        queue = self._queues.get(client_id)
        if not queue:
            return []
        items = queue.items() if limit is None else islice(queue.items(), max(0, limit))
        return [(seq, copy_message(m)) for seq, m in items]

    def remove_queued(self, client_id: str, seqs: Iterable[int]) -> None:
        queue = self._queues.get(client_id)
        if queue is None:
            return
        for seq in seqs:
            queue.pop(seq, None)

    def queue_length(self, client_id: str) -> int:
        queue = self._queues.get(client_id)
        return 0 if queue is None else len(queue)

    def drop_oldest(self, client_id: str) -> Message | None:
        queue = self._queues.get(client_id)
        if not queue:
            return None
        # The stored snapshot is no longer referenced by the store: hand it over.
        return queue.popitem(last=False)[1]

    # --- in-flight QoS state ----------------------------------------------------

    def save_inflight(self, client_id: str, packet_id: int, record: dict[str, Any]) -> None:
        inflight = self._inflight.setdefault(client_id, {})
        inflight[int(packet_id)] = copy_record(record, "in-flight record")

    def delete_inflight(self, client_id: str, packet_id: int) -> None:
        inflight = self._inflight.get(client_id)
        if inflight is not None:
            inflight.pop(packet_id, None)
            if not inflight:
                del self._inflight[client_id]

    async def load_inflight(self, client_id: str) -> dict[int, dict[str, Any]]:
        inflight = self._inflight.get(client_id)
        if inflight is None:
            return {}
        return {pid: copy_record(rec) for pid, rec in inflight.items()}
