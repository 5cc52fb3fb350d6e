"""Forwarding between two cluster nodes, gRPC against the same-host link, in one process.

    uv run python bench/cluster_link.py [--messages 100000] [--repeat 3]

Two :class:`fluxmq_etcd.peers.Peers` in one event loop (no etcd, no broker, no
clients): node a forwards ``--messages`` QoS 0 messages of 64 bytes to node b, which
counts them, once over gRPC and once over the same-host link (a Unix socket in a
temporary directory), alternating, ``--repeat`` times. Reported: the process CPU
time per forwarded message, both ends together (building the message at a,
queueing, batching, encoding, the transport, decoding at b), and the ratio of the
two transports in the same repeat. Nothing is routed or delivered to clients.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fluxmq_core.message import Message

TIMEOUT = 120.0


async def one(transport: str, messages: int) -> float:
    from fluxmq_etcd.peers import Peers

    got = [0]

    def count(_sender: str, batch: list[Message]) -> None:
        got[0] += len(batch)

    with tempfile.TemporaryDirectory(prefix="fluxmq-link-") as tmp:
        a = Peers("a", count, timeout=30.0, queue_max=messages + 10)
        b = Peers("b", count, timeout=30.0)
        await a.start("127.0.0.1:0")
        await b.start("127.0.0.1:0", link=str(Path(tmp) / "b.sock"))
        try:
            a.set_peer(
                "b", f"127.0.0.1:{b.port}", link=b.link_address if transport == "link" else None
            )
            a.forward("b", Message("warm/up"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TIMEOUT
            while got[0] < 1 and loop.time() < deadline:
                await asyncio.sleep(0.005)
            cpu0 = time.process_time()
            for i in range(messages):
                a.forward(
                    "b", Message("fan/in", b"x" * 64, origin_protocol="mqtt", origin_client="p1")
                )
                if i % 200 == 199:
                    await asyncio.sleep(0)  # let the sender and receiver run
            while got[0] < messages + 1 and loop.time() < deadline:
                await asyncio.sleep(0.001)
            cpu = time.process_time() - cpu0
            if got[0] < messages + 1:
                raise RuntimeError(f"{transport}: only {got[0] - 1} of {messages} arrived")
            link_used = a.stats()["link_forwarded"]
            if (transport == "link") != (link_used > 0):
                raise RuntimeError(f"{transport}: {link_used} messages went over the link")
        finally:
            await a.stop(timeout=0)
            await b.stop(timeout=0)
    return cpu / messages * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not 1 <= args.messages <= 2_000_000:
        ap.error("--messages: 1 to 2,000,000")
    try:
        import fluxmq_etcd  # noqa: F401
    except ImportError:
        print("fluxmq-etcd is not installed", file=sys.stderr)
        return 2
    ratios = []
    for rep in range(args.repeat):
        grpc_us = asyncio.run(one("grpc", args.messages))
        link_us = asyncio.run(one("link", args.messages))
        ratios.append(link_us / grpc_us)
        print(
            f"repeat {rep}: gRPC {grpc_us:.2f} us CPU/msg, link {link_us:.2f} us CPU/msg, "
            f"link/gRPC {link_us / grpc_us:.2f}",
            flush=True,
        )
    print(f"median link/gRPC CPU per forwarded message: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
