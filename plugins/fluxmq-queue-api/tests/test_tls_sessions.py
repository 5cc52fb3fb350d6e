"""The gRPC port under TLS (the [api] ListenerSecurity keys, client certificates
when required), and API consumers that time out without heartbeats."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from fluxmq_queue_api.client import QueueAPIError, QueueClient, pb
from fluxmq_queue_api.testing import TOKEN

from fluxmq_core.testing.broker import BrokerThread
from fluxmq_core.testing.tls import make_test_certs

WAIT = 10.0


async def test_grpc_over_mutual_tls(tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path)
    cfg = {
        "http": {"admin_token": TOKEN},
        "api": {
            "tls_cert": certs["server.pem"],
            "tls_key": certs["server.key"],
            "tls_ca": certs["ca.pem"],
            "tls_client_auth": "required",
        },
    }
    with BrokerThread(plugins=["queue_api"], config=cfg) as broker:
        port = broker.port("api.grpc")
        target = f"localhost:{port}"
        ca = Path(certs["ca.pem"]).read_bytes()
        good = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=Path(certs["client.key"]).read_bytes(),
            certificate_chain=Path(certs["client.pem"]).read_bytes(),
        )
        async with QueueClient(target, token=TOKEN, credentials=good) as qc:
            await qc.create_queue("tlsq")
            assert (await qc.append("tlsq", b"secure")).offset == 0
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        async with QueueClient(target, token=TOKEN, credentials=no_cert) as qc:
            with pytest.raises(QueueAPIError) as info:
                await qc.get_queue("tlsq")
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
        async with QueueClient(target, token=TOKEN) as plain:  # no TLS at all
            with pytest.raises(QueueAPIError) as info:
                await plain.call("GetQueue", pb.GetQueueRequest(name="tlsq"), timeout=5)
            assert info.value.code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )


async def test_silent_consumer_times_out_and_its_messages_move() -> None:
    cfg = {"http": {"admin_token": TOKEN}, "api": {"session_timeout": 0.2}}
    with BrokerThread(plugins=["queue_api"], config=cfg) as broker:
        host, port = broker.address("api.grpc")
        async with QueueClient(f"{host}:{port}", token=TOKEN) as qc:
            await qc.create_queue("sess")
            joined = await qc.join_group("sess", "g", "quiet")
            await qc.append("sess", b"job")
            first = await qc.consume("sess", "g", "quiet", wait=WAIT)
            assert [m.value for m in first] == [b"job"]
            # Never acked, no heartbeat: the session ends and the job goes back.
            # GetConsumerGroup does not count as a sign of life (a heartbeat would).
            deadline = time.monotonic() + WAIT
            while (await qc.get_consumer_group("sess", "g")).consumers:
                assert time.monotonic() < deadline, "the silent consumer never timed out"
                await asyncio.sleep(0.05)
            hb = await qc.heartbeat("sess", "g", "quiet", joined.generation_id)
            assert hb.should_rejoin and hb.generation_id > joined.generation_id
            again = await qc.consume("sess", "g", "other", wait=WAIT)
            assert [(m.value, m.delivery_info.delivery_count) for m in again] == [(b"job", 2)]
