"""Exchanges, bindings and routing, shared by every AMQP connection of the broker.

:class:`Topology` holds the exchanges (direct, fanout, topic, headers, the default
exchange and the ``amq.*`` set) and their bindings to queues and to other exchanges,
routes a publish to the set of queue names it reaches, and keeps durable exchanges
and bindings in the core BrokerStore so that they survive a restart.

Storage layout (no core change): everything lives under the reserved client id
``$amqp091`` as "subscription" records of the BrokerStore, one per entity, keyed
``x:<exchange>``, ``b:<binding key>`` and ``q:<queue>`` (AMQP queue metadata; the
queue itself is a core queue in the QueueLog). Records are plain dicts. The session
record of ``$amqp091`` carries ``protocol = "amqp091"`` so that no other protocol
adopts it.

The bridge to MQTT topics: the exchange named ``[amqp091] topic_exchange``
(``amq.topic``) is also the core router. An AMQP publish to it is passed to
``context.publish`` with the routing key mapped to a topic (``a.b`` -> ``a/b``),
and every binding on it subscribes one internal subscriber per destination to the
router with the pattern mapped to a filter (``a.*`` -> ``a/+``), so that publishes
from MQTT (or any protocol) reach the bound queues. Publishes that came from AMQP
are routed by the exchange itself and skipped by those subscribers (and counted, so
that ``mandatory`` still sees whether anyone else got the message).

What it does not hold: queue semantics (``queues.py`` maps AMQP queues onto the
core queue manager) and anything per connection or channel.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxmq_amqp091.codec import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    AMQPError,
)
from fluxmq_amqp091.props import PROTOCOL
from fluxmq_core.router.topics import TopicError, amqp_pattern_to_filter, topic_to_amqp_routing_key
from fluxmq_core.router.types import DEFAULT_OPTIONS

if TYPE_CHECKING:
    from fluxmq_core.message import Message

log = logging.getLogger("fluxmq.amqp091")

STORE_ID = "$amqp091"
EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
DEFAULT_EXCHANGES = {
    "": "direct",
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}
#: Exchange names: anything RabbitMQ takes, but no control characters (the
#: stored binding keys are separated by NUL).
_NAME = re.compile(r"^[^\x00-\x1f\x7f]*$")
_CACHE_MAX = 4096

#: A binding destination: ("queue" | "exchange", name).
Dest = tuple[str, str]


def plain(value: Any) -> Any:
    """A field-table value in a form the store can hold and that compares stably
    (decimals and timestamps become strings, nested tables dicts)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


@dataclass(eq=False)
class Binding:
    source: str
    kind: str  # "queue" | "exchange"
    dest: str
    routing_key: str
    arguments: dict[str, Any]
    words: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        args = repr(sorted(self.arguments.items())) if self.arguments else ""
        return f"{self.source}\x00{self.kind}\x00{self.dest}\x00{self.routing_key}\x00{args}"


@dataclass(eq=False)
class Exchange:
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    direct: dict[str, dict[Dest, int]] = field(default_factory=dict)
    cache: dict[str, tuple[Dest, ...]] = field(default_factory=dict)

    def add(self, b: Binding) -> None:
        self.bindings[b.key] = b
        dest = (b.kind, b.dest)
        if self.type == "direct":
            slot = self.direct.setdefault(b.routing_key, {})
            slot[dest] = slot.get(dest, 0) + 1
        elif self.type == "topic":
            b.words = tuple(b.routing_key.split("."))
        self.cache.clear()

    def remove(self, b: Binding) -> None:
        self.bindings.pop(b.key, None)
        if self.type == "direct":
            slot = self.direct.get(b.routing_key)
            if slot is not None:
                dest = (b.kind, b.dest)
                n = slot.get(dest, 0) - 1
                if n <= 0:
                    slot.pop(dest, None)
                else:
                    slot[dest] = n
                if not slot:
                    del self.direct[b.routing_key]
        self.cache.clear()

    def route(
        self, routing_key: str, headers: dict[str, Any] | None
    ) -> tuple[Dest, ...] | list[Dest]:
        t = self.type
        if t == "direct":
            slot = self.direct.get(routing_key)
            return tuple(slot) if slot else ()
        if t == "fanout":
            return list(dict.fromkeys((b.kind, b.dest) for b in self.bindings.values()))
        if t == "topic":
            hit = self.cache.get(routing_key)
            if hit is None:
                key = tuple(routing_key.split("."))
                hit = tuple(
                    dict.fromkeys(
                        (b.kind, b.dest)
                        for b in self.bindings.values()
                        if b.words is not None and topic_matches(b.words, key)
                    )
                )
                if len(self.cache) >= _CACHE_MAX:
                    self.cache.clear()
                self.cache[routing_key] = hit
            return hit
        # headers
        return list(
            dict.fromkeys(
                (b.kind, b.dest)
                for b in self.bindings.values()
                if headers_match(b.arguments, headers)
            )
        )

    def record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "internal": self.internal,
            "arguments": self.arguments,
        }


