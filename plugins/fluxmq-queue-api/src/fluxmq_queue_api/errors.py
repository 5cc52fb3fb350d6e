"""Errors of the queue API and how each protocol spells them.

Handlers raise :class:`ApiError` with a Connect code name (the lower-case form of
the gRPC status: ``not_found``); the gRPC face maps it to ``grpc.StatusCode``, the
Connect face to its JSON error body and HTTP status. Queue manager errors are
translated once, in :func:`from_queue_error`.
"""

from __future__ import annotations

import logging
from typing import Any

from fluxmq_core.queues import (
    InvalidQueueNameError,
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    QueuesUnavailableError,
    QueueTopicError,
    UnknownQueueError,
)

log = logging.getLogger("fluxmq.queue_api")

#: Connect code -> HTTP status (connectrpc.com/docs/protocol#error-codes).
HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}

#: Connect code -> the QueueErrorCode enum value of the attached detail.
QUEUE_ERROR_CODE = {
    "internal": 1,
    "canceled": 2,
    "invalid_argument": 3,
    "not_found": 4,
    "already_exists": 5,
    "aborted": 6,
    "failed_precondition": 7,
    "resource_exhausted": 8,
    "out_of_range": 9,
    "unavailable": 10,
    "deadline_exceeded": 11,
}


class ApiError(Exception):
    """A refused call: ``code`` is a Connect code name, ``message`` says why."""

    def __init__(self, code: str, message: str, detail: Any = None) -> None:
        assert code in HTTP_STATUS, code
        super().__init__(message)
        self.code = code
        self.message = message
        #: A ``QueueErrorDetail`` with more than the code (progress of a partial
        #: append); :func:`error_detail` fills in the rest.
        self.detail = detail

    def __repr__(self) -> str:
        return f"ApiError({self.code!r}, {self.message!r})"


#: Codes a client may retry as they are (the condition may pass).
RETRYABLE = frozenset(("unavailable", "resource_exhausted", "deadline_exceeded", "aborted"))


def error_detail(exc: ApiError) -> Any:
    """The ``fluxmq.queue.v1.QueueErrorDetail`` sent with every error, as the Go
    FluxMQ does, so clients branch on ``code`` instead of parsing the message."""
    from fluxmq_queue_api._proto import queue_pb2 as pb

    detail = pb.QueueErrorDetail()
    if exc.detail is not None:
        detail.CopyFrom(exc.detail)
    detail.code = QUEUE_ERROR_CODE.get(exc.code, 0)  # type: ignore[assignment]
    detail.retryable = exc.code in RETRYABLE
    return detail


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def status_details_bin(grpc_code: int, exc: ApiError) -> bytes:
    """``grpc-status-details-bin``: a serialized ``google.rpc.Status`` (code 1,
    message 2, details 3 as ``google.protobuf.Any``), written by hand so that no
    googleapis package is needed for three fields."""
    from google.protobuf import any_pb2

    packed = any_pb2.Any()
    packed.Pack(error_detail(exc))
    out = _varint(1 << 3) + _varint(grpc_code) if grpc_code else b""
    return out + _field(2, exc.message.encode()) + _field(3, packed.SerializeToString())


def internal(method: str, exc: BaseException) -> ApiError:
    """An unexpected failure: logged with its traceback, INTERNAL to the client."""
    log.error("queue api: %s failed", method, exc_info=exc)
    return ApiError("internal", f"{method} failed: {type(exc).__name__}")


def from_queue_error(exc: QueueError) -> ApiError:
    """The API error for a queue manager refusal."""
    if isinstance(exc, UnknownQueueError):
        return ApiError("not_found", str(exc))
    if isinstance(exc, QueueFullError):
        return ApiError("resource_exhausted", str(exc))
    if isinstance(exc, MessageTooLargeError):
        return ApiError("invalid_argument", str(exc))
    if isinstance(exc, (InvalidQueueNameError, QueueTopicError)):
        return ApiError("invalid_argument", str(exc))
    if isinstance(exc, QueuesUnavailableError):
        return ApiError("unavailable", str(exc))
    text = str(exc)
    if "no consumer group" in text:
        return ApiError("not_found", text)
    if "already has" in text or "exists" in text:
        return ApiError("already_exists", text)
    if "is a " in text and "queue:" in text:
        return ApiError("failed_precondition", text)
    return ApiError("invalid_argument", text)
