"""Fixtures: our broker with the MQTT plugin (skipped with a reason without it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def mqtt_broker_factory(fluxmq_broker_factory):
    pytest.importorskip("fluxmq_mqtt", reason="fluxmq-mqtt (the broker side) is not installed")

    def factory(**kwargs):
        kwargs.setdefault("plugins", ["mqtt"])
        return fluxmq_broker_factory(**kwargs)

    return factory


@pytest.fixture
def broker(mqtt_broker_factory):
    return mqtt_broker_factory()
