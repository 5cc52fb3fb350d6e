"""The sans-IO MQTT codec now lives in the core as `fluxmq_core.mqtt_codec`.

It moved there so the broker plugin and the `fluxmq-client` distribution share one
codec without one plugin importing another (dependencies point inward, to the core).
This package stays importable for existing code: the package and each of its modules
are the very same module objects as in `fluxmq_core.mqtt_codec`.
"""

import sys

from fluxmq_core import mqtt_codec as _codec
from fluxmq_core.mqtt_codec import *  # noqa: F403
from fluxmq_core.mqtt_codec import __all__ as __all__

# Import every submodule through the core and alias it here, so
# `fluxmq_mqtt.codec.decoder` (private names included) is `fluxmq_core.mqtt_codec.decoder`.
for _name in (
    "bodies",
    "decoder",
    "encoder",
    "errors",
    "packets",
    "primitives",
    "properties",
    "reasons",
):
    _module = __import__(f"fluxmq_core.mqtt_codec.{_name}", fromlist=["_"])
    sys.modules[f"{__name__}.{_name}"] = _module
    setattr(sys.modules[__name__], _name, _module)
del _name, _module, _codec
