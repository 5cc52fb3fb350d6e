"""An asyncio client of the queue API over gRPC (``grpc.aio``).

::

    from fluxmq_queue_api.client import QueueClient

    async with QueueClient("127.0.0.1:9090", token="s3cret") as qc:
        await qc.create_queue("orders")
        r = await qc.append("orders", b"hello", key="eu")
        async for m in qc.consume_queue("orders", "billing", "worker-1"):
            await qc.ack("orders", "billing", "worker-1", [m.offset])

Methods take plain Python values and return the generated message types
(``fluxmq_queue_api.pb``); a refused call raises :class:`QueueAPIError` with the
gRPC status code and the server's message. Any method the wrappers do not cover
can be called with :meth:`QueueClient.call` and a request message.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio

from fluxmq_queue_api import SERVICE
from fluxmq_queue_api._proto import queue_pb2 as pb
from fluxmq_queue_api.service import METHODS

__all__ = ["QueueAPIError", "QueueClient", "pb"]


class QueueAPIError(Exception):
    """A call the server refused: ``code`` is a ``grpc.StatusCode``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _seconds(d: Any, seconds: float) -> None:
    d.FromNanoseconds(int(seconds * 1e9))


class QueueClient:
    """A connection to one broker's queue API (see the module docstring).

    ``token`` sends ``authorization: Bearer <token>`` (the admin token, or a
    password the auth plugins check); ``username`` with ``password`` sends Basic
    credentials instead. ``credentials`` (``grpc.ssl_channel_credentials``) makes
    the channel TLS.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        client_id: str | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        meta: list[tuple[str, str]] = []
        if username is not None:
            raw = f"{username}:{password or ''}".encode()
            meta.append(("authorization", "Basic " + base64.b64encode(raw).decode()))
        elif token is not None:
            meta.append(("authorization", f"Bearer {token}"))
        if client_id:
            meta.append(("x-fluxmq-client-id", client_id))
        self.metadata = tuple(meta)
        if credentials is not None:
            self.channel = grpc.aio.secure_channel(target, credentials, options)
        else:
            self.channel = grpc.aio.insecure_channel(target, options)

    async def __aenter__(self) -> QueueClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    # --- generic --------------------------------------------------------------------------

    def _callable(self, name: str) -> Any:
        m = METHODS[name]
        path = f"/{SERVICE}/{name}"
        kwargs = {
            "request_serializer": m.request.SerializeToString,
            "response_deserializer": m.response.FromString,
        }
        if m.kind == "unary":
            return self.channel.unary_unary(path, **kwargs)
        if m.kind == "client_stream":
            return self.channel.stream_unary(path, **kwargs)
        return self.channel.unary_stream(path, **kwargs)

    async def call(self, name: str, request: Any, timeout: float | None = None) -> Any:
        """Call unary RPC ``name`` with a request message; returns the response."""
        try:
            return await self._callable(name)(request, metadata=self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise QueueAPIError(exc.code(), exc.details() or "") from None

    async def stream(self, name: str, request: Any) -> AsyncIterator[Any]:
        """Call server-streaming RPC ``name``; yields each message."""
        call = self._callable(name)(request, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise QueueAPIError(exc.code(), exc.details() or "") from None
        finally:
            call.cancel()

    # --- queues -------------------------------------------------------------------------

    async def create_queue(
        self,
        name: str,
        topics: Iterable[str] = (),
        *,
        max_message_size: int = 0,
        retention_age: float = 0.0,
        retention_bytes: int = 0,
        type: str = "",
        max_priority: int = 0,
    ) -> pb.Queue:
        """Create a queue; ``type`` is ``"classic"`` (the default), ``"stream"`` or
        ``"ephemeral"``, ``max_priority`` (1-255) makes a classic queue deliver
        higher ``priority`` headers first."""
        req = pb.CreateQueueRequest(name=name, topics=list(topics))
        req.config.type = type
        req.config.max_priority = max_priority
        req.config.max_message_size = max_message_size
        req.config.retention.max_bytes = retention_bytes
        if retention_age:
            _seconds(req.config.retention.max_age, retention_age)
        return await self.call("CreateQueue", req)

    async def get_queue(self, name: str) -> pb.Queue:
        return await self.call("GetQueue", pb.GetQueueRequest(name=name))

    async def list_queues(
        self, prefix: str = "", limit: int = 0, page_token: str = ""
    ) -> pb.ListQueuesResponse:
        return await self.call(
            "ListQueues", pb.ListQueuesRequest(prefix=prefix, limit=limit, page_token=page_token)
        )

    async def delete_queue(self, name: str) -> None:
        await self.call("DeleteQueue", pb.DeleteQueueRequest(name=name))

    async def update_queue(self, name: str, config: pb.QueueConfig) -> pb.Queue:
        return await self.call("UpdateQueue", pb.UpdateQueueRequest(name=name, config=config))

    # --- append -------------------------------------------------------------------------

    async def append(
        self,
        queue: str,
        value: bytes,
        *,
        key: str | bytes = b"",
        headers: Mapping[str, bytes] | None = None,
    ) -> pb.AppendResponse:
        return await self.call("Append", _append_request(queue, value, key, headers))

    async def append_batch(
        self, queue: str, values: Iterable[bytes], *, key: str | bytes = b""
    ) -> pb.AppendBatchResponse:
        k = key.encode() if isinstance(key, str) else key
        req = pb.AppendBatchRequest(
            queue_name=queue, messages=[pb.BatchMessage(key=k, value=v) for v in values]
        )
        return await self.call("AppendBatch", req)

    async def append_stream(
        self, queue: str, values: AsyncIterable[bytes] | Iterable[bytes], *, key: str | bytes = b""
    ) -> pb.AppendBatchResponse:
        """``AppendQueue``: stream ``values`` to ``queue`` on one call."""

        async def requests() -> AsyncIterator[Any]:
            if isinstance(values, AsyncIterable):
                async for v in values:
                    yield _append_request(queue, v, key, None)
            else:
                for v in values:
                    yield _append_request(queue, v, key, None)

        try:
            return await self._callable("AppendQueue")(requests(), metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise QueueAPIError(exc.code(), exc.details() or "") from None

    # --- reading ------------------------------------------------------------------------

    async def read(self, queue: str, offset: int) -> pb.Message:
        return await self.call("Read", pb.ReadRequest(queue_name=queue, offset=offset))

    async def read_batch(
        self, queue: str, start_offset: int = 0, limit: int = 0, max_bytes: int = 0
    ) -> pb.ReadBatchResponse:
        req = pb.ReadBatchRequest(
            queue_name=queue, start_offset=start_offset, limit=limit, max_bytes=max_bytes
        )
        return await self.call("ReadBatch", req)

    def tail(
        self, queue: str, *, start: str = "earliest", offset: int = 0
    ) -> AsyncIterator[pb.Message]:
        """Every message from ``start`` (``earliest``, ``latest`` or ``offset``) on,
        then new ones as they are appended, until the caller stops iterating."""
        where = {
            "earliest": pb.TailRequest.START_FROM_EARLIEST,
            "latest": pb.TailRequest.START_FROM_LATEST,
            "offset": pb.TailRequest.START_FROM_OFFSET,
        }[start]
        req = pb.TailRequest(queue_name=queue, start_from=where, start_offset=offset)
        return self.stream("Tail", req)

    async def seek_to_offset(self, queue: str, offset: int) -> pb.SeekResponse:
        return await self.call(
            "SeekToOffset", pb.SeekToOffsetRequest(queue_name=queue, offset=offset)
        )

    async def seek_to_timestamp(self, queue: str, seconds: float) -> pb.SeekResponse:
        req = pb.SeekToTimestampRequest(queue_name=queue)
        req.timestamp.FromNanoseconds(int(seconds * 1e9))
        return await self.call("SeekToTimestamp", req)

    # --- consumer groups ----------------------------------------------------------------

    async def create_consumer_group(
        self, queue: str, group: str, *, latest: bool = False, pattern: str = ""
    ) -> pb.ConsumerGroup:
        req = pb.CreateConsumerGroupRequest(queue_name=queue, group_id=group, pattern=pattern)
        req.config.initial_position = (
            pb.INITIAL_POSITION_LATEST if latest else pb.INITIAL_POSITION_EARLIEST
        )
        return await self.call("CreateConsumerGroup", req)

    async def get_consumer_group(self, queue: str, group: str) -> pb.ConsumerGroup:
        return await self.call(
            "GetConsumerGroup", pb.GetConsumerGroupRequest(queue_name=queue, group_id=group)
        )

    async def list_consumer_groups(self, queue: str) -> pb.ListConsumerGroupsResponse:
        return await self.call("ListConsumerGroups", pb.ListConsumerGroupsRequest(queue_name=queue))

    async def delete_consumer_group(self, queue: str, group: str) -> None:
        await self.call(
            "DeleteConsumerGroup", pb.DeleteConsumerGroupRequest(queue_name=queue, group_id=group)
        )

    async def join_group(
        self,
        queue: str,
        group: str,
        consumer: str,
        *,
        session_timeout: float = 0.0,
        metadata: Mapping[str, str] | None = None,
    ) -> pb.JoinGroupResponse:
        req = pb.JoinGroupRequest(
            queue_name=queue, group_id=group, consumer_id=consumer, metadata=dict(metadata or {})
        )
        if session_timeout:
            _seconds(req.session_timeout, session_timeout)
        return await self.call("JoinGroup", req)

    async def leave_group(self, queue: str, group: str, consumer: str) -> None:
        await self.call(
            "LeaveGroup",
            pb.LeaveGroupRequest(queue_name=queue, group_id=group, consumer_id=consumer),
        )

    async def heartbeat(
        self, queue: str, group: str, consumer: str, generation: int = 0
    ) -> pb.HeartbeatResponse:
        req = pb.HeartbeatRequest(
            queue_name=queue, group_id=group, consumer_id=consumer, generation_id=generation
        )
        return await self.call("Heartbeat", req)

    # --- consuming ----------------------------------------------------------------------

    async def consume(
        self,
        queue: str,
        group: str,
        consumer: str,
        *,
        max_messages: int = 0,
        max_bytes: int = 0,
        wait: float = 0.0,
    ) -> list[pb.Message]:
        req = pb.ConsumeRequest(
            queue_name=queue,
            group_id=group,
            consumer_id=consumer,
            max_messages=max_messages,
            max_bytes=max_bytes,
        )
        if wait:
            _seconds(req.wait_time, wait)
        return list((await self.call("Consume", req)).messages)

    def consume_queue(
        self, queue: str, group: str, consumer: str, *, max_in_flight: int = 0
    ) -> AsyncIterator[pb.Message]:
        """Deliveries to ``consumer`` as they come; ack them with :meth:`ack`."""
        req = pb.ConsumeQueueRequest(
            queue_name=queue, group_id=group, consumer_id=consumer, max_in_flight=max_in_flight
        )
        return self.stream("ConsumeQueue", req)

    async def ack(
        self, queue: str, group: str, consumer: str, offsets: Iterable[int]
    ) -> pb.AckResponse:
        req = pb.AckRequest(
            queue_name=queue, group_id=group, consumer_id=consumer, offsets=list(offsets)
        )
        return await self.call("Ack", req)

    async def nack(
        self,
        queue: str,
        group: str,
        consumer: str,
        offsets: Iterable[int],
        *,
        delay: float | None = None,
    ) -> None:
        req = pb.NackRequest(
            queue_name=queue, group_id=group, consumer_id=consumer, offsets=list(offsets)
        )
        if delay is not None:
            _seconds(req.delay, delay)
        await self.call("Nack", req)

    async def claim(
        self, queue: str, group: str, consumer: str, *, min_idle: float = 0.0, limit: int = 0
    ) -> list[pb.Message]:
        req = pb.ClaimRequest(queue_name=queue, group_id=group, consumer_id=consumer, limit=limit)
        _seconds(req.min_idle_time, min_idle)
        return list((await self.call("Claim", req)).messages)

    async def get_pending(
        self, queue: str, group: str, consumer: str = "", *, limit: int = 0, page_token: str = ""
    ) -> pb.GetPendingResponse:
        req = pb.GetPendingRequest(
            queue_name=queue,
            group_id=group,
            consumer_id=consumer,
            limit=limit,
            page_token=page_token,
        )
        return await self.call("GetPending", req)

    # --- information and maintenance ----------------------------------------------------

    async def get_queue_info(self, queue: str) -> pb.QueueInfo:
        return await self.call("GetQueueInfo", pb.GetQueueInfoRequest(queue_name=queue))

    async def get_stats(self, queue: str) -> pb.QueueStats:
        return await self.call("GetStats", pb.GetStatsRequest(queue_name=queue))

    async def purge(self, queue: str) -> pb.PurgeResponse:
        return await self.call("Purge", pb.PurgeRequest(queue_name=queue))

    async def truncate(self, queue: str, min_offset: int) -> None:
        await self.call("Truncate", pb.TruncateRequest(queue_name=queue, min_offset=min_offset))


def _append_request(
    queue: str, value: bytes, key: str | bytes, headers: Mapping[str, bytes] | None
) -> Any:
    k = key.encode() if isinstance(key, str) else key
    return pb.AppendRequest(queue_name=queue, key=k, value=value, headers=dict(headers or {}))
