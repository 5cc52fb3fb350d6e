"""Node-to-node traffic over gRPC: forwarded publishes in batches, and unary calls.

One :class:`Peers` per node is both the gRPC server other nodes call and the client
of every other node. The cluster driver tells it where peers are (``set_peer``, from
its etcd membership watch), hands it messages for other nodes (``forward``) and
registers the handlers of the unary RPCs (``handle``). It knows nothing of etcd,
sessions or queues: it moves protobuf messages and keeps the cost of a slow or
dead peer off the publisher.

Theory of operation, per peer:

* ``forward()`` is a plain function: it appends to a bounded deque and returns.
  A full deque or an open breaker drops the message and counts it; the publisher
  pays nothing else (at-most-once across nodes, as the issue of a down peer asks).
* One sender task per peer takes up to ``batch_max`` messages (or ``batch_bytes`` of
  payload) after waiting at most ``batch_delay`` for the batch to fill, and sends one
  ``Forward`` RPC; only one batch is in flight per peer, so the messages arrive in the
  order they were forwarded. While a batch is in flight the next one fills up, so
  batching grows with load on its own.
* A circuit breaker counts consecutive transport failures (unreachable, deadline).
  After ``breaker_failures`` of them it opens: the queued messages are dropped and
  counted, ``forward()`` drops at once, ``call()`` fails at once. After
  ``breaker_reset`` seconds (doubling per failed probe, up to ``breaker_reset_max``)
  the sender task probes with a ``Ping`` (half-open); an answer closes the breaker.
  An error the peer *answered* with (a handler that failed, a refused batch) is
  counted but does not open it: the peer is up.

Server side: a batch's messages go to ``on_messages(from_node, messages)`` (the
messages without a target, for the local router) and ``on_targeted(from_node,
[(target, message), ...])`` (those with one), in order, on the event loop. Unary
RPCs go to the handler registered with ``handle(name, fn)``; an RPC without one
answers ``UNIMPLEMENTED`` naming it. Every call carries the caller's node id and the
node id it meant to reach in its metadata; a node answers ``FAILED_PRECONDITION``
to a call meant for another id (a stale address after a restart under a new id).

Same-host link: a peer on the same host may also name a Unix domain socket
(``set_peer(..., link=...)``; this node serves its own with ``start(bind,
link=...)``). The sender then carries its ``Forward`` batches over one stream to
that socket (the hand-written frames of :mod:`fluxmq_etcd.link`, no protobuf, no
gRPC) and everything else over gRPC. The batches, the queue, the breaker and the
counters are the same: a batch counts as forwarded when the peer's ACK for it
arrives (after its delivery there), an error the peer answers with counts as a
remote error, and up to ``LINK_WINDOW`` batches may be unacknowledged at once
(the stream keeps them in order). When the link cannot be opened, is refused or
breaks, its unacknowledged messages count as dropped and the batches go over gRPC
until a retry (after ``LINK_RETRY_MIN`` seconds, doubling up to
``LINK_RETRY_MAX``) opens it again; gRPC and the link never carry batches of one
peer at the same time, so the order per sender holds. The socket accepts
processes of this node's own user only (file mode 0600 and the peer's
credentials), and a dialer names the node it meant to reach, as over gRPC.

The service is served and called through grpc's generic handlers, built from the
service descriptor of the generated code, so there is no ``_pb2_grpc`` module and
handlers can be registered after the server started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message as ProtoMessage

from fluxmq_core.message import Message

from .codec import CodecError, forward_batch_from_proto, forward_batch_to_proto, pb
from .link import (
    ACK,
    BATCH,
    HELLO,
    REFUSE,
    WELCOME,
    LinkError,
    batch_sequence,
    decode_ack,
    decode_batch,
    decode_hello,
    decode_refuse,
    decode_welcome,
    encode_ack,
    encode_batch,
    encode_hello,
    encode_message,
    encode_refuse,
    encode_welcome,
    frame_length,
)

__all__ = [
    "RPCS",
    "BreakerState",
    "HandlerError",
    "PeerError",
    "PeerUnavailable",
    "Peers",
    "tls_client_credentials",
    "tls_server_credentials",
]

log = logging.getLogger("fluxmq.cluster.peers")

SERVICE = "fluxmq.cluster.v1.Cluster"
NODE_KEY = "x-fluxmq-node"
TO_KEY = "x-fluxmq-to"


def _rpc_table() -> dict[str, tuple[type[ProtoMessage], type[ProtoMessage]]]:
    service = pb.DESCRIPTOR.services_by_name["Cluster"]
    return {
        m.name: (getattr(pb, m.input_type.name), getattr(pb, m.output_type.name))
        for m in service.methods
    }


#: Every RPC of the service: name -> (request class, response class). ``Forward`` is
#: driven by ``forward()``; the others are for ``call()`` and ``handle()``.
RPCS: dict[str, tuple[type[ProtoMessage], type[ProtoMessage]]] = _rpc_table()
UNARY_RPCS = frozenset(RPCS) - {"Forward"}

Handler = Callable[[str, Any], Awaitable[Any]]

#: Status codes that say the peer did not answer: they count towards the breaker.
_TRANSPORT_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)


#: Per-peer counters summed into the totals of ``Peers.stats()``.
_TOTALS = ("forwarded", "batches", "dropped", "errors", "remote_errors", "link_forwarded")

#: Batches a same-host link may have unacknowledged at once.
LINK_WINDOW = 8
#: Seconds before a link that failed is tried again (doubling up to the max).
LINK_RETRY_MIN = 0.5
LINK_RETRY_MAX = 10.0
#: Bytes of ACKs a link's server lets queue before it waits for the dialer to read.
_LINK_ACK_BUFFER = 1 << 20
#: Bytes of batches a link's dialer lets queue before it waits for the socket.
_LINK_WRITE_BUFFER = 4 << 20
#: Largest HELLO/WELCOME/REFUSE frame.
_LINK_SMALL_FRAME = 1 << 17
_STATUS = {code.value[0]: code for code in grpc.StatusCode}


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: The state per forwarded message checks, as a module global (an enum member
#: lookup through the class costs several times a global's).
_CLOSED = BreakerState.CLOSED


class PeerError(Exception):
    """A call to a peer failed; ``code`` is the gRPC status it ended with."""

    def __init__(self, node_id: str, rpc: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{rpc} on node {node_id!r}: {code.name}: {details}")
        self.node_id = node_id
        self.rpc = rpc
        self.code = code
        self.details = details


class PeerUnavailable(PeerError):
    """The peer is unknown, did not answer in time, or its breaker is open."""


class HandlerError(Exception):
    """Raised by an RPC handler to answer with a chosen status, for example
    ``HandlerError(grpc.StatusCode.NOT_FOUND, "no session 'c1'")``. Any other
    exception answers ``INTERNAL`` (and is logged)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(
            f"cluster TLS: cannot read the {what} {str(path)!r}: {exc.strerror}"
        ) from None


