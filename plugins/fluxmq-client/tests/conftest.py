"""Fixtures: our broker with the MQTT plugin, and Mosquitto from Debian (each skipped
with a reason when missing)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


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


@pytest.fixture
def mosquitto(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)
