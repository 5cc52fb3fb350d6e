"""Fixtures of the otel tests: paho clients that are always closed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from fluxmq_otel.testing import WAIT

from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture
def mqtt_client() -> Iterator[Callable[..., mqtt.Client]]:
    made: list[mqtt.Client] = []

    def connect(broker: BrokerThread, client_id: str, v5: bool = True) -> mqtt.Client:
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.connect(*broker.address("mqtt.tcp"))
        c.loop_start()
        made.append(c)
        assert connected.wait(WAIT), f"{client_id} did not connect"
        return c

    yield connect
    for c in made:
        try:
            c.disconnect()
        except Exception:
            pass
        c.loop_stop()