def topic_matches(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """AMQP topic matching on words: ``*`` is one word, ``#`` zero or more."""
    # positions in the key reachable after consuming pattern[:i]
    states = {0}
    for w in pattern:
        nxt: set[int] = set()
        if w == "#":
            low = min(states)
            nxt.update(range(low, len(key) + 1))
        else:
            for j in states:
                if j < len(key) and (w == "*" or key[j] == w):
                    nxt.add(j + 1)
        if not nxt:
            return False
        states = nxt
    return len(key) in states


def headers_match(args: dict[str, Any], headers: dict[str, Any] | None) -> bool:
    mode = str(args.get("x-match", "all"))
    headers = headers or {}
    keys = (
        [k for k in args if not k.startswith("x-")]
        if not mode.endswith("-with-x")
        else [k for k in args if k != "x-match"]
    )
    if not keys:
        return mode.startswith("all")

    def one(k: str) -> bool:
        if k not in headers:
            return False
        want = args[k]
        return want is None or plain(headers[k]) == want

    if mode.startswith("any"):
        return any(one(k) for k in keys)
    return all(one(k) for k in keys)


_AMQP_TYPES = {bool: "bool", int: "signedint", float: "double", str: "longstr", bytes: "longstr"}


def _show(value: Any) -> str:
    """A value as RabbitMQ names it in an inequivalent-arg error."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    kind = _AMQP_TYPES.get(type(value), "table")
    return f"the value '{value}' of type '{kind}'"


def _assert_equivalent(
    ex: Exchange, type_: str, durable: bool, auto_delete: bool, internal: bool, args: dict
) -> None:
    """RabbitMQ's equivalence check of a redeclared exchange: the type and flags, and
    of the arguments only ``alternate-exchange`` (406 naming the first difference)."""
    name = ex.name
    for field_name, got, have in (
        ("type", type_, ex.type),
        ("durable", durable, ex.durable),
        ("auto_delete", auto_delete, ex.auto_delete),
        ("internal", internal, ex.internal),
    ):
        if got != have:
            shown = (f"'{got}'", f"'{have}'") if field_name == "type" else (_show(got), _show(have))
            raise AMQPError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{field_name}' for exchange '{name}' in vhost '/': "
                f"received {shown[0]} but current is {shown[1]}",
                40,
                10,
            )
    got_ae = args.get("alternate-exchange")
    have_ae = ex.arguments.get("alternate-exchange")
    if got_ae != have_ae:
        raise AMQPError(
            PRECONDITION_FAILED,
            f"inequivalent arg 'alternate-exchange' for exchange '{name}' in vhost '/': "
            f"received {_show(got_ae)} but current is {_show(have_ae)}",
            40,
            10,
        )


def _check_x_match(arguments: dict[str, Any] | None, ids: tuple[int, int]) -> None:
    """A headers binding's ``x-match`` must be one of RabbitMQ's four values (406)."""
    if not arguments or "x-match" not in arguments:
        return
    v = arguments["x-match"]
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        kind = _AMQP_TYPES.get(type(v), "table")
        raise AMQPError(
            PRECONDITION_FAILED,
            f"Invalid x-match field type {kind} (value {v}); expected longstr",
            *ids,
        )
    if v not in ("all", "any", "all-with-x", "any-with-x"):
        raise AMQPError(
            PRECONDITION_FAILED,
            f'Invalid x-match field value <<"{v}">>; expected all, any, all-with-x, or any-with-x',
            *ids,
        )


class BridgeSubscriber:
    """Router subscriber for one destination bound to the bridged topic exchange."""

    __slots__ = ("dest", "filters", "topology", "client_id", "protocol")

    def __init__(self, topology: Topology, dest: Dest) -> None:
        self.topology = topology
        self.dest = dest
        self.filters: dict[str, int] = {}
        self.client_id = f"{STORE_ID}:{dest[0]}:{dest[1]}"
        self.protocol = PROTOCOL

    def deliver(self, message: Message, delivery: Any) -> None:
        topo = self.topology
        if (
            message.origin_protocol == PROTOCOL
            and message.properties
            and "amqp" in message.properties
        ):
            topo.suppressed += 1  # routed by the exchange itself
            return
        try:
            rk = topic_to_amqp_routing_key(message.topic)
        except TopicError:
            return
        extra = dict(message.properties) if message.properties else {}
        extra["exchange"] = topo.bridge
        extra["routing_key"] = rk
        msg = message.copy(properties=extra)
        if self.dest[0] == "queue":
            topo.deliver_to_queues([self.dest[1]], msg)
        else:
            names = topo.route_exchange(self.dest[1], rk, None)
            topo.deliver_to_queues(names, msg)


class Topology:
    """The exchanges and bindings of the broker (one per broker)."""

    def __init__(self, context: Any, bridge: str = "amq.topic") -> None:
        self.context = context
        self.store = context.store
        self.bridge = bridge
        self.exchanges: dict[str, Exchange] = {}
        self.bridges: dict[Dest, BridgeSubscriber] = {}
        self.suppressed = 0
        #: set by queues.py: append a message to queue names (bridge deliveries).
        self.deliver_to_queues: Any = lambda names, msg: None
        #: set by queues.py: is this a durable queue? (for binding durability)
        self.queue_durable: Any = lambda name: True
        for name, t in DEFAULT_EXCHANGES.items():
            self.exchanges[name] = Exchange(name, t, durable=True)

    # --- persistence -------------------------------------------------------------------

    async def load(self) -> dict[str, dict[str, Any]]:
        """Restore durable exchanges and bindings; returns the stored queue records
        (``q:<name>`` without the prefix) for ``queues.py``."""
        records = await self.store.load_subscriptions(STORE_ID)
        queues: dict[str, dict[str, Any]] = {}
        bindings: list[dict[str, Any]] = []
        for key, rec in records.items():
            if key.startswith("x:"):
                name = key[2:]
                if name in DEFAULT_EXCHANGES:
                    continue
                self.exchanges[name] = Exchange(
                    name,
                    rec["type"],
                    True,
                    bool(rec.get("auto_delete")),
                    bool(rec.get("internal")),
                    dict(rec.get("arguments") or {}),
                )
            elif key.startswith("b:"):
                bindings.append(rec)
            elif key.startswith("q:"):
                queues[key[2:]] = rec
        for rec in bindings:
            src = self.exchanges.get(rec["source"])
            if src is None:
                continue
            b = Binding(
                rec["source"],
                rec["kind"],
                rec["dest"],
                rec["routing_key"],
                dict(rec.get("arguments") or {}),
            )
            self._attach(src, b)
        self.store.save_session(STORE_ID, {"protocol": PROTOCOL, "kind": "topology"})
        return queues

    def _save(self, key: str, record: dict[str, Any]) -> None:
        self.store.save_subscription(STORE_ID, key, record)

    def _forget(self, key: str) -> None:
        self.store.delete_subscription(STORE_ID, key)

    def save_queue(self, name: str, record: dict[str, Any]) -> None:
        self._save("q:" + name, record)

    def forget_queue(self, name: str) -> None:
        self._forget("q:" + name)

    # --- exchanges -----------------------------------------------------------------------

    def get(self, name: str) -> Exchange:
        ex = self.exchanges.get(name)
        if ex is None:
            raise AMQPError(NOT_FOUND, f"no exchange '{name}' in vhost '/'", 40, 10)
        return ex

    def declare(
        self,
        name: str,
        type_: str,
        *,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict[str, Any],
    ) -> Exchange:
        ids = (40, 10)
        if passive:
            ex = self.exchanges.get(name)
            if ex is None:
                raise AMQPError(NOT_FOUND, f"no exchange '{name}' in vhost '/'", *ids)
            return ex
        if not name:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange", *ids)
        if not _NAME.match(name) or len(name) > 255:
            raise AMQPError(PRECONDITION_FAILED, f"invalid exchange name '{name}'", *ids)
        if type_ not in EXCHANGE_TYPES:
            # a channel error, as current RabbitMQ (3.10 and older: connection 503)
            raise AMQPError(PRECONDITION_FAILED, f"unknown exchange type '{type_}'", *ids)
        args = plain(arguments or {})
        ex = self.exchanges.get(name)
        if ex is not None:
            _assert_equivalent(ex, type_, durable, auto_delete, internal, args)
            return ex
        if name.startswith("amq."):
            raise AMQPError(
                ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'", *ids
            )
        ex = Exchange(name, type_, durable, auto_delete, internal, args)
        self.exchanges[name] = ex
        if durable:
            self._save("x:" + name, ex.record())
        return ex

    def delete(self, name: str, if_unused: bool) -> None:
        ids = (40, 20)
        if not name:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange", *ids)
        if name.startswith("amq.") and name in self.exchanges:
            raise AMQPError(
                ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '/' not allowed",
                *ids,
            )
        ex = self.exchanges.get(name)
        if ex is None:
            return  # RabbitMQ: deleting a missing exchange is OK
        if if_unused and ex.bindings:
            raise AMQPError(PRECONDITION_FAILED, f"exchange '{name}' in vhost '/' in use", *ids)
        self._drop_exchange(ex)

    def _drop_exchange(self, ex: Exchange) -> None:
        for b in list(ex.bindings.values()):
            self._detach(ex, b)
        # bindings where it is the destination
        for other in list(self.exchanges.values()):
            for b in [
                b for b in other.bindings.values() if b.kind == "exchange" and b.dest == ex.name
            ]:
                self._detach(other, b)
        self.exchanges.pop(ex.name, None)
        if ex.durable:
            self._forget("x:" + ex.name)

    # --- bindings ------------------------------------------------------------------------

    def bind(
        self,
        source: str,
        kind: str,
        dest: str,
        routing_key: str,
        arguments: dict[str, Any],
        ids: tuple[int, int],
    ) -> None:
        src = self.exchanges.get(source)
        if src is None:
            raise AMQPError(NOT_FOUND, f"no exchange '{source}' in vhost '/'", *ids)
        if not source:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange", *ids)
        if kind == "exchange" and dest not in self.exchanges:
            raise AMQPError(NOT_FOUND, f"no exchange '{dest}' in vhost '/'", *ids)
        if kind == "exchange" and not dest:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange", *ids)
        if src.type == "headers":
            _check_x_match(arguments, ids)
        b = Binding(source, kind, dest, routing_key, plain(arguments or {}))
        if b.key in src.bindings:
            return
        self._attach(src, b)
        if self._durable(b):
            self._save(
                "b:" + b.key,
                {
                    "source": source,
                    "kind": kind,
                    "dest": dest,
                    "routing_key": routing_key,
                    "arguments": b.arguments,
                },
            )

    def _durable(self, b: Binding) -> bool:
        src = self.exchanges.get(b.source)
        if src is None or not src.durable:
            return False
        if b.kind == "exchange":
            d = self.exchanges.get(b.dest)
            return d is not None and d.durable
        return bool(self.queue_durable(b.dest))

    def unbind(
        self,
        source: str,
        kind: str,
        dest: str,
        routing_key: str,
        arguments: dict[str, Any],
        ids: tuple[int, int],
    ) -> None:
        if not source or (kind == "exchange" and not dest):
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange", *ids)
        src = self.exchanges.get(source)
        if src is None:
            return  # RabbitMQ: unbinding from a missing exchange is OK too
        b = src.bindings.get(Binding(source, kind, dest, routing_key, plain(arguments or {})).key)
        if b is None:
            return  # RabbitMQ: unbinding what is not bound is OK
        self._detach(src, b)

    def _attach(self, src: Exchange, b: Binding) -> None:
        src.add(b)
        if src.name == self.bridge and src.type == "topic":
            try:
                filt = amqp_pattern_to_filter(b.routing_key)
            except TopicError as exc:
                log.info(
                    "binding %r on %s is not bridged to MQTT topics: %s",
                    b.routing_key,
                    src.name,
                    exc,
                )
                return
            dest = (b.kind, b.dest)
            sub = self.bridges.get(dest)
            if sub is None:
                sub = self.bridges[dest] = BridgeSubscriber(self, dest)
            n = sub.filters.get(filt, 0)
            sub.filters[filt] = n + 1
            if n == 0:
                self.context.router.subscribe(sub, filt, DEFAULT_OPTIONS)

    def _detach(self, src: Exchange, b: Binding) -> None:
        src.remove(b)
        if self._durable(b) or b.kind == "queue":
            self._forget("b:" + b.key)
        if src.name == self.bridge and src.type == "topic":
            sub = self.bridges.get((b.kind, b.dest))
            if sub is not None:
                try:
                    filt = amqp_pattern_to_filter(b.routing_key)
                except TopicError:
                    filt = None
                if filt is not None and filt in sub.filters:
                    sub.filters[filt] -= 1
                    if sub.filters[filt] <= 0:
                        del sub.filters[filt]
                        self.context.router.unsubscribe(sub, filt)
                if not sub.filters:
                    self.bridges.pop((b.kind, b.dest), None)
        if src.auto_delete and not src.bindings and src.name in self.exchanges:
            self._drop_exchange(src)

    def unbind_queue(self, queue: str) -> None:
        """A queue went away: drop every binding to it."""
        for ex in list(self.exchanges.values()):
            for b in [b for b in ex.bindings.values() if b.kind == "queue" and b.dest == queue]:
                self._detach(ex, b)

    def queue_bindings(self, queue: str) -> int:
        return sum(
            1
            for ex in self.exchanges.values()
            for b in ex.bindings.values()
            if b.kind == "queue" and b.dest == queue
        )

    # --- routing -------------------------------------------------------------------------

    def route(
        self, ex: Exchange, routing_key: str, headers: dict[str, Any] | None, queue_exists: Any
    ) -> list[str]:
        """Queue names a publish to ``ex`` reaches (exchange-to-exchange followed,
        each queue once)."""
        if not ex.name:
            return [routing_key] if queue_exists(routing_key) else []
        dests = ex.route(routing_key, headers)
        if not dests:
            return []
        out: dict[str, None] = {}
        seen = {ex.name}
        stack = list(dests)
        while stack:
            kind, name = stack.pop()
            if kind == "queue":
                out[name] = None
            elif name not in seen:
                seen.add(name)
                nxt = self.exchanges.get(name)
                if nxt is not None:
                    stack.extend(nxt.route(routing_key, headers))
        return list(out)

    def route_exchange(
        self, name: str, routing_key: str, headers: dict[str, Any] | None
    ) -> list[str]:
        ex = self.exchanges.get(name)
        if ex is None:
            return []
        return self.route(
            ex, routing_key, headers, lambda n: self.context.queues.get(n) is not None
        )
