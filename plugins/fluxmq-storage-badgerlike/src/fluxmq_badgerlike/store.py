"""``BadgerlikeBrokerStore``: broker state on the badgerlike engine.

Key layout (one engine under ``<data_dir>/kv/``; ``<c>`` is the client id with
``%`` and ``/`` percent-escaped so that it is always exactly one path level)::

    s/<c>                    session record
    sub/<c>/<filter>         subscription options
    r/<topic>                retained message
    w/<c>                    will: [message, publish_at]
    q/<c>/<seq:020d>         offline-queue message
    i/<c>/<packet id>        in-flight record

Values are encoded with :mod:`fluxmq_badgerlike.codec`. Only keys live in memory,
in per-client structures rebuilt from the engine's index at open (sessions, the
filters, the queue's sequence numbers in order, the packet ids), so counters such
as ``queue_length`` are O(1) and a read touches only the client's own records;
values are read back from the value log and CRC-checked.

What it deliberately does not do: any MQTT rule (bounds, expiry, will delays);
the session layer decides, the store records.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from itertools import islice
from typing import Any

from fluxmq_badgerlike.codec import decode_message, decode_value, encode_message, encode_value
from fluxmq_badgerlike.engine import Engine, EngineOptions
from fluxmq_badgerlike.metrics import engine_metric_specs
from fluxmq_core.message import Message
from fluxmq_core.metrics import MetricSpec
from fluxmq_core.storage.base import BrokerStore, StorageOptions


def esc(part: str) -> str:
    """One key level: ``%`` and ``/`` escaped, so ``a/b`` cannot split a key."""
    if "%" in part:
        part = part.replace("%", "%25")
    if "/" in part:
        part = part.replace("/", "%2F")
    return part


def unesc(part: str) -> str:
    if "%" not in part:
        return part
    return part.replace("%2F", "/").replace("%25", "%")


class BadgerlikeBrokerStore(BrokerStore):
    """Durable broker state; see the module docstring for the layout."""

    name = "badgerlike"
    durable = True

    def __init__(self, options: StorageOptions) -> None:
        super().__init__(options)
        self.engine = Engine(
            os.path.join(options.data_dir, "kv"),
            options.fsync,
            EngineOptions.from_extra(options.extra),
        )
        self._sessions: set[str] = set()
        self._subs: dict[str, set[str]] = {}
        self._retained: set[str] = set()
        self._wills: set[str] = set()
        self._queues: dict[str, OrderedDict[int, None]] = {}
        self._next_seq: dict[str, int] = {}
        self._inflight: dict[str, set[int]] = {}

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        await self.engine.open()
        for key in self.engine.keys():
            kind, _, rest = key.partition("/")
            if kind == "s":
                self._sessions.add(unesc(rest))
            elif kind == "sub":
                c, _, flt = rest.partition("/")
                self._subs.setdefault(unesc(c), set()).add(flt)
            elif kind == "r":
                self._retained.add(rest)
            elif kind == "w":
                self._wills.add(unesc(rest))
            elif kind == "q":
                c, _, seq = rest.partition("/")
                self._queues.setdefault(unesc(c), OrderedDict())[int(seq)] = None
            elif kind == "i":
                c, _, pid = rest.partition("/")
                self._inflight.setdefault(unesc(c), set()).add(int(pid))
        for c, q in self._queues.items():
            ordered = OrderedDict.fromkeys(sorted(q))
            self._queues[c] = ordered
            self._next_seq[c] = next(reversed(ordered)) + 1 if ordered else 0

    async def close(self) -> None:
        await self.engine.close()

    async def sync(self) -> None:
        await self.engine.sync()

    async def gc(self, max_segments: int = 1) -> dict[str, int]:
        """Run value-log GC now (it also runs in the background)."""
        return await self.engine.gc(max_segments)

    def stats(self) -> dict[str, int]:
        out = {
            "sessions": len(self._sessions),
            "subscriptions": sum(len(s) for s in self._subs.values()),
            "retained": len(self._retained),
            "wills": len(self._wills),
            "queued": sum(len(q) for q in self._queues.values()),
            "inflight": sum(len(i) for i in self._inflight.values()),
        }
        out.update({f"engine_{k}": v for k, v in self.engine.stats().items()})
        w = self.engine.writer
        out.update(fsyncs=w.fsyncs, flushes=w.flushes)
        return out

    def metric_specs(self, store: str) -> list[MetricSpec]:
        """The engine's numbers as metrics (see :mod:`fluxmq_core.metrics`),
        labelled ``store``: fsync durations, value-log size and GC."""
        return engine_metric_specs(self.engine, self.engine.writer, store)

    def _get(self, key: str) -> Any:
        raw = self.engine.get(key)
        return None if raw is None else decode_value(raw)

    # --- sessions ---------------------------------------------------------------

    def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        self.engine.put("s/" + esc(client_id), encode_value(record, "session record"))
        self._sessions.add(client_id)

    async def load_session(self, client_id: str) -> dict[str, Any] | None:
        return self._get("s/" + esc(client_id))

    def delete_session(self, client_id: str) -> None:
        c = esc(client_id)
        eng = self.engine
        eng.delete("s/" + c)
        self._sessions.discard(client_id)
        for flt in self._subs.pop(client_id, ()):
            eng.delete(f"sub/{c}/{flt}")
        for seq in self._queues.pop(client_id, ()):
            eng.delete(f"q/{c}/{seq:020d}")
        self._next_seq.pop(client_id, None)
        for pid in self._inflight.pop(client_id, ()):
            eng.delete(f"i/{c}/{pid}")

    async def list_sessions(self) -> list[str]:
        return list(self._sessions)

    # --- subscriptions ----------------------------------------------------------

    def save_subscription(self, client_id: str, topic_filter: str, options: dict[str, Any]) -> None:
        value = encode_value(options, "subscription options")
        self.engine.put(f"sub/{esc(client_id)}/{topic_filter}", value)
        self._subs.setdefault(client_id, set()).add(topic_filter)

    def delete_subscription(self, client_id: str, topic_filter: str) -> None:
        subs = self._subs.get(client_id)
        if subs is None or topic_filter not in subs:
            return
        subs.discard(topic_filter)
        if not subs:
            del self._subs[client_id]
        self.engine.delete(f"sub/{esc(client_id)}/{topic_filter}")

    async def load_subscriptions(self, client_id: str) -> dict[str, dict[str, Any]]:
        c = esc(client_id)
        return {f: self._get(f"sub/{c}/{f}") for f in self._subs.get(client_id, ())}

    # --- retained messages ------------------------------------------------------

    def save_retained(self, message: Message) -> None:
        self.engine.put("r/" + message.topic, encode_message(message))
        self._retained.add(message.topic)

    def delete_retained(self, topic: str) -> None:
        if topic in self._retained:
            self._retained.discard(topic)
            self.engine.delete("r/" + topic)

    async def load_retained(self) -> list[Message]:
        get = self.engine.get
        out = []
        for topic in self._retained:
            raw = get("r/" + topic)
            if raw is not None:
                out.append(decode_message(raw))
        return out

    # --- wills ------------------------------------------------------------------

    def save_will(self, client_id: str, message: Message, publish_at: float) -> None:
        value = encode_value([encode_message(message), float(publish_at)])
        self.engine.put("w/" + esc(client_id), value)
        self._wills.add(client_id)

    def delete_will(self, client_id: str) -> None:
        if client_id in self._wills:
            self._wills.discard(client_id)
            self.engine.delete("w/" + esc(client_id))

    async def load_wills(self) -> list[tuple[str, Message, float]]:
        out = []
        for cid in self._wills:
            value = self._get("w/" + esc(cid))
            if value is not None:
                out.append((cid, decode_message(value[0]), value[1]))
        return out

    # --- offline queues ---------------------------------------------------------

    def enqueue(self, client_id: str, message: Message) -> int:
        seq = self._next_seq.get(client_id, 0)
        self.engine.put(f"q/{esc(client_id)}/{seq:020d}", encode_message(message))
        self._next_seq[client_id] = seq + 1
        queue = self._queues.get(client_id)
        if queue is None:
            queue = self._queues[client_id] = OrderedDict()
        queue[seq] = None
        return seq

    async def queued(self, client_id: str, limit: int | None = None) -> list[tuple[int, Message]]:
        queue = self._queues.get(client_id)
        if not queue:
            return []
        seqs = list(queue if limit is None else islice(queue, max(0, limit)))
        c = esc(client_id)
        get = self.engine.get
        # Every seq in the in-memory queue has its record (both change together).
        return [(seq, decode_message(get(f"q/{c}/{seq:020d}"))) for seq in seqs]

    def remove_queued(self, client_id: str, seqs: Iterable[int]) -> None:
        queue = self._queues.get(client_id)
        if queue is None:
            return
        c = esc(client_id)
        for seq in seqs:
            if queue.pop(seq, 0) is None:
                self.engine.delete(f"q/{c}/{seq:020d}")

    def queue_length(self, client_id: str) -> int:
        queue = self._queues.get(client_id)
        return 0 if queue is None else len(queue)

    def drop_oldest(self, client_id: str) -> Message | None:
        queue = self._queues.get(client_id)
        if not queue:
            return None
        seq, _ = queue.popitem(last=False)
        key = f"q/{esc(client_id)}/{seq:020d}"
        raw = self.engine.get(key)
        self.engine.delete(key)
        return None if raw is None else decode_message(raw)

    # --- in-flight QoS state ----------------------------------------------------

    def save_inflight(self, client_id: str, packet_id: int, record: dict[str, Any]) -> None:
        pid = int(packet_id)
        self.engine.put(f"i/{esc(client_id)}/{pid}", encode_value(record, "in-flight record"))
        self._inflight.setdefault(client_id, set()).add(pid)

    def delete_inflight(self, client_id: str, packet_id: int) -> None:
        pids = self._inflight.get(client_id)
        if pids is None or packet_id not in pids:
            return
        pids.discard(packet_id)
        if not pids:
            del self._inflight[client_id]
        self.engine.delete(f"i/{esc(client_id)}/{int(packet_id)}")

    async def load_inflight(self, client_id: str) -> dict[int, dict[str, Any]]:
        c = esc(client_id)
        return {pid: self._get(f"i/{c}/{pid}") for pid in self._inflight.get(client_id, ())}
