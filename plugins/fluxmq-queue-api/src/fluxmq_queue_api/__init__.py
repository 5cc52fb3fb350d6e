"""FluxMQ queue API plugin: ``fluxmq.queue.v1.QueueService`` over gRPC and Connect.

Layout: ``service`` implements every method on the core queue manager, protocol
free; ``grpc_server`` and ``connect`` are its two faces; ``client`` is an asyncio
client; ``_proto`` is the generated code (``proto/generate.py``).
"""

from __future__ import annotations

SERVICE = "fluxmq.queue.v1.QueueService"

__all__ = ["SERVICE"]