def tls_server_credentials(
    cert_file: str | Path,
    key_file: str | Path,
    ca_file: str | Path | None = None,
    *,
    require_client_auth: bool = True,
) -> grpc.ServerCredentials:
    """Server credentials from PEM files. With ``require_client_auth`` (mutual TLS,
    the default) a peer must present a certificate signed by ``ca_file``."""
    if require_client_auth and ca_file is None:
        raise ValueError("cluster TLS: require_client_auth needs a ca_file to verify peers with")
    return grpc.ssl_server_credentials(
        [(_read(key_file, "private key"), _read(cert_file, "certificate"))],
        root_certificates=_read(ca_file, "CA certificate") if ca_file is not None else None,
        require_client_auth=require_client_auth,
    )


def tls_client_credentials(
    ca_file: str | Path | None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials from PEM files: the CA that signed the peers' server
    certificates (``None``: the system roots) and this node's client certificate
    (both or neither)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cluster TLS: give both the client certificate and its key, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA certificate") if ca_file is not None else None,
        private_key=_read(key_file, "private key") if key_file is not None else None,
        certificate_chain=_read(cert_file, "certificate") if cert_file is not None else None,
    )


def _socket_name(address: str) -> str:
    """The ``AF_UNIX`` name of a link address: a path, or ``@name`` for the
    abstract namespace."""
    return "\0" + address[1:] if address.startswith("@") else address


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    """One link frame: ``(kind, body)``. ``IncompleteReadError`` at the end of the
    stream, :class:`LinkError` for a frame that cannot be one."""
    n = frame_length(await reader.readexactly(4), limit)
    data = await reader.readexactly(n)
    return data[0], data[1:]


class _LinkConn:
    """The dialing side of a same-host link: its stream and unacknowledged batches."""

    __slots__ = ("reader", "writer", "pending", "room", "task", "closed")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: collections.deque[tuple[int, int]] = collections.deque()  # (seq, n)
        self.room = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed = False


def _check_node_id(node_id: str) -> None:
    # It travels in gRPC metadata, which takes printable ASCII only.
    if not node_id or not node_id.isascii() or not node_id.isprintable():
        raise ValueError(f"cluster node id {node_id!r} must be non-empty printable ASCII")


class _Peer:
    """Client-side state of one peer: channel, queue, breaker and counters."""

    __slots__ = (
        "node_id",
        "address",
        "channel",
        "forward_rpc",
        "unary",
        "queue",
        "wake",
        "full",
        "task",
        "state",
        "failures",
        "opens",
        "retry_at",
        "sequence",
        "in_flight",
        "forwarded",
        "batches",
        "dropped",
        "errors",
        "remote_errors",
        "last_error",
        "link_address",
        "link",
        "link_retry_at",
        "link_backoff",
        "link_forwarded",
        "link_error",
    )

    def __init__(self, node_id: str, address: str, link: str | None = None) -> None:
        self.node_id = node_id
        self.address = address
        self.channel: grpc.aio.Channel | None = None
        self.forward_rpc: Any = None
        self.unary: dict[str, Any] = {}
        self.queue: collections.deque[tuple[Message, str]] = collections.deque()
        self.wake = asyncio.Event()
        self.full = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive transport failures
        self.opens = 0  # consecutive failed probes, for the backoff
        self.retry_at = 0.0
        self.sequence = 0
        self.in_flight = 0
        self.forwarded = 0
        self.batches = 0
        self.dropped = 0
        self.errors = 0  # transport failures (the breaker's input)
        self.remote_errors = 0  # errors the peer answered with
        self.last_error = ""
        self.link_address = link
        self.link: _LinkConn | None = None
        self.link_retry_at = 0.0
        self.link_backoff = 0.0
        self.link_forwarded = 0
        self.link_error = ""

    def stats(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": str(self.state),
            "queued": len(self.queue),
            "in_flight": self.in_flight,
            "forwarded": self.forwarded,
            "batches": self.batches,
            "dropped": self.dropped,
            "errors": self.errors,
            "remote_errors": self.remote_errors,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "link": "off"
            if self.link_address is None
            else ("up" if self.link is not None else "down"),
            "link_forwarded": self.link_forwarded,
            "link_error": self.link_error,
        }


