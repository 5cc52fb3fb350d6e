"""Shared fixtures for the CoAP tests: one broker per module, an aiocoap client
context per test (closed at the end). Waits are bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiocoap
import pytest
from fluxmq_coap.testing import broker_plugins

from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture(scope="module")
def coap_broker() -> Iterator[BrokerThread]:
    config = {"coap": {"max_message_size": 64 * 1024}}
    with BrokerThread(plugins=broker_plugins(), config=config) as b:
        yield b


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    yield ctx
    await ctx.shutdown()
