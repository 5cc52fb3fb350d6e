"""CoAP <-> AMQP 0.9.1 through the shared router (skipped when the AMQP plugin or
pika is not installed: this plugin's tests also run alone)."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, coap_url

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fluxmq_amqp091") is None or importlib.util.find_spec("pika") is None,
    reason="needs the fluxmq-amqp091 plugin and pika",
)


def test_coap_publish_reaches_amqp_queue_and_amqp_publish_reaches_observer(
    fluxmq_broker_factory,
):
    import pika

    b = fluxmq_broker_factory(plugins=["coap", "amqp091"])
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=WAIT)
    )
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, "amq.topic", "cx.coap.*")

        async def run() -> Any:
            ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
            try:
                r = await asyncio.wait_for(
                    ctx.request(
                        aiocoap.Message(
                            code=Code.POST,
                            uri=coap_url(b, "/ps/cx/coap/t"),
                            payload=b'{"from":"coap"}',
                            content_format=50,
                        )
                    ).response,
                    WAIT,
                )
                assert r.code == Code.CHANGED
                req = ctx.request(
                    aiocoap.Message(code=Code.GET, uri=coap_url(b, "/ps/cx/amqp/%23"), observe=0)
                )
                await asyncio.wait_for(req.response, WAIT)
                # Publish from AMQP (in a thread: pika is blocking) while observing.
                await asyncio.to_thread(
                    ch.basic_publish,
                    "amq.topic",
                    "cx.amqp.t",
                    b"from amqp",
                    pika.BasicProperties(content_type="text/plain; charset=utf-8"),
                )
                it = req.observation.__aiter__()
                n = await asyncio.wait_for(it.__anext__(), WAIT)
                req.observation.cancel()
                return n
            finally:
                await ctx.shutdown()

        n = asyncio.run(run())
        assert n.payload == b"from amqp" and n.opt.content_format == 0
        method, props, body = next(ch.consume(q, inactivity_timeout=WAIT))
        assert body == b'{"from":"coap"}' and method.routing_key == "cx.coap.t"
        assert props.content_type == "application/json"
    finally:
        conn.close()
