"""The OpenAPI 3.1 document of the HTTP listener (``GET /api/v1/openapi.json``).

Built from the live router, so every route is listed by construction; the details
(parameters, bodies, responses) come from :data:`OPERATIONS`, keyed by
``(method, pattern)``. A test validates the document and checks that no route lacks
its details.
"""

from __future__ import annotations

from typing import Any

from fluxmq_core import __version__
from fluxmq_core.http.server import Router

__all__ = ["OPERATIONS", "document"]


def _json(schema: Any, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_OK = {"$ref": "#/components/schemas/Ok"}


def _err(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


_ADMIN_ERRORS = {
    "401": _err("Missing or wrong bearer token (when [http] admin_token is set)"),
    "403": _err("Not a loopback client (when [http] admin_token is empty)"),
}
_CLIENT_AUTH_ERRORS = {
    "401": _err("Authentication failed"),
    "403": _err("Not authorized"),
}
_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_PROTOCOL = {
    "name": "protocol",
    "in": "query",
    "schema": {"type": "string"},
    "description": "Only this protocol",
}
_CLIENT_ID = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
_QUEUE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Queue name (URL-encode the '/' of '$dlq/<name>')",
}
_QUEUE = {"$ref": "#/components/schemas/Queue"}
_PUBLISH_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PublishRequest"}}},
}
_STREAM_FILTER = {
    "name": "filter",
    "in": "query",
    "required": True,
    "description": "Topic filter (repeatable)",
    "schema": {"type": "string"},
}
_EVENT_STREAM = {
    "description": "An event stream",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _page(key: str, item: Any, with_window: bool = False) -> dict[str, Any]:
    """A listing's body: ``total`` and the array ``key`` of ``item`` (with the
    ``limit`` and ``offset`` it was cut by when ``with_window``)."""
    window = {"limit": {"type": "integer"}, "offset": {"type": "integer"}} if with_window else {}
    return {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            **window,
            key: {"type": "array", "items": item},
        },
    }


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/publish"): {
        "description": "Publish one message into the broker's topics (the Go FluxMQ's body). "
        "A topic $queue/<name>/<routing-key> is appended to queue <name> and answered once the "
        "append is durable, with the queue and offset.",
        "security": [{"basic": []}, {"bearer": []}, {}],
        "requestBody": _PUBLISH_BODY,
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Published"}),
            "400": _err(
                "Bad JSON, bad base64, wildcard topic, QoS above 2, bad properties; "
                "an invalid queue name or a control verb ($ack...) in a $queue/ topic"
            ),
            **_CLIENT_AUTH_ERRORS,
            "404": _err('$queue/<name>: undeclared under [queue_manager] auto_create = "none"'),
            "413": _err(
                "Body larger than [http] max_body; payload over the queue's max_message_size"
            ),
            "503": _err("$queue/<name>: the queue is full, or the append failed (not stored)"),
        },
    },
    ("GET", "/subscribe"): {
        "description": "Server-Sent Events: one `message` event per matching message; its data is "
        "a JSON object with topic, base64 payload, qos, retain (and text when UTF-8).",
        "security": [{"basic": []}, {"bearer": []}, {}],
        "parameters": [_STREAM_FILTER],
        "responses": {
            "200": _EVENT_STREAM,
            "400": _err("Missing or invalid filter"),
            **_CLIENT_AUTH_ERRORS,
            "409": _err("That client id is already streaming"),
        },
    },
    ("GET", "/health"): {
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "status": {"const": "ok"},
                        "node_id": {"type": "string"},
                        "uptime": {"type": "number"},
                    },
                }
            )
        },
    },
    ("GET", "/ready"): {
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Ready"}, "Ready"),
            "503": _json({"$ref": "#/components/schemas/Ready"}, "Not ready"),
        },
    },
    ("GET", "/api/v1/stats"): {
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "by_protocol",
                "in": "query",
                "schema": {"type": "string", "enum": ["true", "false"]},
                "description": "Also sessions_by_protocol (walks every session)",
            }
        ],
        "responses": {"200": _json({"type": "object"}), **_ADMIN_ERRORS},
    },
    ("GET", "/api/v1/cluster"): {
        "security": [{"bearer": []}],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "driver": {"type": "string"},
                        "node_id": {"type": "string"},
                        "ready": {"type": "boolean"},
                        "nodes": {"type": "array", "items": {"type": "object"}},
                    },
                }
            ),
            **_ADMIN_ERRORS,
        },
    },
    ("GET", "/api/v1/sessions"): {
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "prefix",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Client id prefix",
            },
            {
                "name": "search",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Case-insensitive text in the client id, username or address",
            },
            _PROTOCOL,
            {
                "name": "connected",
                "in": "query",
                "schema": {"type": "string", "enum": ["true", "false"]},
            },
            *_PAGING,
        ],
        "responses": {
            "200": _json(
                _page("sessions", {"$ref": "#/components/schemas/Session"}, with_window=True)
            ),
            "400": _err("Bad query parameter"),
            **_ADMIN_ERRORS,
        },
    },
    ("GET", "/api/v1/sessions/{client_id}"): {
        "security": [{"bearer": []}],
        "parameters": [_CLIENT_ID, _PROTOCOL],
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Session"}),
            "404": _err("No such session"),
            **_ADMIN_ERRORS,
        },
    },
    ("DELETE", "/api/v1/sessions/{client_id}"): {
        "description": "Disconnect the client (MQTT 5: DISCONNECT 0x98); its session stays as its expiry says.",
        "security": [{"bearer": []}],
        "parameters": [_CLIENT_ID, _PROTOCOL],
        "responses": {"200": _json(_OK), "404": _err("No such connected client"), **_ADMIN_ERRORS},
    },
    ("GET", "/api/v1/subscriptions"): {
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "prefix",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Topic filter prefix",
            },
            {
                "name": "filter",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Only this exact topic filter (the clients of one filter)",
            },
            {"name": "client_id", "in": "query", "schema": {"type": "string"}},
            _PROTOCOL,
            *_PAGING,
        ],
        "responses": {
            "200": _json(
                _page(
                    "subscriptions",
                    {
                        "type": "object",
                        "properties": {
                            "client_id": {"type": "string"},
                            "protocol": {"type": "string"},
                            "filter": {"type": "string"},
                            "qos": {"type": "integer"},
                        },
                    },
                )
            ),
            "400": _err("Bad query parameter"),
            **_ADMIN_ERRORS,
        },
    },
    ("GET", "/api/v1/subscriptions/filters"): {
        "description": "One row per topic filter with the number of clients holding it, in all "
        "and by protocol; sorted by subscriber count, then filter.",
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "search",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Only filters containing this text",
            },
            _PROTOCOL,
            *_PAGING,
        ],
        "responses": {
            "200": _json(
                _page(
                    "filters",
                    {
                        "type": "object",
                        "properties": {
                            "filter": {"type": "string"},
                            "subscribers": {"type": "integer"},
                            "protocols": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                            },
                        },
                    },
                )
            ),
            "400": _err("Bad query parameter"),
            **_ADMIN_ERRORS,
        },
    },
    ("POST", "/api/v1/publish"): {
        "description": "The body and answers of POST /publish, authorized by the admin token "
        "instead of the client auth hooks (an operator's test message).",
        "security": [{"bearer": []}],
        "requestBody": _PUBLISH_BODY,
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Published"}),
            "400": _err("Bad JSON, bad base64, wildcard topic, QoS above 2, bad properties"),
            **_ADMIN_ERRORS,
            "404": _err('$queue/<name>: undeclared under [queue_manager] auto_create = "none"'),
            "413": _err("Payload over the queue's max_message_size"),
            "503": _err("$queue/<name>: the queue is full, or the append failed (not stored)"),
        },
    },
    ("GET", "/api/v1/tail"): {
        "description": "The event stream of GET /subscribe, authorized by the admin token "
        "instead of the client auth hooks. Listed as an `http` session while it runs (its id "
        "from the X-FluxMQ-Client-Id header, else admin-tail:<address>).",
        "security": [{"bearer": []}],
        "parameters": [_STREAM_FILTER],
        "responses": {
            "200": _EVENT_STREAM,
            "400": _err("Missing or invalid filter"),
            **_ADMIN_ERRORS,
            "409": _err("That client id is already streaming"),
        },
    },
    ("GET", "/api/v1/queues"): {
        "security": [{"bearer": []}],
        "responses": {
            "200": _json(
                {"type": "object", "properties": {"queues": {"type": "array", "items": _QUEUE}}}
            ),
            **_ADMIN_ERRORS,
        },
    },
    ("POST", "/api/v1/queues"): {
        "description": "Declare a queue: `name` plus any `[queues.<name>]` keys (docs/queues.md). "
        "201 when created; 200 when it exists with the same settings.",
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string", "enum": ["classic", "stream", "ephemeral"]},
                        },
                        "additionalProperties": True,
                    }
                }
            },
        },
        "responses": {
            "200": _json(_QUEUE, "The queue existed with these settings"),
            "201": _json(_QUEUE, "Created"),
            "400": _err("Bad body, bad name or an unknown or invalid key"),
            **_ADMIN_ERRORS,
            "409": _err("The queue exists with other settings"),
            "503": _err("No queue manager"),
        },
    },
    ("GET", "/api/v1/queues/{name}"): {
        "security": [{"bearer": []}],
        "parameters": [_QUEUE_NAME],
        "responses": {
            "200": _json(_QUEUE, "The queue, its groups and its effective config"),
            "404": _err("No such queue"),
            **_ADMIN_ERRORS,
        },
    },
    ("DELETE", "/api/v1/queues/{name}"): {
        "description": "Delete the queue with its messages and groups (its dead-letter queue stays).",
        "security": [{"bearer": []}],
        "parameters": [_QUEUE_NAME],
        "responses": {"200": _json(_OK), "404": _err("No such queue"), **_ADMIN_ERRORS},
    },
    ("POST", "/api/v1/queues/{name}/purge"): {
        "description": "Remove every message, pending ones included; groups and consumers stay.",
        "security": [{"bearer": []}],
        "parameters": [_QUEUE_NAME],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "status": {"const": "ok"},
                        "queue": {"type": "string"},
                        "purged": {"type": "integer"},
                    },
                }
            ),
            "404": _err("No such queue"),
            **_ADMIN_ERRORS,
        },
    },
    ("GET", "/api/v1/queues/{name}/records"): {
        "description": "The queue's retained records as JSON lines (read-only; what `fluxmq queue "
        "sql` loads): offset, timestamp, topic, base64 payload, qos, properties.",
        "security": [{"bearer": []}],
        "parameters": [
            _QUEUE_NAME,
            {
                "name": "from",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0},
                "description": "First offset (default: the first retained one)",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0},
                "description": "Most records; 0 or absent: all",
            },
        ],
        "responses": {
            "200": {
                "description": "One JSON object a line",
                "content": {
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/QueueRecord"}}
                },
            },
            "400": _err("Bad query parameter"),
            "404": _err("No such queue"),
            **_ADMIN_ERRORS,
        },
    },
    ("POST", "/api/v1/reload"): {
        "security": [{"bearer": []}],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "status": {"const": "ok"},
                        "applied": {"type": "array", "items": {"type": "string"}},
                    },
                }
            ),
            "503": _err("Reload not available"),
            **_ADMIN_ERRORS,
        },
    },
    ("GET", "/api/v1/openapi.json"): {
        "security": [{}],
        "responses": {"200": _json({"type": "object"}, "This document")},
    },
}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "basic": {"type": "http", "scheme": "basic"},
        "bearer": {"type": "http", "scheme": "bearer"},
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Ok": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Published": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"const": "ok"},
                "queue": {"type": "string", "description": "$queue/ topics: the queue"},
                "offset": {"type": "integer", "description": "$queue/ topics: its offset"},
            },
        },
        "Ready": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
            },
        },
        "PublishRequest": {
            "type": "object",
            "required": ["topic"],
            "additionalProperties": False,
            "properties": {
                "topic": {"type": "string", "description": "Topic name (no wildcards)"},
                "payload": {"type": "string", "contentEncoding": "base64", "default": ""},
                "qos": {"type": "integer", "minimum": 0, "maximum": 2, "default": 0},
                "retain": {"type": "boolean", "default": False},
                "properties": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "content_type": {"type": "string"},
                        "correlation_data": {"type": "string", "contentEncoding": "base64"},
                        "response_topic": {"type": "string"},
                        "user_properties": {
                            "oneOf": [
                                {"type": "object", "additionalProperties": {"type": "string"}},
                                {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 2,
                                        "maxItems": 2,
                                    },
                                },
                            ]
                        },
                        "message_expiry": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Seconds",
                        },
                    },
                },
            },
        },
        "Queue": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string"},
                "depth": {"type": "integer"},
                "bytes": {"type": "integer"},
                "first_offset": {"type": "integer"},
                "next_offset": {"type": "integer"},
                "consumers": {"type": "integer"},
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "consumers": {"type": "integer"},
                            "pending": {"type": "integer"},
                            "lag": {"type": "integer"},
                            "committed": {"type": ["integer", "null"]},
                            "cursor": {"type": "integer"},
                            "filter": {"type": ["string", "null"]},
                        },
                    },
                },
                "topics": {"type": "array", "items": {"type": "string"}},
                "config": {"type": "object"},
            },
        },
        "QueueRecord": {
            "type": "object",
            "properties": {
                "offset": {"type": "integer"},
                "timestamp": {"type": "number"},
                "topic": {"type": "string"},
                "payload": {"type": "string", "contentEncoding": "base64"},
                "qos": {"type": "integer"},
                "properties": {"type": "object"},
            },
        },
        "Session": {
            "type": "object",
            "properties": {
                "client_id": {"type": "string"},
                "protocol": {"type": "string"},
                "connected": {"type": "boolean"},
                "username": {"type": ["string", "null"]},
                "remote": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "subscriptions": {"type": "object", "additionalProperties": {"type": "integer"}},
                "inflight": {"type": "integer"},
                "queued": {"type": "integer"},
                "expiry": {"type": ["integer", "null"]},
                "disconnected_at": {"type": ["number", "null"]},
                "extra": {"type": "object"},
            },
        },
    },
}


def document(router: Router) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route of ``router``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in router.routes:
        details = OPERATIONS.get(
            (route.method, route.pattern), {"responses": {"200": {"description": "OK"}}}
        )
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.pattern.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_')}",
            "summary": route.summary or route.pattern,
            "tags": [route.tag] if route.tag else [],
            **details,
        }
        paths.setdefault(route.pattern, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FluxMQ HTTP API",
            "version": __version__,
            "description": "Publish bridge, Server-Sent Events, health and the admin API of FluxMQ. "
            "See docs/http.md.",
        },
        "paths": paths,
        "components": COMPONENTS,
    }
