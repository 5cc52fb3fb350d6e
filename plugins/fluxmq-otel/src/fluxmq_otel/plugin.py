"""Hookimpls of the otel plugin: its config section, start and stop.

``fluxmq_startup`` is ``trylast`` so that every protocol server, the HTTP listener
and the metric specs other plugins register already exist when the instruments are
made.
"""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_otel.config import OtelConfig
from fluxmq_otel.service import Telemetry

_KEY = "otel"


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"otel": OtelConfig}


@hookimpl(trylast=True)
def fluxmq_startup(context: Any) -> None:
    telemetry = Telemetry(context, context.config.otel)
    context.extras[_KEY] = telemetry
    telemetry.start()


@hookimpl
async def fluxmq_shutdown(context: Any) -> None:
    telemetry = context.extras.pop(_KEY, None)
    if telemetry is not None:
        await telemetry.stop()
