"""AMQP queues as core queue-manager queues.

An AMQP queue *is* a core queue of the same name (so MQTT reaches it at
``$queue/<name>``); this module keeps only what AMQP adds: durable / exclusive /
auto-delete flags, the declare arguments (for RabbitMQ's equivalence check), the
owner of an exclusive queue, its consumers (for broker-initiated cancel and
auto-delete), ``x-expires`` and the dead-letter exchange forwarder.

Arguments become :class:`~fluxmq_core.queues.config.QueueConfig` keys:

=========================  ==============================================================
``x-queue-type``           ``classic`` (also ``quorum``) -> classic, ``stream`` -> stream
``x-message-ttl`` (ms)     ``message_ttl``
``x-max-length``           ``max_depth`` (stream: ``retention_messages``)
``x-max-length-bytes``     ``retention_bytes`` (applied by the sweep)
``x-overflow``             ``drop-head`` -> ``drop-oldest``; ``reject-publish[-dlx]`` -> ``reject``;
                           with a DLX, ``drop-head`` and ``reject-publish-dlx`` set ``dlq_overflow``
``x-max-age`` (stream)     ``retention_age`` (``7D``, ``12h``, ``30m``, ``10s``)
``x-delivery-limit``       ``max_deliveries`` (otherwise unlimited, as RabbitMQ)
``x-dead-letter-exchange`` ``dlq = true``, ``dlq_expired = true`` and a forwarder from
                           ``$dlq/<name>`` to the exchange (adds ``x-death``)
``x-expires`` (ms)         deleted after that long without consumers or use
``x-max-priority``         ``max_priority`` (1-255; 0 = none): higher ``priority`` first
=========================  ==============================================================

Every AMQP queue gets ``visibility_timeout = [amqp091] consumer_timeout`` so an
unacknowledged delivery is not taken back early. Durable queues append with
``durability = "sync"`` (confirms wait for the disk); non-durable queues with
``async`` and are deleted at the next start.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxmq_amqp091.codec import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    AMQPError,
)
from fluxmq_amqp091.props import PROTOCOL, from_message
from fluxmq_amqp091.topology import STORE_ID, Topology, plain
from fluxmq_core.queues import DLQ_PREFIX, QueueError

if TYPE_CHECKING:
    from fluxmq_core.message import Message

log = logging.getLogger("fluxmq.amqp091")

#: The consumer group of AMQP consumers that name none (``x-consumer-group``).
DEFAULT_GROUP = "default"
DLX_GROUP = "$amqp091-dlx"
_AGE_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(eq=False)
class AMQPQueue:
    name: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: dict[str, Any]
    owner: Any = None  # the Connection of an exclusive queue
    consumers: set[Any] = field(default_factory=set)
    had_consumers: bool = False
    last_used: float = 0.0
    expires: float = 0.0  # seconds; 0: never
    dlx: str | None = None
    dlrk: str | None = None
    forwarder: Any = None

    def record(self) -> dict[str, Any]:
        return {
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "arguments": self.arguments,
        }


def _invalid(name: str, key: str, detail: str) -> AMQPError:
    """A 406 for a bad declare argument, worded as RabbitMQ words it."""
    return AMQPError(
        PRECONDITION_FAILED,
        f"invalid arg '{key}' for queue '{name}' in vhost '/': {detail}",
        50,
        10,
    )


def _int_arg(args: dict[str, Any], key: str, minimum: int = 0, name: str = "") -> int | None:
    if key not in args:
        return None
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise _invalid(name, key, f'"expected integer, got {_amqp_type(v)}"')
    if v < minimum:  # RabbitMQ shows the Erlang term
        raise _invalid(name, key, f"{{{'value_zero' if v == 0 else 'value_negative'},{v}}}")
    return v


def core_config(
    durable: bool, args: dict[str, Any], consumer_timeout: float, name: str = ""
) -> dict[str, Any]:
    """The core ``[queues.<name>]`` keys for an AMQP declaration (406 if invalid)."""
    qtype = str(args.get("x-queue-type", "classic"))
    if qtype not in ("classic", "quorum", "stream"):
        raise _invalid(name, "x-queue-type", f"\"unsupported queue type '{qtype}'\"")
    stream = qtype == "stream"
    cfg: dict[str, Any] = {
        "type": "stream" if stream else "classic",
        "durability": "sync" if durable else "async",
    }
    if not stream:
        cfg["visibility_timeout"] = consumer_timeout
        limit = _int_arg(args, "x-delivery-limit", 1, name)
        cfg["max_deliveries"] = limit or 0
        dlx_set = args.get("x-dead-letter-exchange") is not None
        cfg["dlq"] = dlx_set
        if dlx_set:
            cfg["dlq_expired"] = True
            if args.get("x-overflow") in ("drop-head", "reject-publish-dlx"):
                cfg["dlq_overflow"] = True
    ttl = _int_arg(args, "x-message-ttl", 0, name)
    if ttl is not None:
        cfg["message_ttl"] = max(ttl, 1) / 1000.0
    max_len = _int_arg(args, "x-max-length", 0, name)
    if max_len is not None:
        cfg["retention_messages" if stream else "max_depth"] = max_len
    max_bytes = _int_arg(args, "x-max-length-bytes", 0, name)
    if max_bytes is not None:
        cfg["retention_bytes"] = max_bytes
    overflow = args.get("x-overflow")
    if overflow is not None:
        if overflow == "drop-head":
            cfg["overflow"] = "drop-oldest"
        elif overflow in ("reject-publish", "reject-publish-dlx"):
            cfg["overflow"] = "reject"
        else:
            raise _invalid(name, "x-overflow", "invalid_overflow")
    age = args.get("x-max-age")
    if age is not None:
        text = str(age)
        unit = _AGE_UNITS.get(text[-1:])
        if not stream or unit is None or not text[:-1].isdigit():
            raise _invalid(name, "x-max-age", f"{age!r}")
        cfg["retention_age"] = float(int(text[:-1]) * unit)
    _int_arg(args, "x-expires", 1, name)
    prio = _int_arg(args, "x-max-priority", 0, name)
    if prio is not None:
        if prio > 255:
            raise _invalid(name, "x-max-priority", f"{{max_value_exceeded,{prio}}}")
        if prio and not stream:
            cfg["max_priority"] = prio
    dlx = args.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        raise AMQPError(
            PRECONDITION_FAILED,
            f"invalid type '{_amqp_type(dlx)}' for arg 'x-dead-letter-exchange' in queue "
            f"'{name}' in vhost '/'",
            50,
            10,
        )
    return cfg


def server_name() -> str:
    return "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


class DLXForwarder:
    """Consumes ``$dlq/<queue>`` and republishes to the queue's dead-letter exchange."""

    __slots__ = ("client_id", "handle", "protocol", "queues", "source")

    def __init__(self, queues: Queues, source: AMQPQueue) -> None:
        self.queues = queues
        self.source = source
        self.client_id = f"{STORE_ID}:dlx:{source.name}"
        self.protocol = PROTOCOL
        self.handle: Any = None

    def deliver(self, message: Message, delivery: Any) -> None:
        qs = self.queues
        props = dict(message.properties or {})
        mid = props.get("message-id")
        src = self.source
        old_exchange = str(props.get("exchange", ""))
        old_rk = str(props.get("routing_key", message.topic.replace("/", ".")))
        rk = src.dlrk if src.dlrk is not None else old_rk
        reason = AMQP_REASONS.get(str(props.get("_dlq_reason", "rejected")), "rejected")
        now = qs.context.clock()
        for k in [k for k in props if k.startswith("_dlq_")] + [
            "message-id",
            "group-id",
            "queue",
            "offset",
            "delivery-count",
        ]:
            props.pop(k, None)
        props["routing_key"] = rk
        props["exchange"] = src.dlx or ""
        raw = props.get("amqp")
        if raw is None:  # from another protocol: AMQP properties from its fields
            raw = from_message(message.copy(properties=None), now)
        props["amqp"] = add_death(raw, src.name, reason, old_exchange, [old_rk], now)
        msg = message.copy(properties=props, expires_at=None)
        ex = qs.topology.exchanges.get(src.dlx or "")
        names = [] if ex is None else qs.topology.route(ex, rk, None, qs.exists)
        futures = qs.append_all(names, msg)

        def settle(_f: Any = None) -> None:
            if all(f.done() for f in futures):
                try:
                    qs.core.ack(mid, DLX_GROUP)
                except QueueError:
                    pass

        if not futures:
            settle()
        for f in futures:
            f.add_done_callback(settle)


