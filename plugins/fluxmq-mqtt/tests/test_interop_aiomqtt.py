"""The broker against aiomqtt 2.x (asyncio, paho underneath) for 5.0 and 3.1.1."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

pytestmark = pytest.mark.asyncio

WAIT = 5.0


@pytest.mark.parametrize("version", [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311])
async def test_pubsub_and_qos2(broker, version):
    port = broker.port()
    async with (
        aiomqtt.Client("127.0.0.1", port, protocol=version, identifier="as") as sub,
        aiomqtt.Client("127.0.0.1", port, protocol=version, identifier="ap") as pub,
    ):
        await sub.subscribe("aio/#", qos=2)
        for qos in (0, 1, 2):
            await pub.publish("aio/t", f"m{qos}", qos=qos)
        got = []

        async def read() -> None:
            async for message in sub.messages:
                got.append((str(message.topic), message.payload, message.qos))
                if len(got) == 3:
                    return

        await asyncio.wait_for(read(), WAIT)
        assert got == [("aio/t", b"m0", 0), ("aio/t", b"m1", 1), ("aio/t", b"m2", 2)]


async def test_retained_delivery(broker):
    port = broker.port()
    async with aiomqtt.Client("127.0.0.1", port, identifier="ret-p") as pub:
        await pub.publish("aio/r", b"kept", qos=1, retain=True)
    async with aiomqtt.Client("127.0.0.1", port, identifier="ret-s") as sub:
        await sub.subscribe("aio/#", qos=1)

        async def first():
            async for message in sub.messages:
                return message

        m = await asyncio.wait_for(first(), WAIT)
        assert m.payload == b"kept" and m.retain
