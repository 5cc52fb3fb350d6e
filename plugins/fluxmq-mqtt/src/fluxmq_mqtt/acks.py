"""PUBACK and PUBREC of one connection, sans-IO: encoded here, and answered later
when the answer waits for something else.

:class:`AckWriter` is a half of :class:`~fluxmq_mqtt.connection.Connection` (like
``outbound.py`` and ``subscribe.py``). It encodes the acknowledgement of an inbound
QoS 1/2 PUBLISH for the connection's protocol version (a reason code and Reason
String for 5.0 only: 3.x has no negative ack), and keeps the *deferred* acks: a
PUBLISH whose answer depends on work the connection does not do itself (a queue
append becoming durable, ``queues.py``) reserves its ack with
:meth:`~AckWriter.defer_ack` and answers it with :meth:`~AckWriter.resolve_ack`.
Acks leave in PUBLISH order: an ack answered at once with :meth:`~AckWriter.ack_now`
waits behind the deferred ones before it, and each unanswered one counts against
the client's Receive Maximum (``held_count``).

What it does not do: decide the reason code (the caller does), hold acks for the
store's sync (``Connection._ack`` and the adapter), any I/O or awaiting.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, cast

from fluxmq_mqtt.codec import MQTT_5, Properties, Puback, Pubrec
from fluxmq_mqtt.state import Phase

if TYPE_CHECKING:
    from fluxmq_mqtt.connection import Connection

__all__ = ["AckWriter", "DeferredAck"]

#: The Reason String of a refusal whose caller gave none.
REASONS = {
    0x87: "not authorized",
    0x97: "publish rate exceeded",
    0x99: "payload is not valid UTF-8",
}


class DeferredAck:
    """A PUBACK (QoS 1) or PUBREC (QoS 2) reserved by :meth:`AckWriter.defer_ack`
    and answered by :meth:`AckWriter.resolve_ack`."""

    __slots__ = ("data", "done", "fut", "pid", "qos")

    def __init__(self, qos: int, pid: int) -> None:
        self.qos = qos
        self.pid = pid
        self.data = b""
        self.done = False
        self.fut: Any = None  # what the answer waits for (the caller's, if it says)


class AckWriter:
    """Ack encoding and the deferred acks of a connection (a base of ``Connection``)."""

    __slots__ = ()

    # Provided by Connection (the methods below that change its state go through
    # ``cast("Connection", self)``: the slots they assign are Connection's).
    version: int
    phase: Phase
    problem_info: bool

    if TYPE_CHECKING:

        def _v5(self, packet: Any) -> bytes: ...  # Connection's

    def _encode_ack(self, cls: type, pid: int, code: int, text: str) -> bytes:
        """A PUBACK or PUBREC; 3.x has no reason codes (a refusal is acknowledged)."""
        if code and self.version == MQTT_5:
            props = None
            if self.problem_info and code >= 0x80:
                props = Properties(reason_string=text[:200] or REASONS.get(code, "refused"))
            return self._v5(cls(pid, code, props))
        return (b"\x40\x02" if cls is Puback else b"\x50\x02") + pid.to_bytes(2, "big")

    def defer_ack(self, qos: int, pid: int) -> DeferredAck:
        """Reserve the PUBACK (``qos`` 1) or PUBREC (``qos`` 2) of the PUBLISH being
        handled, for an answer that comes later (a queue append becoming durable).

        Acks leave in PUBLISH order: this one, and any :meth:`ack_now` after it,
        wait until it is resolved. Until then it counts against Receive Maximum. A
        QoS 2 publish still needs ``session.hold_inbound`` for its PUBREL.
        """
        conn = cast("Connection", self)
        acks = conn.queue_acks
        if acks is None:
            acks = conn.queue_acks = deque()
        ack = DeferredAck(qos, pid)
        acks.append(ack)
        conn.held_count += 1
        return ack

    def resolve_ack(self, ack: DeferredAck, code: int = 0, text: str = "") -> None:
        """Answer a deferred ack (``code`` >= 0x80 refuses it for 5.0 clients, with
        ``text`` as the Reason String; 3.x clients get a plain ack), write every ack
        now due in order, and wake the adapter: this is called from outside
        ``receive``. After the connection closed nothing is written."""
        if ack.done:
            return
        self.answer_ack(ack, code, text)
        self.write_due_acks()

    def answer_ack(self, ack: DeferredAck, code: int = 0, text: str = "") -> None:
        """Encode the answer of a deferred ack without writing anything: several
        answered together go out with one :meth:`write_due_acks`."""
        ack.done = True
        ack.data = self._encode_ack(Puback if ack.qos == 1 else Pubrec, ack.pid, code, text)

    def write_due_acks(self) -> None:
        """Write every answered ack now due in order, and wake the adapter."""
        conn = cast("Connection", self)
        acks = conn.queue_acks
        wrote = False
        while acks and acks[0].done:
            due = acks.popleft()
            conn.held_count -= 1
            if conn.phase is not Phase.CLOSED:
                conn.out += due.data
                wrote = True
        if wrote or conn.phase is Phase.CLOSED:
            conn._wake()

    def ack_now(self, qos: int, pid: int | None, code: int = 0, text: str = "") -> None:
        """Answer the PUBLISH being handled at once (QoS 0: nothing to answer), but
        after the deferred acks of earlier PUBLISHes. Like :meth:`resolve_ack`, a
        refusal (``code`` >= 0x80) reaches 5.0 clients only."""
        if not qos or pid is None:
            return
        conn = cast("Connection", self)
        data = self._encode_ack(Puback if qos == 1 else Pubrec, pid, code, text)
        acks = conn.queue_acks
        if acks:
            ack = DeferredAck(qos, pid)
            ack.data = data
            ack.done = True
            acks.append(ack)
            conn.held_count += 1
        else:
            conn.out += data