#: Core dead-letter reasons -> RabbitMQ's ``x-death`` reasons.
AMQP_REASONS = {
    "rejected": "rejected",
    "nack": "rejected",
    "expired": "expired",
    "maxlen": "maxlen",
    "max-deliveries": "delivery_limit",
}


def add_death(
    raw: bytes, queue: str, reason: str, exchange: str, routing_keys: list[str], now: float
) -> bytes:
    """RabbitMQ's dead-letter headers on the property bytes ``raw``: an ``x-death``
    entry (a repeat from the same queue and reason increments its ``count`` and moves
    it to the front), ``x-first-death-*`` (kept once set), ``x-last-death-*``; the
    ``expiration`` is removed (kept as ``original-expiration``)."""
    from pamqp.header import ContentHeader

    from fluxmq_amqp091.codec import encode_properties

    try:
        ch = ContentHeader()
        ch.unmarshal(b"\x00\x3c\x00\x00" + b"\x00" * 8 + raw)
        p = ch.properties
        headers = dict(p.headers or {})
        x_death = headers.get("x-death")
        deaths: list[dict[str, Any]] = (
            [d for d in x_death if isinstance(d, dict)] if isinstance(x_death, list) else []
        )
        found = None
        for d in deaths:
            if d.get("queue") == queue and d.get("reason") == reason:
                found = d
                break
        if found is not None:
            deaths.remove(found)
            found = dict(found)
            count = found.get("count")
            found["count"] = (count if isinstance(count, int) else 0) + 1
        else:
            found = {
                "count": 1,
                "reason": reason,
                "queue": queue,
                "time": datetime.datetime.fromtimestamp(int(now), tz=datetime.UTC),
                "exchange": exchange,
                "routing-keys": list(routing_keys),
            }
            if p.expiration:
                found["original-expiration"] = p.expiration
        headers["x-death"] = [found, *deaths]
        headers.setdefault("x-first-death-queue", queue)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-exchange", exchange)
        headers["x-last-death-queue"] = queue
        headers["x-last-death-reason"] = reason
        headers["x-last-death-exchange"] = exchange
        p.headers = headers
        p.expiration = None
        return encode_properties(p)
    except Exception:
        log.exception("amqp091: adding x-death failed; forwarding the properties unchanged")
        return raw