class Peers:
    """This node's gRPC server and its clients of every other node (see the module
    docstring). Create it, ``await start(bind)``, ``set_peer`` for each other node,
    then ``forward``/``call``; ``await stop()`` at shutdown.

    ``queue_max`` bounds each peer's queue (messages); ``batch_max``, ``batch_bytes``
    and ``batch_delay`` bound a batch; ``timeout`` is the deadline of every RPC (a
    ``call`` may pass its own); ``max_message_size`` bounds one gRPC message both
    ways (a batch, a session snapshot). ``server_credentials`` makes the server
    speak TLS (see :func:`tls_server_credentials`); ``client_credentials`` makes
    this node dial its peers with TLS (see :func:`tls_client_credentials`), with
    ``tls_server_name`` as the name to verify instead of the address's host.
    """

    def __init__(
        self,
        node_id: str,
        on_messages: Callable[[str, list[Message]], None],
        *,
        on_targeted: Callable[[str, list[tuple[str, Message]]], None] | None = None,
        batch_max: int = 256,
        batch_bytes: int = 1 << 20,
        batch_delay: float = 0.002,
        queue_max: int = 10_000,
        timeout: float = 2.0,
        breaker_failures: int = 3,
        breaker_reset: float = 1.0,
        breaker_reset_max: float = 30.0,
        max_message_size: int = 256 << 20,
        server_credentials: grpc.ServerCredentials | None = None,
        client_credentials: grpc.ChannelCredentials | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        _check_node_id(node_id)
        for name, value in (
            ("batch_max", batch_max),
            ("batch_bytes", batch_bytes),
            ("queue_max", queue_max),
            ("breaker_failures", breaker_failures),
            ("max_message_size", max_message_size),
        ):
            if value < 1:
                raise ValueError(f"Peers: {name} must be at least 1, not {value}")
        for name, fvalue in (
            ("batch_delay", batch_delay),
            ("timeout", timeout),
            ("breaker_reset", breaker_reset),
            ("breaker_reset_max", breaker_reset_max),
        ):
            if fvalue < 0 or (name == "timeout" and fvalue == 0):
                raise ValueError(f"Peers: {name} must be positive, not {fvalue}")
        self.node_id = node_id
        self.on_messages = on_messages
        self.on_targeted = on_targeted
        self.batch_max = batch_max
        self.batch_bytes = batch_bytes
        self.batch_delay = batch_delay
        self.queue_max = queue_max
        self.timeout = timeout
        self.breaker_failures = breaker_failures
        self.breaker_reset = breaker_reset
        self.breaker_reset_max = max(breaker_reset, breaker_reset_max)
        self.max_message_size = max_message_size
        self.server_credentials = server_credentials
        self.client_credentials = client_credentials
        self.tls_server_name = tls_server_name
        self.port: int | None = None
        self.ready: Callable[[], bool] = lambda: True
        self._server: grpc.aio.Server | None = None
        self._peers: dict[str, _Peer] = {}
        self._handlers: dict[str, Handler] = {"Ping": self._ping}
        self._closing = False
        self._dropped_no_peer = 0
        self._retired: collections.Counter[str] = collections.Counter()  # removed peers
        self._received = 0
        self._received_batches = 0
        self._served_errors = 0
        #: This node's same-host link: its address (a path or ``@name``), server,
        #: the socket file's (device, inode) to remove at stop, the dialers' streams.
        self.link_address: str | None = None
        self._link_server: asyncio.Server | None = None
        self._link_file: tuple[int, int] | None = None
        self._link_clients: set[asyncio.StreamWriter] = set()
        self._link_received = 0

    # --- lifecycle ---------------------------------------------------------------------

    def _options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_send_message_length", self.max_message_size),
            ("grpc.max_receive_message_length", self.max_message_size),
        ]

    async def start(self, bind: str, *, link: str | None = None) -> int:
        """Serve on ``bind`` (``host:port``; port 0 picks a free one); return the
        bound port. With ``link`` (a socket path, or ``@name`` for Linux's abstract
        namespace) also serve forwarded batches of same-host peers there."""
        if self._server is not None:
            raise RuntimeError("Peers already started")
        # No SO_REUSEPORT (grpc's default): a second node on a taken port must fail,
        # not share the port and receive half of the first node's traffic.
        server = grpc.aio.server(options=[*self._options(), ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((_Service(self),))
        try:
            if self.server_credentials is not None:
                port = server.add_secure_port(bind, self.server_credentials)
            else:
                port = server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise OSError(f"cluster: cannot listen on {bind!r}: {exc}") from None
        if not port:
            raise OSError(f"cluster: cannot listen on {bind!r} (address in use or invalid)")
        await server.start()
        self._server = server
        self._closing = False
        self.port = port
        if link is not None:
            try:
                await self.start_link(link)
            except BaseException:
                self._server = None
                await server.stop(None)
                raise
        return port

    async def start_link(self, address: str) -> None:
        """Serve forwarded batches of same-host peers at ``address`` (a socket path,
        replaced if a stale socket is there, or ``@name``); OSError when it cannot."""
        if self._link_server is not None:
            raise RuntimeError("the same-host link is already served")
        if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "SO_PEERCRED"):
            raise OSError("cluster link: Unix sockets with peer credentials need Linux")
        name = _socket_name(address)
        if not address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISSOCK(os.lstat(name).st_mode):
                    raise OSError(f"cluster link: {address!r} exists and is not a socket")
                os.unlink(name)  # left by a run that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
            if not address.startswith("@"):
                os.chmod(name, 0o600)
                st = os.stat(name)
                self._link_file = (st.st_dev, st.st_ino)
            self._link_server = await asyncio.start_unix_server(self._serve_link, sock=sock)
        except BaseException:
            sock.close()
            self._unlink(address)
            raise
        self.link_address = address

    def _unlink(self, address: str) -> None:
        """Remove the link's socket file if it is still the one this node bound."""
        known, self._link_file = self._link_file, None
        if known is None or address.startswith("@"):
            return
        with contextlib.suppress(OSError):
            st = os.stat(address)
            if (st.st_dev, st.st_ino) == known:
                os.unlink(address)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop: give each peer's queued messages up to ``timeout`` seconds (default
        the RPC timeout) to go out, count what is left as dropped, close the
        channels and the server."""
        self._closing = True
        budget = self.timeout if timeout is None else timeout
        peers = list(self._peers.values())
        for peer in peers:
            peer.full.set()  # no batch delay while draining
        if peers and budget > 0:
            deadline = time.monotonic() + budget
            while time.monotonic() < deadline and any(
                (p.queue or p.in_flight) and p.state is BreakerState.CLOSED for p in peers
            ):
                await asyncio.sleep(0.005)
        for node_id in list(self._peers):
            await self._remove(node_id)
        link_server, self._link_server = self._link_server, None
        if link_server is not None:
            link_server.close()
            for writer in list(self._link_clients):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link_server.wait_closed(), 1.0)
            if self.link_address is not None:
                self._unlink(self.link_address)
            self.link_address = None
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=min(budget, 1.0))

    # --- peers -------------------------------------------------------------------------

    def set_peer(self, node_id: str, address: str | None, *, link: str | None = None) -> None:
        """Know ``node_id`` at ``address`` (``host:port``), forget it (``None``), or
        move it to a new address (its queue is kept, its breaker reset). ``link``:
        the peer's same-host link socket, to forward over instead of gRPC (``None``:
        gRPC only); a new value closes the current link."""
        if node_id == self.node_id:
            raise ValueError(f"node {node_id!r} is this node, not a peer")
        peer = self._peers.get(node_id)
        if address is None:
            if peer is not None:
                asyncio.get_running_loop().create_task(self._remove(node_id))
            return
        _check_node_id(node_id)
        if not address or ":" not in address:
            raise ValueError(f"peer {node_id!r}: address {address!r} is not host:port")
        if peer is not None and peer.link_address != link:
            self._link_drop(peer, "the peer's link address changed")
            peer.link_address = link
            peer.link_retry_at = peer.link_backoff = 0.0
        if peer is not None and peer.address == address:
            return
        if peer is None:
            peer = _Peer(node_id, address, link)
            self._peers[node_id] = peer
            peer.task = asyncio.get_running_loop().create_task(
                self._run(peer), name=f"fluxmq-cluster-peer-{node_id}"
            )
        else:
            old = peer.channel
            if old is not None:
                asyncio.get_running_loop().create_task(old.close())
            peer.address = address
            peer.state = BreakerState.CLOSED
            peer.failures = peer.opens = 0
            peer.link_retry_at = peer.link_backoff = 0.0  # restarted: try the link at once
        self._connect(peer)
        peer.wake.set()

    def peers(self) -> dict[str, str]:
        """node id -> address of every known peer."""
        return {n: p.address for n, p in self._peers.items()}

    def _connect(self, peer: _Peer) -> None:
        options = self._options() + [
            # Reconnect soon after a peer comes back; the breaker does the pacing.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self.client_credentials is not None:
            if self.tls_server_name:
                options.append(("grpc.ssl_target_name_override", self.tls_server_name))
            channel = grpc.aio.secure_channel(peer.address, self.client_credentials, options)
        else:
            channel = grpc.aio.insecure_channel(peer.address, options)
        peer.channel = channel
        peer.unary = {
            name: channel.unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString,
            )
            for name, (req, resp) in RPCS.items()
        }
        peer.forward_rpc = peer.unary["Forward"]

    def _remove(self, node_id: str) -> Coroutine[Any, Any, None]:
        """Forget ``node_id`` now (``forward`` drops from here on); the returned
        awaitable finishes its sender task and closes its channel."""
        peer = self._peers.pop(node_id, None)
        if peer is None:
            return asyncio.sleep(0)
        peer.dropped += len(peer.queue)
        peer.queue.clear()
        self._link_drop(peer, "peer removed")
        retired = self._retired
        for name in _TOTALS:
            retired[name] += getattr(peer, name)
        return self._close_peer(peer)

    async def _close_peer(self, peer: _Peer) -> None:
        if peer.task is not None:
            peer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await peer.task
        if peer.channel is not None:
            await peer.channel.close()

    # --- forwarding --------------------------------------------------------------------

    def forward(self, node_id: str, message: Message, target: str = "") -> bool:
        """Queue ``message`` for ``node_id``'s local delivery (``target`` empty) or for
        the driver-defined delivery ``target`` there. Never blocks; False when the
        message was dropped (unknown peer, open breaker, full queue, stopping)."""
        peer = self._peers.get(node_id)
        if peer is None:
            self._dropped_no_peer += 1
            return False
        queue = peer.queue
        if self._closing or peer.state is not _CLOSED or len(queue) >= self.queue_max:
            peer.dropped += 1
            return False
        queue.append((message, target))
        n = len(queue)
        if n == 1:
            peer.wake.set()
        if n >= self.batch_max:
            peer.full.set()
        return True

    def _take_batch(self, peer: _Peer) -> list[tuple[Message, str]]:
        queue = peer.queue
        batch = [queue.popleft()]
        size = len(batch[0][0].payload)
        limit, cap = self.batch_max, self.batch_bytes
        while queue and len(batch) < limit:
            nxt = len(queue[0][0].payload)
            if size + nxt > cap:
                break
            size += nxt
            batch.append(queue.popleft())
        return batch

    async def _run(self, peer: _Peer) -> None:
        """The peer's sender: batches out while the breaker is closed, probes while
        it is open."""
        loop = asyncio.get_running_loop()
        while True:
            if peer.state is BreakerState.OPEN:
                await asyncio.sleep(max(0.0, peer.retry_at - loop.time()))
                peer.state = BreakerState.HALF_OPEN
                await self._probe(peer)
                continue
            if not peer.queue:
                peer.wake.clear()
                await peer.wake.wait()
                continue
            if len(peer.queue) < self.batch_max and self.batch_delay > 0 and not self._closing:
                peer.full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.batch_delay):
                        await peer.full.wait()
            if peer.state is not BreakerState.CLOSED or not peer.queue:
                continue
            await self._send(peer, self._take_batch(peer))

    async def _send(self, peer: _Peer, batch: list[tuple[Message, str]]) -> None:
        if peer.link_address is not None:
            conn = peer.link
            if conn is None and asyncio.get_running_loop().time() >= peer.link_retry_at:
                conn = await self._link_open(peer)
            if conn is not None and not conn.closed:
                await self._send_link(peer, conn, batch)
                return
        peer.sequence += 1
        try:
            request = forward_batch_to_proto(batch, peer.sequence)
        except CodecError as exc:
            # One unconvertible message must not sink the rest of the batch.
            log.warning("cluster: a message for %s cannot be forwarded: %s", peer.node_id, exc)
            keep = []
            for item in batch:
                try:
                    forward_batch_to_proto([item], 0)
                except CodecError:
                    peer.dropped += 1
                else:
                    keep.append(item)
            if not keep:
                return
            batch = keep
            request = forward_batch_to_proto(batch, peer.sequence)
        peer.in_flight += len(batch)
        try:
            await peer.forward_rpc(request, timeout=self.timeout, metadata=self._metadata(peer))
        except grpc.aio.AioRpcError as exc:
            peer.dropped += len(batch)
            self._failed(peer, "Forward", exc)
        except Exception:  # a bug must not end the peer's sender for good
            peer.dropped += len(batch)
            log.exception("cluster: forwarding a batch to %s failed", peer.node_id)
        else:
            peer.batches += 1
            peer.forwarded += len(batch)
            self._succeeded(peer)
        finally:
            peer.in_flight -= len(batch)

    # --- the same-host link, dialing side ----------------------------------------------

    async def _link_open(self, peer: _Peer) -> _LinkConn | None:
        """Connect to the peer's link and shake hands; None (and a retry time) when
        it cannot be used now."""
        address = peer.link_address
        assert address is not None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(_socket_name(address))
                writer.write(encode_hello(self.node_id, peer.node_id))
                kind, body = await _read_frame(reader, _LINK_SMALL_FRAME)
            if kind == REFUSE:
                status, details = decode_refuse(body)
                code = _STATUS.get(status, grpc.StatusCode.UNKNOWN)
                raise LinkError(f"refused: {code.name}: {details}")
            if kind != WELCOME:
                raise LinkError(f"expected a welcome, got a frame of kind {kind}")
            node = decode_welcome(body)
            if node != peer.node_id:
                raise LinkError(f"this is node {node!r}, not {peer.node_id!r}")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, LinkError) as exc:
            if writer is not None:
                writer.close()
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._link_failed(peer, f"cannot open {address!r}: {why or type(exc).__name__}")
            return None
        if peer.link_address != address or self._peers.get(peer.node_id) is not peer:
            writer.close()  # moved or removed meanwhile
            return None
        conn = _LinkConn(reader, writer)
        conn.task = asyncio.get_running_loop().create_task(
            self._link_acks(peer, conn), name=f"fluxmq-cluster-link-{peer.node_id}"
        )
        peer.link = conn
        peer.link_backoff = 0.0
        peer.link_error = ""
        log.info("cluster: forwarding to %s over the same-host link %s", peer.node_id, address)
        return conn

    def _link_failed(self, peer: _Peer, why: str) -> None:
        if why != peer.link_error:
            log.info("cluster: link to %s unusable (%s): forwarding over gRPC", peer.node_id, why)
        peer.link_error = why
        peer.link_backoff = min(max(LINK_RETRY_MIN, peer.link_backoff * 2), LINK_RETRY_MAX)
        peer.link_retry_at = asyncio.get_running_loop().time() + peer.link_backoff

    def _link_drop(self, peer: _Peer, why: str, *, failed: bool = False) -> None:
        """Close the peer's link: its unacknowledged messages count as dropped."""
        conn = peer.link
        if conn is None:
            return
        peer.link = None
        conn.closed = True
        lost = sum(n for _seq, n in conn.pending)
        conn.pending.clear()
        peer.in_flight -= lost
        peer.dropped += lost
        conn.room.set()
        conn.writer.close()
        task = conn.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if failed:
            self._link_failed(peer, why)

    async def _send_link(
        self, peer: _Peer, conn: _LinkConn, batch: list[tuple[Message, str]]
    ) -> None:
        entries = []
        # Keep each encoding on its message only when another peer may want it too
        # (with one peer, the cache would be a dict per message for nothing).
        cache = len(self._peers) > 1
        for item in batch:
            message, target = item
            try:
                entries.append((encode_message(message, cache=cache), target))
            except CodecError as exc:
                # One unconvertible message must not sink the rest of the batch.
                log.warning("cluster: a message for %s cannot be forwarded: %s", peer.node_id, exc)
                peer.dropped += 1
        if not entries:
            return
        peer.sequence += 1
        try:
            frame = encode_batch(peer.sequence, entries)
        except CodecError as exc:
            log.warning("cluster: a batch for %s cannot be forwarded: %s", peer.node_id, exc)
            peer.dropped += len(entries)
            return
        n = len(entries)
        conn.writer.write(frame)
        conn.pending.append((peer.sequence, n))
        peer.in_flight += n
        if (
            len(conn.pending) < LINK_WINDOW
            and conn.writer.transport.get_write_buffer_size() < _LINK_WRITE_BUFFER
        ):
            return  # room for more: no wait (the common case)
        try:
            async with asyncio.timeout(self.timeout):
                while len(conn.pending) >= LINK_WINDOW and not conn.closed:
                    conn.room.clear()
                    await conn.room.wait()
                if not conn.closed:
                    await conn.writer.drain()
        except TimeoutError:
            # As a Forward RPC past its deadline: a transport failure of the peer.
            peer.last_error = "Forward: DEADLINE_EXCEEDED: no answer on the same-host link"
            self._link_drop(peer, "no answer within the timeout", failed=True)
            peer.errors += 1
            peer.failures += 1
            if peer.state is BreakerState.HALF_OPEN or peer.failures >= self.breaker_failures:
                self._open(peer)
        except (ConnectionError, OSError) as exc:
            self._link_drop(peer, f"write failed: {exc}", failed=True)

    async def _link_acks(self, peer: _Peer, conn: _LinkConn) -> None:
        """Read the peer's ACKs, in order, and count each batch as its gRPC reply
        would be counted."""
        why = "closed by the peer"
        try:
            while True:
                kind, body = await _read_frame(conn.reader, _LINK_SMALL_FRAME)
                if kind != ACK:
                    raise LinkError(f"expected an ack, got a frame of kind {kind}")
                sequence, status, accepted, details = decode_ack(body)
                if not conn.pending or conn.pending[0][0] != sequence:
                    raise LinkError(f"ack for batch {sequence}, which is not the next one")
                _seq, n = conn.pending.popleft()
                peer.in_flight -= n
                if status == 0:
                    peer.batches += 1
                    peer.forwarded += n
                    peer.link_forwarded += n
                    self._succeeded(peer)
                else:
                    code = _STATUS.get(status, grpc.StatusCode.UNKNOWN)
                    peer.dropped += n
                    peer.remote_errors += 1
                    peer.last_error = f"Forward: {code.name}: {details}"
                conn.room.set()
        except asyncio.CancelledError:
            return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except LinkError as exc:
            why = str(exc)
            log.warning("cluster: link to %s: %s; closing it", peer.node_id, why)
        if peer.link is conn:
            self._link_drop(peer, why, failed=True)

    # --- breaker -----------------------------------------------------------------------

    def _failed(self, peer: _Peer, rpc: str, exc: grpc.aio.AioRpcError) -> bool:
        """Record a failed RPC; True when it was a transport failure."""
        code = exc.code()
        peer.last_error = f"{rpc}: {code.name}: {exc.details()}"
        if code not in _TRANSPORT_FAILURES:
            peer.remote_errors += 1
            return False
        peer.errors += 1
        peer.failures += 1
        if peer.state is BreakerState.HALF_OPEN or peer.failures >= self.breaker_failures:
            self._open(peer)
        return True

    def _open(self, peer: _Peer) -> None:
        if peer.state is not BreakerState.OPEN:
            log.warning(
                "cluster: peer %s (%s) unreachable, breaker open: %s",
                peer.node_id,
                peer.address,
                peer.last_error,
            )
        peer.state = BreakerState.OPEN
        peer.opens += 1
        delay = min(self.breaker_reset * 2 ** (peer.opens - 1), self.breaker_reset_max)
        peer.retry_at = asyncio.get_running_loop().time() + delay
        if peer.queue:
            peer.dropped += len(peer.queue)
            peer.queue.clear()
        peer.wake.set()

    def _succeeded(self, peer: _Peer) -> None:
        peer.failures = 0
        if peer.state is not BreakerState.CLOSED:
            log.info(
                "cluster: peer %s (%s) answers again, breaker closed", peer.node_id, peer.address
            )
            peer.state = BreakerState.CLOSED
        peer.opens = 0

    async def _probe(self, peer: _Peer) -> None:
        try:
            await peer.unary["Ping"](
                pb.PingRequest(sent_at=time.time()),
                timeout=self.timeout,
                metadata=self._metadata(peer),
            )
        except grpc.aio.AioRpcError as exc:
            if not self._failed(peer, "Ping", exc):
                self._succeeded(peer)  # it answered, even if with an error
        else:
            self._succeeded(peer)

    # --- unary calls -------------------------------------------------------------------

    def _metadata(self, peer: _Peer) -> tuple[tuple[str, str], ...]:
        return ((NODE_KEY, self.node_id), (TO_KEY, peer.node_id))

    async def call(
        self, node_id: str, rpc_name: str, request: Any, *, timeout: float | None = None
    ) -> Any:
        """Call the unary RPC ``rpc_name`` (see :data:`RPCS`) on ``node_id`` and
        return its response message. Raises :class:`PeerUnavailable` (unknown peer,
        open breaker, no answer in ``timeout``) or :class:`PeerError` (the peer
        answered with an error status, such as ``UNIMPLEMENTED``)."""
        if rpc_name not in UNARY_RPCS:
            raise ValueError(f"unknown cluster RPC {rpc_name!r}; one of {sorted(UNARY_RPCS)}")
        req_type = RPCS[rpc_name][0]
        if not isinstance(request, req_type):
            raise TypeError(
                f"{rpc_name} takes a {req_type.__name__}, not a {type(request).__name__}"
            )
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerUnavailable(node_id, rpc_name, grpc.StatusCode.UNAVAILABLE, "unknown peer")
        if peer.state is not BreakerState.CLOSED:
            raise PeerUnavailable(
                node_id, rpc_name, grpc.StatusCode.UNAVAILABLE, f"breaker open ({peer.last_error})"
            )
        try:
            response = await peer.unary[rpc_name](
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata(peer),
            )
        except grpc.aio.AioRpcError as exc:
            cls = PeerUnavailable if self._failed(peer, rpc_name, exc) else PeerError
            raise cls(node_id, rpc_name, exc.code(), exc.details() or "") from None
        self._succeeded(peer)
        return response

    # --- server side -------------------------------------------------------------------

    def handle(self, rpc_name: str, fn: Handler | None) -> None:
        """Serve the unary RPC ``rpc_name`` with ``async fn(from_node, request) ->
        response`` (``None``: stop serving it). ``Ping`` has a built-in handler that
        reports this node's id, clock and ``self.ready()``."""
        if rpc_name not in UNARY_RPCS:
            raise ValueError(f"unknown cluster RPC {rpc_name!r}; one of {sorted(UNARY_RPCS)}")
        if fn is None:
            self._handlers.pop(rpc_name, None)
        else:
            self._handlers[rpc_name] = fn

    async def _ping(self, from_node: str, request: Any) -> Any:
        return pb.PingResponse(node_id=self.node_id, time=time.time(), ready=bool(self.ready()))

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str | None, str]:
        """The calling node's id, or (None, why) when the call must be refused."""
        meta = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        caller = meta.get(NODE_KEY)
        if not caller:
            return None, f"a cluster call must carry the caller's node id ({NODE_KEY})"
        to = meta.get(TO_KEY)
        if to and to != self.node_id:
            return None, f"this is node {self.node_id!r}, not {to!r} (stale address?)"
        return caller, ""

    async def _serve_forward(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        caller, why = self._caller(context)
        if caller is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)
        assert caller is not None
        try:
            entries = forward_batch_from_proto(request)
        except CodecError as exc:
            self._served_errors += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad forward batch: {exc}")
        code, details = self._accept(caller, entries)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, details)
        return pb.ForwardAck(accepted=len(entries))

    def _accept(
        self, caller: str, entries: list[tuple[Message, str]]
    ) -> tuple[grpc.StatusCode, str]:
        """Deliver a forwarded batch (either transport); the status to answer with."""
        if self.on_targeted is None and any(t for _m, t in entries):
            self._served_errors += 1
            return (
                grpc.StatusCode.UNIMPLEMENTED,
                f"node {self.node_id!r} takes no targeted deliveries (no on_targeted)",
            )
        try:
            self._deliver(caller, entries)
        except Exception as exc:
            self._served_errors += 1
            log.exception("cluster: delivering a batch from %s failed", caller)
            return grpc.StatusCode.INTERNAL, f"delivery failed: {exc!r}"
        self._received += len(entries)
        self._received_batches += 1
        return grpc.StatusCode.OK, ""

    # --- the same-host link, serving side ----------------------------------------------

    async def _serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One dialer of this node's link: a HELLO, then BATCH frames each answered
        by an ACK in order. A frame that cannot be one closes the link (the dialer
        falls back to gRPC and tries again later); a batch that frames well but does
        not decode is answered INVALID_ARGUMENT, as the Forward RPC answers it."""
        self._link_clients.add(writer)
        caller = "?"
        try:
            sock = writer.get_extra_info("socket")
            uid = None
            with contextlib.suppress(OSError, AttributeError):
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                uid = struct.unpack("3i", creds)[1]
            if uid != os.getuid():
                writer.write(
                    encode_refuse(
                        grpc.StatusCode.PERMISSION_DENIED.value[0],
                        "the cluster link takes processes of the broker's own user only",
                    )
                )
                log.warning("cluster link: refused a process of user %s", uid)
                return
            async with asyncio.timeout(self.timeout):
                kind, body = await _read_frame(reader, _LINK_SMALL_FRAME)
            if kind != HELLO:
                raise LinkError(f"expected a hello, got a frame of kind {kind}")
            caller, to = decode_hello(body)
            if to != self.node_id:
                writer.write(
                    encode_refuse(
                        grpc.StatusCode.FAILED_PRECONDITION.value[0],
                        f"this is node {self.node_id!r}, not {to!r} (stale address?)",
                    )
                )
                return
            writer.write(encode_welcome(self.node_id))
            limit = self.max_message_size
            transport = writer.transport
            while True:
                kind, body = await _read_frame(reader, limit)
                if kind != BATCH:
                    raise LinkError(f"expected a forward batch, got a frame of kind {kind}")
                writer.write(self._serve_link_batch(caller, body))
                if transport.get_write_buffer_size() > _LINK_ACK_BUFFER:
                    await writer.drain()
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self._served_errors += 1
                log.warning("cluster link from %s: stream cut inside a frame; closed", caller)
        except LinkError as exc:
            self._served_errors += 1
            log.warning("cluster link from %s: %s; closed", caller, exc)
        except (ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._link_clients.discard(writer)
            writer.close()

    def _serve_link_batch(self, caller: str, body: bytes) -> bytes:
        sequence = batch_sequence(body)
        try:
            _seq, entries = decode_batch(body)
        except CodecError as exc:
            self._served_errors += 1
            return encode_ack(
                sequence,
                grpc.StatusCode.INVALID_ARGUMENT.value[0],
                0,
                f"bad forward batch: {exc}",
            )
        code, details = self._accept(caller, entries)
        if code is not grpc.StatusCode.OK:
            return encode_ack(sequence, code.value[0], 0, details)
        self._link_received += len(entries)
        return encode_ack(sequence, 0, len(entries))

    def _deliver(self, caller: str, entries: list[tuple[Message, str]]) -> None:
        """Hand runs of untargeted and targeted messages to their callbacks, in order."""
        i, n = 0, len(entries)
        while i < n:
            targeted = bool(entries[i][1])
            j = i + 1
            while j < n and bool(entries[j][1]) == targeted:
                j += 1
            run = entries[i:j]
            if targeted:
                assert self.on_targeted is not None
                self.on_targeted(caller, [(t, m) for m, t in run])
            else:
                self.on_messages(caller, [m for m, _t in run])
            i = j

    async def _serve_unary(
        self, name: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        caller, why = self._caller(context)
        if caller is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)
        assert caller is not None
        fn = self._handlers.get(name)
        if fn is None:
            self._served_errors += 1
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"node {self.node_id!r} serves no {name} (its cluster driver registered no handler)",
            )
        assert fn is not None
        try:
            response = await fn(caller, request)
        except HandlerError as exc:
            self._served_errors += 1
            await context.abort(exc.code, exc.details)
        except CodecError as exc:
            self._served_errors += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {exc}")
        except Exception as exc:
            self._served_errors += 1
            log.exception("cluster: %s from %s failed", name, caller)
            await context.abort(grpc.StatusCode.INTERNAL, f"{name} failed: {exc!r}")
        expected = RPCS[name][1]
        if not isinstance(response, expected):
            self._served_errors += 1
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"{name} handler returned a {type(response).__name__}, not a {expected.__name__}",
            )
        return response

    # --- stats -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since start, totals and per peer. ``dropped`` includes messages for
        unknown peers (``dropped_no_peer``); ``peer_errors`` counts transport failures
        (the breaker's input) and ``remote_errors`` errors peers answered with."""
        per = {n: p.stats() for n, p in self._peers.items()}
        values = list(self._peers.values())
        totals = {
            name: self._retired[name] + sum(getattr(p, name) for p in values) for name in _TOTALS
        }
        return {
            "node_id": self.node_id,
            "port": self.port,
            "forwarded": totals["forwarded"],
            "batches": totals["batches"],
            "dropped": totals["dropped"] + self._dropped_no_peer,
            "dropped_no_peer": self._dropped_no_peer,
            "peer_errors": totals["errors"],
            "remote_errors": totals["remote_errors"],
            "received": self._received,
            "received_batches": self._received_batches,
            "served_errors": self._served_errors,
            "link": self.link_address,
            "link_forwarded": totals["link_forwarded"],
            "link_received": self._link_received,
            "peers": per,
        }


class _Service(grpc.GenericRpcHandler):
    """Looks handlers up per call, so ``handle()`` works after ``start()``."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        for name, (req, resp) in RPCS.items():
            if name == "Forward":
                behavior: Any = peers._serve_forward
            else:
                behavior = self._unary(name)
            self._methods[f"/{SERVICE}/{name}"] = grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString,
            )

    def _unary(self, name: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def behavior(request: Any, context: Any) -> Any:
            return await self.peers._serve_unary(name, request, context)

        return behavior

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        return self._methods.get(handler_call_details.method)
