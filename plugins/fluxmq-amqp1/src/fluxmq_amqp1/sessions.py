"""Sessions of an AMQP 1.0 connection: begin and end, session and link flow
(sans-IO: no asyncio). Functions of the :class:`~fluxmq_amqp1.connection.Connection`
(each is one of its methods; ``conn`` is ``self``); their state is
:class:`~fluxmq_amqp1.endpoints.Session`, whose docstring explains the window and
credit arithmetic.

An error that ends only a session or a link is an
:class:`~fluxmq_amqp1.endpoints.EndpointError`: :func:`endpoint_error` ends the
session or detaches the link with its condition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxmq_amqp1.codec.composites import Begin, End, Error, Flow
from fluxmq_amqp1.codec.types import AMQPError
from fluxmq_amqp1.endpoints import EndpointError, Link, Session
from fluxmq_amqp1.state import NOT_ALLOWED

if TYPE_CHECKING:
    from fluxmq_amqp1.connection import Connection


def on_begin(conn: Connection, channel: int, b: Begin, payload: bytes) -> None:
    if b.remote_channel is not None:
        raise AMQPError(NOT_ALLOWED, "the broker begins no sessions of its own")
    if channel in conn.sessions:
        raise AMQPError(NOT_ALLOWED, f"channel {channel} already has a session")
    if channel > conn.channel_max:
        raise AMQPError(NOT_ALLOWED, f"channel {channel} exceeds channel-max {conn.channel_max}")
    local = 0
    while local in conn.local_channels:
        local += 1
    conn.local_channels.add(local)
    cfg = conn.cfg
    session = Session(local, channel, b, cfg.session_window, cfg.handle_max)
    conn.sessions[channel] = session
    conn._send(
        local,
        Begin(
            remote_channel=channel,
            next_outgoing_id=0,
            incoming_window=session.incoming_window,
            outgoing_window=0x7FFFFFFF,
            handle_max=session.handle_max,
        ),
    )


def get_session(conn: Connection, channel: int) -> Session:
    s = conn.sessions.get(channel)
    if s is None:
        raise AMQPError(NOT_ALLOWED, f"no session on channel {channel}")
    return s


def on_end(conn: Connection, channel: int, e: End, payload: bytes) -> None:
    s = conn._session(channel)
    conn._drop_session(s)
    conn._send(s.channel, End())


def drop_session(conn: Connection, s: Session) -> None:
    for link in list(s.links.values()):
        conn._unbind(s, link)
    s.links.clear()
    s.ended = True
    conn.sessions.pop(s.remote_channel, None)
    conn.local_channels.discard(s.channel)


def end_session(conn: Connection, s: Session, condition: str, description: str) -> None:
    if s.ended:
        return
    conn._drop_session(s)
    conn._send(s.channel, End(error=Error(condition, description or None)))


def endpoint_error(conn: Connection, exc: EndpointError) -> None:
    ep = exc.endpoint
    if isinstance(ep, Link):
        conn.detach(ep, exc.condition, exc.description)
    else:
        conn.end_session(ep, exc.condition, exc.description)


def session_flow(conn: Connection, s: Session, link: Link | None = None) -> Flow:
    f = Flow(
        next_incoming_id=s.next_incoming_id,
        incoming_window=s.incoming_window,
        next_outgoing_id=s.next_outgoing_id,
        outgoing_window=0x7FFFFFFF,
    )
    if link is not None:
        f.handle = link.local_handle
        f.delivery_count = link.delivery_count
        f.link_credit = link.credit
        if link.outgoing:
            f.available = len(link.held)
            f.drain = link.drain
    return f


def link_flow(conn: Connection, link: Link) -> None:
    conn._send(link.session.channel, conn._session_flow(link.session, link))


def on_flow(conn: Connection, channel: int, f: Flow, payload: bytes) -> None:
    s = conn._session(channel)
    base = f.next_incoming_id if f.next_incoming_id is not None else 0
    s.remote_incoming_window = base + f.incoming_window - s.next_outgoing_id
    s.remote_outgoing_window = f.outgoing_window
    if f.handle is None:
        if f.echo:
            conn._send(s.channel, conn._session_flow(s))
    else:
        link = conn._link(s, f.handle)
        if link.refused or link.detached:
            return
        if link.outgoing:
            rcv_count = f.delivery_count if f.delivery_count is not None else 0
            credit = rcv_count + (f.link_credit or 0) - link.delivery_count
            link.credit = max(0, credit)
            link.drain = f.drain
            # the node first: a queue link defers a drain until its dispatcher ran
            conn.env.credit(conn, link)
            conn.pump(link)
            if f.echo or (f.drain and credit <= 0 and not link.held):
                # a drain with no credit to spend is still answered: receivers
                # (rhea, Proton) wait for that flow
                conn._link_flow(link)
        else:
            if f.delivery_count is not None:
                # The sender's count is authoritative (part 2.6.7).
                spent = f.delivery_count - link.delivery_count
                link.delivery_count = f.delivery_count
                link.credit = max(0, link.credit - spent)
            if f.echo or link.credit < conn.cfg.link_credit // 2:
                link.credit = conn.cfg.link_credit
                conn._link_flow(link)
    for blocked in list(s.blocked.values()):
        conn.pump(blocked)
