"""pytest fixtures for FluxMQ and its plugins (entry point ``pytest11``).

Installed with ``fluxmq-core``, so every plugin package's tests get them:

- ``fluxmq_broker``: a running broker with every installed plugin, listeners on
  ephemeral loopback ports (``fluxmq_broker.port("mqtt.tcp")``).
- ``fluxmq_broker_factory``: build brokers with chosen plugins, config overrides
  and throw-away plugin objects; all are stopped at the end of the test.
- ``fluxmq_process_factory``: ``fluxmq run`` as a subprocess (signals, ``kill -9``).

See ``docs/testing-plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Plain asserts in the shared driver conformance suite get pytest's rich messages.
pytest.register_assert_rewrite("fluxmq_core.testing.conformance")

from fluxmq_core.testing.broker import BrokerProcess, BrokerThread  # noqa: E402 (after the rewrite hook)


@pytest.fixture
def fluxmq_broker_factory() -> Iterator[Callable[..., BrokerThread]]:
    """``factory(plugins=None, extra_plugins=None, config=None, ...) -> BrokerThread``
    (already started)."""
    made: list[BrokerThread] = []

    def factory(**kwargs: Any) -> BrokerThread:
        broker = BrokerThread(**kwargs)
        made.append(broker)
        return broker.start()

    yield factory
    for broker in reversed(made):
        broker.close()


@pytest.fixture
def fluxmq_broker(fluxmq_broker_factory: Callable[..., BrokerThread]) -> BrokerThread:
    """A running broker with every installed plugin on its defaults."""
    return fluxmq_broker_factory()


@pytest.fixture
def fluxmq_process_factory() -> Iterator[Callable[..., BrokerProcess]]:
    """``factory(args=None, env=None, config_text=None) -> BrokerProcess`` (not started)."""
    made: list[BrokerProcess] = []

    def factory(**kwargs: Any) -> BrokerProcess:
        proc = BrokerProcess(**kwargs)
        made.append(proc)
        return proc

    yield factory
    for proc in made:
        proc.close()
