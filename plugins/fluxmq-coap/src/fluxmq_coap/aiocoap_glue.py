"""Every place the CoAP server reaches below aiocoap's public API, in one module.

aiocoap's public server API (a ``Site`` of resources that each answer one request,
observable resources that collapse notifications to the latest state) cannot make
a pub/sub observer out of each message, nor tell us which notification a peer
acknowledged. What we need beyond it, with the aiocoap range it is tested on
pinned in ``pyproject.toml`` (``aiocoap>=0.4.17,<0.5``; ``tests/test_aiocoap_glue.py``
checks every item against the installed aiocoap):

Required (:func:`check` raises at start-up, naming what is missing, instead of
failing later on a peer's request):

- ``Context.request_interfaces[0]``, a token manager whose ``token_interface``
  (the message manager) has ``dispatch_message``: wrapped to see the empty ACKs and
  RSTs that answer our notifications (aiocoap only reports an RST to a CON), which
  RFC 7641 deregistration and the ``$queue/`` acknowledgements need.
- ``TokenManager.incoming_requests`` (``{(token, remote): (pipe, stop)}``): to end
  an observation silently after the peer reset it, as aiocoap itself does.
- The plain-UDP message interface's ``datagram_msg_received``: wrapped, as
  aiocoap's decoder lets some malformed datagrams escape as exceptions other than
  its own (a string option that is not UTF-8 raises ``UnicodeDecodeError``).
- The bound port: the UDP interface's ``transport`` (asyncio's, public from there
  on); for DTLS the server pool's ``_transport``.

Optional (missing ones are skipped with a debug log, at some cost in speed):

- ``Context._render_to_pipe``: aiocoap's ``render_to_pipe`` names each rendering
  task with the request's ``repr``, formatted eagerly for every request; we run
  the same without the name.

No longer used: the resource's private block-wise caches (``Resource._block1`` and
``_block2``); the server owns its own ``aiocoap.blockwise`` spool and cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiocoap.pipe import error_to_message, run_driving_pipe

__all__ = [
    "AiocoapInternalsError",
    "bound_port",
    "check",
    "hook_context",
    "stop_incoming",
    "wrap_datagrams",
]

log = logging.getLogger("fluxmq.coap")


class AiocoapInternalsError(RuntimeError):
    """The installed aiocoap lacks something this plugin needs (see the module
    docstring for the pinned range)."""


def _missing(what: str) -> AiocoapInternalsError:
    import aiocoap

    version = getattr(getattr(aiocoap, "meta", None), "version", "?")
    return AiocoapInternalsError(
        f"the installed aiocoap ({version}) lacks {what}; fluxmq-coap is tested with "
        "aiocoap>=0.4.17,<0.5 (see fluxmq_coap.aiocoap_glue)"
    )


def _token_manager(coap: Any) -> Any:
    interfaces = getattr(coap, "request_interfaces", None)
    if not interfaces:
        raise _missing("Context.request_interfaces")
    tm = interfaces[0]
    if not isinstance(getattr(tm, "incoming_requests", None), dict):
        raise _missing("TokenManager.incoming_requests")
    mman = getattr(tm, "token_interface", None)
    if mman is None or not callable(getattr(mman, "dispatch_message", None)):
        raise _missing("TokenManager.token_interface.dispatch_message")
    return tm


def check(coap: Any) -> None:
    """Raise :class:`AiocoapInternalsError` when a required internal is missing
    from a server ``coap`` context."""
    tm = _token_manager(coap)
    iface = getattr(tm.token_interface, "message_interface", None)
    if iface is None:
        raise _missing("MessageManager.message_interface")


def hook_context(coap: Any, on_answer: Callable[[Any], None]) -> Any:
    """Install our hooks into one aiocoap server context (plain or DTLS): every
    ACK or RST with a message id goes to ``on_answer`` before aiocoap handles it,
    and rendering runs without a task name when aiocoap allows. Returns the token
    manager (for :func:`stop_incoming`)."""
    check(coap)
    tm = _token_manager(coap)
    mman = tm.token_interface
    real_dispatch = mman.dispatch_message
    from aiocoap.numbers.types import ACK, RST

    def dispatch(message: Any) -> None:
        if message.mtype in (ACK, RST) and message.mid is not None:
            on_answer(message)
        real_dispatch(message)

    mman.dispatch_message = dispatch

    render = getattr(coap, "_render_to_pipe", None)
    if callable(render):

        def render_to_pipe(pipe: Any) -> None:
            run_driving_pipe(error_to_message(pipe, coap.log), render(pipe))

        coap.render_to_pipe = render_to_pipe
    else:  # pragma: no cover - only with an aiocoap outside the pinned range
        log.debug("aiocoap has no Context._render_to_pipe: rendering tasks keep their names")
    return tm


def wrap_datagrams(coap: Any, on_error: Callable[[Any, BaseException], None]) -> None:
    """Drop a datagram whose decoding raises anything (``on_error(address,
    exc)`` is told) instead of letting it reach the event loop's handler."""
    iface = _token_manager(coap).token_interface.message_interface
    real = getattr(iface, "datagram_msg_received", None)
    if not callable(real):
        raise _missing("the UDP message interface's datagram_msg_received")

    def received(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        try:
            real(data, ancdata, flags, address)
        except Exception as exc:
            on_error(address, exc)

    iface.datagram_msg_received = received


def bound_port(coap: Any) -> int:
    """The UDP port a server context is bound to."""
    iface = _token_manager(coap).token_interface.message_interface
    transport = getattr(iface, "transport", None)  # udp6
    if transport is None:  # tinydtls_server
        transport = getattr(getattr(iface, "_pool", None), "_transport", None)
    if transport is None:
        raise _missing("a transport on the message interface")
    sockname = transport.get_extra_info("sockname")
    if not sockname:  # aiocoap's recvmsg transport for udp6 has only the socket
        sock = transport.get_extra_info("socket")
        sockname = sock.getsockname() if sock is not None else None
    if not sockname:
        raise _missing("a bound socket on its transport")
    return int(sockname[1])


def stop_incoming(token_managers: list[Any], key: Any) -> bool:
    """End the incoming request ``key`` (``(token, remote)``) without sending
    anything, as aiocoap does after an RST; False when no manager knows it."""
    for tm in token_managers:
        entry = tm.incoming_requests.pop(key, None)
        if entry is not None:
            entry[1]()
            return True
    return False
