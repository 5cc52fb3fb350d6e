"""Sans-IO AMQP 1.0 codec: the type system, composites, frames and messages.

No I/O, no clock, no asyncio: bytes in, typed values out, and back. Malformed input
raises :class:`AMQPError` carrying the spec's error condition and nothing else.
"""

from fluxmq_amqp1.codec.types import AMQPError

__all__ = ["AMQPError"]
