"""Links of an AMQP 1.0 connection: attach (authorized, then bound by the
environment), refusal and detach (sans-IO: no asyncio). Functions of the
:class:`~fluxmq_amqp1.connection.Connection` (each is one of its methods; ``conn``
is ``self``); their state is :class:`~fluxmq_amqp1.endpoints.Link`.

A refused attach is answered as part 2.6.3 asks: an attach with a null terminus,
then a detach with the reason. A link that goes away (detach, end, close, the
connection lost) gives its unsettled deliveries back (released) before the
environment unbinds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxmq_amqp1.codec.composites import Attach, Detach, Error, Released
from fluxmq_amqp1.codec.types import AMQPError
from fluxmq_amqp1.endpoints import EndpointError, Link, Session
from fluxmq_amqp1.state import (
    HANDLE_IN_USE,
    NOT_ALLOWED,
    UNATTACHED_HANDLE,
    UNAUTHORIZED,
    Phase,
)

if TYPE_CHECKING:
    from fluxmq_amqp1.connection import Connection


def on_attach(conn: Connection, channel: int, a: Attach, payload: bytes) -> None:
    s = conn._session(channel)
    if a.handle > s.handle_max:
        raise EndpointError(NOT_ALLOWED, f"handle {a.handle} exceeds handle-max {s.handle_max}", s)
    if a.handle in s.links:
        raise EndpointError(HANDLE_IN_USE, f"handle {a.handle} is in use", s)
    link = Link(s, a, s.new_handle())
    s.links[a.handle] = link
    try:
        wait = conn.env.authorize(conn, link)
    except AMQPError as exc:
        conn._refuse(link, exc)
        return
    if wait is not None:
        conn.waiting = wait  # an ACL decision that is not cached: ask, then go on
        return
    conn._bind(link)


def authorized(conn: Connection, link: Link, ok: bool, reason: str = "") -> None:
    """The adapter's answer to the environment's authorization wait."""
    conn.waiting = None
    s = link.session
    if s.ended or s.links.get(link.handle) is not link or conn.phase is not Phase.OPENED:
        return
    if not ok:
        conn._refuse(link, AMQPError(UNAUTHORIZED, reason or "not authorized"))
        return
    conn._bind(link)


def bind(conn: Connection, link: Link) -> None:
    s = link.session
    a = link.attach
    try:
        terminus = conn.env.attach(conn, link)
    except AMQPError as exc:
        conn._refuse(link, exc)
        return
    cfg = conn.cfg
    if link.outgoing:
        reply = Attach(
            name=link.name,
            handle=link.local_handle,
            role=False,
            snd_settle_mode=link.snd_settle_mode,
            rcv_settle_mode=0,
            source=terminus,
            target=a.target,
            initial_delivery_count=0,
            max_message_size=cfg.max_message_size or None,
        )
        conn._send(s.channel, reply)
    else:
        if link.snd_settle_mode not in (0, 1, 2):
            link.snd_settle_mode = 2
        reply = Attach(
            name=link.name,
            handle=link.local_handle,
            role=True,
            snd_settle_mode=link.snd_settle_mode,
            rcv_settle_mode=0,
            source=a.source,
            target=terminus,
            max_message_size=cfg.max_message_size or None,
        )
        conn._send(s.channel, reply)
        link.delivery_count = a.initial_delivery_count or 0
        link.credit = cfg.link_credit
        conn._link_flow(link)
    conn._poke()


def refuse(conn: Connection, link: Link, exc: AMQPError) -> None:
    """Part 2.6.3: answer the attach with a null terminus, then detach with the
    reason; the peer's answering detach is swallowed."""
    s = link.session
    a = link.attach
    conn._send(
        s.channel,
        Attach(
            name=link.name,
            handle=link.local_handle,
            role=not link.outgoing,
            source=None if link.outgoing else a.source,
            target=a.target if link.outgoing else None,
            initial_delivery_count=0 if link.outgoing else None,
        ),
    )
    link.refused = True
    conn._send(
        s.channel,
        Detach(
            handle=link.local_handle,
            closed=True,
            error=Error(exc.condition, exc.description or None),
        ),
    )


def get_link(conn: Connection, s: Session, handle: int) -> Link:
    link = s.links.get(handle)
    if link is None:
        raise EndpointError(UNATTACHED_HANDLE, f"no link with handle {handle}", s)
    return link


def on_detach(conn: Connection, channel: int, d: Detach, payload: bytes) -> None:
    s = conn._session(channel)
    link = conn._link(s, d.handle)
    del s.links[d.handle]
    s.local_handles.discard(link.local_handle)
    if link.refused or link.detached:
        return  # the answer to our detach
    conn._unbind(s, link)
    conn._send(s.channel, Detach(handle=link.local_handle, closed=d.closed))


def detach(
    conn: Connection, link: Link, condition: str | None = None, description: str = ""
) -> None:
    """Detach (close) a link from our side, with an error when given."""
    s = link.session
    if link.detached or link.refused or s.ended:
        return
    conn._unbind(s, link)
    link.detached = True
    error = Error(condition, description or None) if condition else None
    conn._send(s.channel, Detach(handle=link.local_handle, closed=True, error=error))
    conn._poke()


def unbind(conn: Connection, s: Session, link: Link) -> None:
    if link.partial is not None:
        conn._drop_partial(link)
    if link.node is not None or link.outgoing:
        # Deliveries the peer never settled go back (released: not a failure).
        for did, (lk, token) in list(s.unsettled.items()):
            if lk is link:
                del s.unsettled[did]
                conn.env.settle(conn, link, token, Released())
        link.held.clear()
        s.blocked.pop(id(link), None)
    if link.node is not None:
        conn.env.detach(conn, link)
        link.node = None
