"""Deliveries of an AMQP 1.0 connection: transfers in (reassembled, handed to the
environment, answered with a disposition) and out (split to the peer's frame size,
within link credit and the session window), and dispositions (sans-IO: no asyncio).
Functions of the :class:`~fluxmq_amqp1.connection.Connection` (each is one of its
methods; ``conn`` is ``self``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fluxmq_amqp1.codec.composites import (
    Accepted,
    Disposition,
    Error,
    Rejected,
    Transfer,
)
from fluxmq_amqp1.codec.frames import accepted_frame, encode_frame, transfer_frame
from fluxmq_amqp1.codec.message import decode_message
from fluxmq_amqp1.codec.types import DECODE_ERROR, AMQPError
from fluxmq_amqp1.endpoints import EndpointError, Link, Partial, Session
from fluxmq_amqp1.state import (
    INVALID_FIELD,
    MESSAGE_SIZE,
    NOT_ALLOWED,
    RESOURCE_LIMIT,
    TRANSFER_LIMIT,
    WINDOW_VIOLATION,
    Phase,
)

if TYPE_CHECKING:
    from fluxmq_amqp1.connection import Connection

#: What one received frame's payload costs in memory besides its bytes (the bytes
#: object and its list slot), counted against [amqp1] max_reassembly.
CHUNK_COST = 64

#: Bytes of frame header plus transfer performative reserved when splitting a
#: payload into frames (a transfer with every first-frame field is under 64).
TRANSFER_OVERHEAD = 96


def on_transfer(conn: Connection, channel: int, t: Transfer, payload: bytes) -> None:
    s = conn._session(channel)
    if s.incoming_window <= 0:
        raise EndpointError(WINDOW_VIOLATION, "transfer beyond the incoming window", s)
    s.next_incoming_id = (s.next_incoming_id + 1) & 0xFFFFFFFF
    s.incoming_window -= 1
    if s.incoming_window <= s.window // 2:
        s.incoming_window = s.window
        conn._send(s.channel, conn._session_flow(s))
    link = conn._link(s, t.handle)
    if link.refused or link.detached:
        return
    if link.outgoing:
        raise EndpointError(NOT_ALLOWED, "transfer on a link the broker sends on", s)
    p = link.partial
    if p is None:
        if t.delivery_id is None or t.delivery_tag is None:
            raise EndpointError(
                INVALID_FIELD, "the first transfer of a delivery needs an id and a tag", link
            )
        if link.credit <= 0:
            raise EndpointError(TRANSFER_LIMIT, "transfer without link credit", link)
        link.credit -= 1
        link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
        p = link.partial = Partial(t.delivery_id, t.delivery_tag, bool(t.settled), t.state)
    elif t.delivery_id is not None and t.delivery_id != p.delivery_id:
        raise EndpointError(INVALID_FIELD, "a continuation transfer changed the delivery id", link)
    if t.aborted:
        drop_partial(conn, link)  # aborted deliveries are discarded, and settled
        conn._refill(link)
        return
    if t.settled:
        p.settled = True
    if payload:
        p.chunks.append(payload)
        p.size += len(payload)
        limit = conn.cfg.max_message_size
        if limit and p.size > limit:
            drop_partial(conn, link)
            raise EndpointError(MESSAGE_SIZE, f"message larger than max-message-size {limit}", link)
    if t.more:
        # What waits for its next frame counts against the connection's bound,
        # whatever the number of links (a hostile peer opens many), each frame's
        # bytes object included (a peer sending 1-byte frames costs its memory too).
        grow = p.size + CHUNK_COST * len(p.chunks) - p.held
        if grow:
            total = conn.reassembling + grow
            cap = conn.cfg.max_reassembly
            if total > cap:
                raise AMQPError(
                    RESOURCE_LIMIT,
                    f"multi-frame deliveries being reassembled exceed {cap} bytes on this "
                    "connection ([amqp1] max_reassembly)",
                )
            p.held += grow
            conn.reassembling = total
        return
    link.partial = None
    if p.held:
        conn.reassembling -= p.held
    conn._delivered(link, p)
    conn._refill(link)


def drop_partial(conn: Connection, link: Link) -> None:
    """Discard the delivery ``link`` was reassembling (aborted, too large, or the
    link went away) and give its bytes back to the connection's bound."""
    p = link.partial
    if p is not None:
        link.partial = None
        conn.reassembling -= p.held


def refill(conn: Connection, link: Link) -> None:
    if link.credit <= conn.cfg.link_credit // 2 and not link.detached:
        link.credit = conn.cfg.link_credit
        conn._link_flow(link)


def delivered(conn: Connection, link: Link, p: Partial) -> None:
    raw = p.chunks[0] if len(p.chunks) == 1 else b"".join(p.chunks)
    s = link.session
    did = p.delivery_id
    settled = p.settled
    try:
        message = decode_message(raw)
    except AMQPError as exc:
        if not settled:
            conn._disposition(s, did, Rejected(error=Error(DECODE_ERROR, exc.description)))
        return

    def done(state: Any) -> None:
        if settled or s.ended or conn.phase is Phase.CLOSED:
            return
        conn._disposition(s, did, state)
        conn._poke()

    conn.env.publish(conn, link, message, raw, settled, done, p.state)


