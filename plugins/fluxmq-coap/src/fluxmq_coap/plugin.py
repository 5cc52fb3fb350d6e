"""Hookimpls of the CoAP plugin: its config section and its protocol server.

The UDP socket is opened by the server's ``start`` (the core's listener set is for
stream sockets); the bound address is published in ``context.bound["coap.bind"]``
like every other listener's, so the test kit and the exposure log see it.
"""

from __future__ import annotations

from typing import Any

from fluxmq_coap.config import CoAPConfig
from fluxmq_coap.server import CoAPServer
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.transport import ProtocolServer


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"coap": CoAPConfig}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: CoAPConfig = context.config.coap
    server = CoAPServer(context, cfg)
    context.extras["coap"] = server
    return [
        ProtocolServer(
            "coap", [], start=server.start, stop=server.stop, info={"versions": "RFC 7252"}
        )
    ]