class Queues:
    """AMQP queue metadata over ``context.queues`` (one per broker)."""

    def __init__(self, context: Any, topology: Topology, consumer_timeout: float) -> None:
        self.context = context
        self.core = context.queues
        self.topology = topology
        self.consumer_timeout = consumer_timeout
        self.meta: dict[str, AMQPQueue] = {}
        topology.deliver_to_queues = self.append_all
        topology.queue_durable = lambda n: self.meta[n].durable if n in self.meta else True

    def exists(self, name: str) -> bool:
        return self.core.get(name) is not None

    async def load(self, records: dict[str, dict[str, Any]]) -> None:
        now = self.context.clock()
        for name, rec in records.items():
            if not rec.get("durable"):
                # a non-durable queue of the previous run: gone, as in RabbitMQ
                self.core.delete(name)
                self.topology.forget_queue(name)
                self.topology.unbind_queue(name)
                continue
            if self.core.get(name) is None:
                self.topology.forget_queue(name)
                continue
            args = dict(rec.get("arguments") or {})
            q = AMQPQueue(name, True, False, bool(rec.get("auto_delete")), args, last_used=now)
            self._apply_args(q)
            self.meta[name] = q

    def _apply_args(self, q: AMQPQueue) -> None:
        args = q.arguments
        exp = args.get("x-expires")
        q.expires = exp / 1000.0 if isinstance(exp, int) and exp > 0 else 0.0
        dlx = args.get("x-dead-letter-exchange")
        q.dlx = dlx if isinstance(dlx, str) else None
        dlrk = args.get("x-dead-letter-routing-key")
        q.dlrk = str(dlrk) if dlrk is not None else None
        if q.dlx is not None and q.forwarder is None:
            dlq = DLQ_PREFIX + q.name
            self.core.declare(
                dlq,
                {
                    "type": "classic",
                    "dlq": False,
                    "max_deliveries": 0,
                    "durability": "sync" if q.durable else "async",
                },
            )
            fwd = DLXForwarder(self, q)
            fwd.handle = self.core.consume(dlq, DLX_GROUP, fwd, credit=256)
            q.forwarder = fwd

    # --- declaration -------------------------------------------------------------------

    def lookup(self, conn: Any, name: str, ids: tuple[int, int], touch: bool = False) -> AMQPQueue:
        """The queue ``name`` as ``conn`` may use it: 404 unknown, 405 exclusive to another."""
        q = self.meta.get(name)
        if q is None:
            if self.core.get(name) is None:
                raise AMQPError(NOT_FOUND, f"no queue '{name}' in vhost '/'", *ids)
            # a queue made by config, MQTT or the API: adopt it
            q = self.meta[name] = AMQPQueue(
                name, True, False, False, {}, last_used=self.context.clock()
            )
        if q.exclusive and q.owner is not conn:
            raise AMQPError(RESOURCE_LOCKED, _locked(name), *ids)
        if touch:  # consume and get count as use for x-expires; a passive declare does not
            q.last_used = self.context.clock()
        return q

    def declare(
        self,
        conn: Any,
        name: str,
        *,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, Any],
    ) -> tuple[str, int, int]:
        ids = (50, 10)
        if passive:
            found = self.lookup(conn, name, ids)
            return name, self.ready(name), len(found.consumers)
        if not name:
            name = server_name()
        elif name.startswith("amq.") and name not in self.meta:
            raise AMQPError(
                ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'", *ids
            )
        args = plain(arguments or {})
        q = self.meta.get(name)
        if q is None and self.core.get(name) is not None:
            q = self.lookup(conn, name, ids)
            return name, self.ready(name), len(q.consumers)
        if q is not None:
            if (q.exclusive and q.owner is not conn) or q.exclusive != exclusive:
                raise AMQPError(RESOURCE_LOCKED, _locked(name), *ids)
            for field_name, got, have in (
                ("durable", durable, q.durable),
                ("auto_delete", auto_delete, q.auto_delete),
            ):
                if got != have:
                    raise AMQPError(
                        PRECONDITION_FAILED,
                        f"inequivalent arg '{field_name}' for queue '{name}' in vhost '/': "
                        f"received {_show(got)} but current is {_show(have)}",
                        *ids,
                    )
            if q.arguments != args:
                diff = sorted(
                    k for k in set(q.arguments) | set(args) if q.arguments.get(k) != args.get(k)
                )
                raise AMQPError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{diff[0]}' for queue '{name}' in vhost '/': "
                    f"received {_show(args.get(diff[0]))} but current is "
                    f"{_show(q.arguments.get(diff[0]))}",
                    *ids,
                )
            q.last_used = self.context.clock()
            return name, self.ready(name), len(q.consumers)
        qtype = str(args.get("x-queue-type", "classic"))
        if qtype in ("quorum", "stream"):
            # RabbitMQ: replicated queue types are durable, shared and kept
            for bad, prop in ((exclusive, "exclusive-owner"), (not durable, "non-durable")):
                if bad:
                    raise AMQPError(
                        PRECONDITION_FAILED,
                        f"invalid property '{prop}' for queue '{name}' in vhost '/'",
                        *ids,
                    )
            if auto_delete and qtype == "stream":
                raise AMQPError(
                    PRECONDITION_FAILED,
                    f"invalid property 'auto-delete' for queue '{name}' in vhost '/'",
                    *ids,
                )
        cfg = core_config(durable, args, self.consumer_timeout, name)
        try:
            self.core.declare(name, cfg)
        except QueueError as exc:
            raise AMQPError(PRECONDITION_FAILED, str(exc), *ids) from None
        q = AMQPQueue(
            name,
            durable,
            exclusive,
            auto_delete,
            args,
            owner=conn if exclusive else None,
            last_used=self.context.clock(),
        )
        self.meta[name] = q
        self._apply_args(q)
        if not exclusive:
            # non-durable ones are recorded too, so the next start can delete them
            self.topology.save_queue(name, q.record())
        return name, 0, 0

    def ready(self, name: str) -> int:
        """Messages ready for delivery to the default group (what DeclareOk reports)."""
        return self.core.ready_count(name, DEFAULT_GROUP)

    def delete(self, conn: Any, name: str, if_unused: bool, if_empty: bool) -> int:
        ids = (50, 40)
        q = self.meta.get(name)
        if q is None and self.core.get(name) is None:
            return 0  # RabbitMQ 3.x: deleting a missing queue is OK
        q = self.lookup(conn, name, ids)
        if if_unused and q.consumers:
            raise AMQPError(PRECONDITION_FAILED, f"queue '{name}' in vhost '/' in use", *ids)
        count = self.ready(name)
        if if_empty and count:
            raise AMQPError(PRECONDITION_FAILED, f"queue '{name}' in vhost '/' not empty", *ids)
        self.drop(q)
        return count

    def drop(self, q: AMQPQueue) -> None:
        """Delete the queue: consumers are cancelled by the broker (basic.cancel)."""
        self.meta.pop(q.name, None)
        for consumer in list(q.consumers):
            consumer.server_cancel()
        q.consumers.clear()
        if q.forwarder is not None:
            self.core.cancel(q.forwarder.handle)
            q.forwarder = None
        self.topology.unbind_queue(q.name)
        self.topology.forget_queue(q.name)
        self.core.delete(q.name)

    def purge(self, conn: Any, name: str) -> int:
        self.lookup(conn, name, (50, 30))
        n = self.ready(name)
        self.core.purge(name)
        return n

    # --- consumers and lifetimes ------------------------------------------------------

    def consumer_added(self, q: AMQPQueue, consumer: Any) -> None:
        q.consumers.add(consumer)
        q.had_consumers = True

    def consumer_removed(self, q: AMQPQueue, consumer: Any) -> None:
        q.consumers.discard(consumer)
        q.last_used = self.context.clock()
        if q.auto_delete and q.had_consumers and not q.consumers and self.meta.get(q.name) is q:
            self.drop(q)

    def connection_closed(self, conn: Any) -> None:
        for q in [q for q in self.meta.values() if q.exclusive and q.owner is conn]:
            self.drop(q)

    def sweep(self, now: float) -> None:
        """``x-expires``: delete queues unused for their lifetime."""
        for q in [
            q
            for q in self.meta.values()
            if q.expires and not q.consumers and now - q.last_used >= q.expires
        ]:
            self.drop(q)

    # --- appends ----------------------------------------------------------------------

    def append_all(self, names: list[str], message: Message) -> list[Any]:
        """Append to each queue; futures of the appends (a failed append is a future
        that carries its exception, so confirms can nack it)."""
        out = []
        core = self.core
        for name in names:
            try:
                out.append(core.append(name, message))
            except QueueError as exc:
                out.append(failed_future(exc))
        return out


def _locked(name: str) -> str:
    """RabbitMQ's text for a queue exclusive to another connection (405)."""
    return (
        f"cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It could be "
        "originally declared on another connection or the exclusive property value does "
        "not match that of the original declaration."
    )


def _amqp_type(value: Any) -> str:
    """The AMQP field type name of ``value`` (as RabbitMQ names it in errors)."""
    if isinstance(value, bool):
        return "bool"
    kinds = {int: "signedint", float: "double", str: "longstr", bytes: "longstr", list: "array"}
    return kinds.get(type(value), "table")


def _show(value: Any) -> str:
    """A flag or argument value as RabbitMQ shows it in an inequivalent-arg error."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return f"the value '{value}' of type '{_amqp_type(value)}'"


def failed_future(exc: BaseException) -> Any:
    """A future that already carries ``exc``: a refused append among the others,
    so a confirm nacks it and a ``tx.commit`` fails."""
    import asyncio  # noqa: PLC0415 - only on the rare failure path

    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut
