"""The ``$management`` node: AMQP request/response management of core queues, in the
style of the AMQP Management draft that Artemis and Azure use (sans-IO: the queue
manager is called synchronously, the reply is handed back to the caller to route).

A request is a message sent to ``$management`` with application properties
``operation`` (``CREATE``, ``READ``, ``DELETE``, ``QUERY``), ``type`` (``queue``)
and, except for QUERY, ``name``; CREATE takes the queue's settings as an
``amqp-value`` map body (the keys of ``[queues.<name>]``, e.g. ``type``,
``max_depth``). The response goes to the request's ``reply-to`` with
``statusCode`` / ``statusDescription`` application properties, the request's
message-id as its correlation-id, and the queue (a map) or the queues (a list of
maps, for QUERY) as an ``amqp-value`` body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fluxmq_amqp1.codec.composites import AmqpValue, Properties
from fluxmq_amqp1.codec.message import AMQPMessage, encode_message
from fluxmq_core.config import ConfigError
from fluxmq_core.queues import QueueError, UnknownQueueError

__all__ = ["MANAGEMENT", "handle_request"]

MANAGEMENT = "$management"
OPERATIONS = ("CREATE", "READ", "DELETE", "QUERY")


def _plain(v: Any) -> Any:
    """A queue info as AMQP-encodable plain values."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {k: _plain(x) for k, x in dataclasses.asdict(v).items()}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str | bytes):
        return v
    return str(v)


def _status(request: AMQPMessage, code: int, text: str, body: Any = None) -> bytes:
    p = request.properties
    correlation = None
    if p is not None:
        correlation = p.message_id if p.message_id is not None else p.correlation_id
    return encode_message(
        AMQPMessage(
            [AmqpValue(body)],
            properties=Properties(correlation_id=correlation, to=p.reply_to if p else None),
            application_properties={"statusCode": code, "statusDescription": text},
        )
    )


def handle_request(
    queues: Any, request: AMQPMessage, deleted: Callable[[str], None] | None = None
) -> bytes:
    """Carry out one management request; the response message's bytes.
    ``deleted(name)`` is told of a queue a DELETE removed."""
    ap = request.application_properties or {}
    op = str(ap.get("operation", "")).upper()
    kind = str(ap.get("type", ""))
    name = ap.get("name")
    if op not in OPERATIONS:
        return _status(request, 501, f"operation {op or '(none)'!r} is not implemented")
    if kind not in ("queue", "org.apache.activemq.artemis.queue", "fluxmq:queue"):
        return _status(request, 501, f"type {kind or '(none)'!r} is not implemented: only queue")
    if queues is None:
        return _status(request, 503, "queues are not available in this broker")
    if op == "QUERY":
        return _status(request, 200, "OK", [_plain(i) for i in queues.list()])
    if not isinstance(name, str) or not name:
        return _status(request, 400, "a name application property is required")
    try:
        if op == "READ":
            return _status(request, 200, "OK", _plain(queues.info(name)))
        if op == "DELETE":
            if queues.delete(name):
                if deleted is not None:
                    deleted(name)
                return _status(request, 204, "No Content")
            return _status(request, 404, f"no queue {name!r}")
        body = request.body[0].value if len(request.body) == 1 else None
        if body is not None and not isinstance(body, dict):
            return _status(request, 400, "CREATE takes the queue's settings as a map body")
        config = {str(k): v for k, v in (body or {}).items()}
        existed = queues.get(name) is not None
        queues.declare(name, config or None)
        return _status(
            request,
            200 if existed else 201,
            "OK" if existed else "Created",
            _plain(queues.info(name)),
        )
    except UnknownQueueError as exc:
        return _status(request, 404, str(exc))
    except QueueError as exc:
        return _status(request, 409 if "exists" in str(exc) else 400, str(exc))
    except (ConfigError, ValueError, TypeError) as exc:
        return _status(request, 400, str(exc))
