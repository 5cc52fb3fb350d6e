"""The MQTT connection and QoS state rules, as data (h11's ``_state.py``, for MQTT).

Theory of operation
===================

A network connection goes through four phases::

    AWAIT_CONNECT --CONNECT--> AUTHENTICATING --login decided--> CONNECTED --> CLOSED
          |                          |                               |
          +------ anything else -----+---------- error / close ------+----> CLOSED

``AWAIT_CONNECT``: only CONNECT is allowed. ``AUTHENTICATING``: the login is being
decided (a password check through the core's auth service, or an MQTT 5 enhanced
authentication exchange of AUTH packets); the client may already have sent more
packets, which wait unprocessed until the decision, except AUTH and DISCONNECT.
``CONNECTED``: everything a client may send. ``CLOSED``: nothing is processed any
more. A packet type not listed for the phase it arrives in is a protocol error
(MQTT 5: DISCONNECT 0x82; 3.x: the connection is closed). Packets a client may never
send (CONNACK, SUBACK...) are already refused by the codec's server-role decoder.

The QoS flows are tables of ``(state, packet received) -> next state``. Outbound
entries live in the session's in-flight map (they survive the connection) and
inbound QoS 2 packet ids in its inbound map, so a reconnecting client resumes them:

outbound QoS 1::  PUBLISH sent --PUBACK--> done
outbound QoS 2::  PUBLISH sent --PUBREC--> (we send PUBREL) PUBREL sent --PUBCOMP--> done
                  (a PUBREC with a reason code >= 0x80 ends the flow at once)
inbound QoS 2::   PUBLISH received (we send PUBREC) --PUBREL--> (we send PUBCOMP) done

On reconnect, outbound entries in ``SENT_PUBLISH`` are resent with DUP set, entries
in ``SENT_PUBREL`` have their PUBREL resent (MQTT 5 forbids resending at any other
time, and this broker does not). The inbound QoS 2 flow has one step, so it is no
table: the session's inbound map holds the packet ids in ``RECEIVED`` and a PUBREL
removes them. This module holds no behaviour: the connection looks up ``ALLOWED``,
the session ``next_outbound`` and ``RESEND``, and ``python -m fluxmq_mqtt.state``
prints the diagram.
"""

from __future__ import annotations

import enum

from fluxmq_mqtt.codec import (
    Auth,
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Pubcomp,
    Publish,
    PublishRun,
    Pubrec,
    Pubrel,
    Subscribe,
    Unsubscribe,
)

__all__ = [
    "ALLOWED",
    "SUSPEND",
    "OUTBOUND_QOS1",
    "OUTBOUND_QOS2",
    "Phase",
    "QoSState",
    "RESEND",
    "next_outbound",
]


class Phase(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    AUTHENTICATING = "authenticating"
    CONNECTED = "connected"
    CLOSED = "closed"


#: Packet classes a client may send in each phase; anything else is 0x82.
ALLOWED: dict[Phase, frozenset[type]] = {
    Phase.AWAIT_CONNECT: frozenset({Connect}),
    Phase.AUTHENTICATING: frozenset({Auth, Disconnect}),
    Phase.CONNECTED: frozenset(
        {
            Publish,
            PublishRun,
            Puback,
            Pubrec,
            Pubrel,
            Pubcomp,
            Subscribe,
            Unsubscribe,
            Pingreq,
            Disconnect,
            Auth,
        }
    ),
    Phase.CLOSED: frozenset(),
}


#: What a packet handler returns when it needs an async answer (a login, an ACL
#: decision): the packet stays first in the backlog and processing stops until the
#: answer is fed back, then the handler runs again from the start.
SUSPEND = object()


class QoSState(enum.IntEnum):
    """Where one packet id stands. Plain ints so they persist as record values."""

    SENT_PUBLISH = 1  # outbound: PUBLISH sent, waiting for PUBACK (QoS 1) / PUBREC (QoS 2)
    SENT_PUBREL = 2  # outbound QoS 2: PUBREL sent, waiting for PUBCOMP
    DONE = 3  # the flow is finished: the entry is removed
    RECEIVED = 4  # inbound QoS 2: PUBREC sent, waiting for PUBREL (stored in records)


#: Outbound QoS 1: (state, packet received) -> next state.
OUTBOUND_QOS1: dict[tuple[QoSState, type], QoSState] = {
    (QoSState.SENT_PUBLISH, Puback): QoSState.DONE,
}

#: Outbound QoS 2.
OUTBOUND_QOS2: dict[tuple[QoSState, type], QoSState] = {
    (QoSState.SENT_PUBLISH, Pubrec): QoSState.SENT_PUBREL,
    (QoSState.SENT_PUBREL, Pubcomp): QoSState.DONE,
}

#: What to resend for an outbound entry when its session is resumed.
RESEND: dict[QoSState, type] = {
    QoSState.SENT_PUBLISH: Publish,  # with DUP=1
    QoSState.SENT_PUBREL: Pubrel,
}

_OUTBOUND = {1: OUTBOUND_QOS1, 2: OUTBOUND_QOS2}


def next_outbound(qos: int, state: QoSState, packet: type) -> QoSState | None:
    """The state an outbound entry moves to on ``packet``, or None when the packet
    does not belong to this flow in this state (an unexpected or duplicate ack)."""
    return _OUTBOUND[qos].get((state, packet))


def _diagram() -> str:  # pragma: no cover - a tool
    lines = ["connection phases:"]
    for phase, allowed in ALLOWED.items():
        names = ", ".join(sorted(c.__name__.upper() for c in allowed)) or "-"
        lines.append(f"  {phase.name:15} accepts {names}")
    for title, table in (
        ("outbound QoS 1", OUTBOUND_QOS1),
        ("outbound QoS 2", OUTBOUND_QOS2),
    ):
        lines.append(f"{title}:")
        for (state, pkt), nxt in table.items():
            lines.append(f"  {state.name:13} --{pkt.__name__.upper()}--> {nxt.name}")
    lines.append("inbound QoS 2:")
    lines.append(f"  {QoSState.RECEIVED.name:13} --PUBREL--> {QoSState.DONE.name}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(_diagram())