def disposition(conn: Connection, s: Session, did: int, state: Any) -> None:
    """Settle the peer's delivery ``did`` with ``state``. Accepted, the common case,
    is encoded directly, and when the last frame of the pending output is the
    accepted disposition of the delivery before (a group commit settles many at
    once), that frame is widened to a range instead of adding one per delivery:
    one frame per batch to write and for the client to read, order kept."""
    if type(state) is not Accepted:
        conn._send(s.channel, Disposition(role=True, first=did, settled=True, state=state))
        return
    out = conn.out
    last = conn.last_accepted
    if last is not None:
        buf, start, frame, channel, first, prev = last
        if (
            buf is out
            and channel == s.channel
            and did == prev + 1
            and len(out) == start + len(frame)
            and out[start:] == frame
        ):
            del out[start:]
            frame = accepted_frame(channel, first, did)
            out += frame
            conn.last_accepted = (out, start, frame, channel, first, did)
            return
    frame = accepted_frame(s.channel, did)
    conn.last_accepted = (out, len(out), frame, s.channel, did, did)
    out += frame


def send(conn: Connection, link: Link, payload: bytes, token: Any = None) -> bool:
    """Queue one outgoing delivery on ``link`` and send what credit and window
    allow. False when the link is gone (the caller keeps the message)."""
    if link.detached or link.refused or link.session.ended or conn.phase is not Phase.OPENED:
        return False
    link.held.append((payload, token))
    conn.pump(link)
    conn._poke()
    return True


def finish_drain(conn: Connection, link: Link) -> None:
    """Answer a drain the node deferred: spend the credit left and say so."""
    link.drain_wait = False
    if link.detached or link.refused or link.session.ended or conn.phase is not Phase.OPENED:
        return
    conn.pump(link)
    conn._poke()


def pump(conn: Connection, link: Link) -> None:
    """Send held deliveries while the link has credit and the session window."""
    s = link.session
    held = link.held
    max_payload = max(64, conn.max_frame_size - TRANSFER_OVERHEAD)
    settled = link.presettled
    channel = s.channel
    handle = link.local_handle
    out = conn.out
    while held and link.credit > 0:
        payload, token = held[0]
        size = len(payload)
        if size <= max_payload:
            # one frame: the common case, without slicing the payload
            if s.remote_incoming_window < 1:
                s.blocked[id(link)] = link
                break
            held.popleft()
            did = s.next_delivery_id
            s.next_delivery_id = (did + 1) & 0xFFFFFFFF
            out += transfer_frame(
                channel, handle, did, did.to_bytes(4, "big"), settled, False, payload
            )
            s.next_outgoing_id = (s.next_outgoing_id + 1) & 0xFFFFFFFF
            s.remote_incoming_window -= 1
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
            if not settled:
                s.unsettled[did] = (link, token)
            continue
        frames = -(-size // max_payload)
        if s.remote_incoming_window < frames:
            s.blocked[id(link)] = link
            break
        held.popleft()
        did = s.next_delivery_id
        s.next_delivery_id = (did + 1) & 0xFFFFFFFF
        tag = did.to_bytes(4, "big")
        for i in range(frames):
            chunk = payload[i * max_payload : (i + 1) * max_payload]
            more = i < frames - 1
            if i == 0:
                out += transfer_frame(channel, handle, did, tag, settled, more, chunk)
            else:
                out += encode_frame(channel, Transfer(handle=handle, more=more), chunk)
            s.next_outgoing_id = (s.next_outgoing_id + 1) & 0xFFFFFFFF
            s.remote_incoming_window -= 1
        link.credit -= 1
        link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
        if not settled:
            s.unsettled[did] = (link, token)
    else:
        s.blocked.pop(id(link), None)
    if link.drain and link.credit > 0 and not held and not link.drain_wait:
        # Drain: spend the rest of the credit and tell the receiver (part 2.6.7).
        link.delivery_count = (link.delivery_count + link.credit) & 0xFFFFFFFF
        link.credit = 0
        conn._link_flow(link)


def on_disposition(conn: Connection, channel: int, d: Disposition, payload: bytes) -> None:
    s = conn._session(channel)
    if not d.role:
        return  # the peer settles deliveries we received: we settled them already
    first = d.first
    last = d.last if d.last is not None else first
    if last < first:
        raise EndpointError(INVALID_FIELD, "disposition range ends before it starts", s)
    state = d.state
    unsettled = s.unsettled
    if last - first + 1 > len(unsettled):
        ids = [i for i in unsettled if first <= i <= last]
    else:
        ids = [i for i in range(first, last + 1) if i in unsettled]
    if state is None and not d.settled:
        return  # neither an outcome nor settled: nothing to apply yet
    env = conn.env
    links: dict[int, Link] = {}
    for did in ids:
        link, token = unsettled.pop(did)
        env.settle(conn, link, token, state)
        links[id(link)] = link
    for link in links.values():
        env.credit(conn, link)  # once per link, after the whole range
    if links and not d.settled:
        conn._send(
            s.channel,
            Disposition(role=False, first=first, last=last, settled=True, state=state),
        )
