"""Benchmark: topic matching in the router's trie against a linear scan of filters.

For N subscription filters (10 .. 100,000) of realistic shape
(``site/<i>/sensor/<j>/temp``, with about 10% ``+``/``#`` filters mixed in), this
measures the mean time to route one publish:

* trie, no cache: ``Router(cache_size=0).publish`` walks the trie and groups the
  matches on every call;
* trie, cached: ``Router.publish`` with a warm per-topic match cache (the hot path
  of a broker that sees the same topics again and again);
* linear: scanning every filter with the reference ``topic_matches``, what a broker
  without an index (amqtt) does per publish.

Subscribers are no-op, so the numbers are the router's own cost. Every timed loop
is bounded both in iterations and in seconds, so the linear scan at 100k filters
stops after a couple of seconds. A table goes to stdout, the raw numbers to
``bench/results/router_match.json``.

Usage: ``uv run python bench/router_match.py [--quick]``
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, Router, topic_matches

RESULTS = Path(__file__).resolve().parent / "results" / "router_match.json"


class NullSubscriber:
    """A subscriber whose deliver does nothing, so only routing is measured."""

    __slots__ = ("client_id", "protocol")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.protocol = "bench"

    def deliver(self, message: Message, delivery: Delivery) -> None:
        return None


def make_filters(n: int, rng: random.Random) -> list[str]:
    """N distinct-ish filters: mostly exact sensor topics, ~10% wildcards of four
    shapes (one level, one site subtree, one sensor across sites)."""
    out: list[str] = []
    for k in range(n):
        i, j = divmod(k, 10)
        if rng.random() < 0.10:
            shape = rng.randrange(4)
            if shape == 0:
                out.append(f"site/{i}/+/{j}/temp")
            elif shape == 1:
                out.append(f"site/{i}/#")
            elif shape == 2:
                out.append(f"site/{i}/sensor/+/temp")
            else:
                out.append(f"+/{i}/sensor/{j}/+")
        else:
            out.append(f"site/{i}/sensor/{j}/temp")
    return out


def make_topics(n: int, count: int, rng: random.Random) -> list[str]:
    """Publish topics over the same sites; ~10% match no exact filter."""
    sites = max(1, n // 10)
    topics = []
    for _ in range(count):
        i, j = rng.randrange(sites), rng.randrange(10)
        kind = "humidity" if rng.random() < 0.10 else "temp"
        topics.append(f"site/{i}/sensor/{j}/{kind}")
    return topics


def measure(
    call: Callable[[int], object], count: int, max_iter: int, max_seconds: float
) -> tuple[float, int]:
    """Mean seconds per call of ``call(index)``, cycling index over ``count`` items;
    stops at ``max_iter`` calls or ``max_seconds``, whichever comes first (at least
    one call). Returns (mean seconds, calls made)."""
    gc.collect()
    perf = time.perf_counter
    # Warm up (caches, branch predictors, CPU clock) for ~5% of the budget.
    warm_until = perf() + max_seconds * 0.05
    for k in range(min(count, max_iter)):
        call(k)
        if perf() >= warm_until:
            break
    start = perf()
    deadline = start + max_seconds
    done = 0
    batch = 1  # the clock is read once per batch, not per call
    while done < max_iter:
        for k in range(done, done + batch):
            call(k % count)
        done += batch
        now = perf()
        if now >= deadline:
            break
        # Size the next batch to what fits before the deadline, so slow calls
        # (the linear scan at 100k filters) do not overshoot it.
        per_call = (now - start) / done
        batch = max(1, min(256, max_iter - done, int((deadline - now) / per_call)))
    return (perf() - start) / done, done


def build_router(filters: list[str], subscribers: list[NullSubscriber], cache_size: int) -> Router:
    router = Router(cache_size=cache_size)
    for k, topic_filter in enumerate(filters):
        router.subscribe(subscribers[k % len(subscribers)], topic_filter)
    return router


def run(sizes: list[int], quick: bool) -> list[dict[str, float | int]]:
    rng = random.Random(1)
    trie_iter, trie_seconds = (2_000, 0.3) if quick else (20_000, 1.5)
    linear_iter, linear_seconds = (100, 0.3) if quick else (300, 2.0)
    rows: list[dict[str, float | int]] = []
    for n in sizes:
        filters = make_filters(n, rng)
        subscribers = [NullSubscriber(f"c{i}") for i in range(min(n, 1_000))]
        topics = make_topics(n, 200, rng)
        messages = [Message(t, b"21.5") for t in topics]

        t0 = time.perf_counter()
        cold = build_router(filters, subscribers, cache_size=0)
        subscribe_s = (time.perf_counter() - t0) / n
        cached = build_router(filters, subscribers, cache_size=4096)

        # Cross-check a few topics: the trie must find exactly the linear matches.
        for topic in topics[:5]:
            by_trie = {id(s) for s, _ in cold.match(topic)}
            by_scan = {
                id(subscribers[k % len(subscribers)])
                for k, f in enumerate(filters)
                if topic_matches(f, topic)
            }
            assert by_trie == by_scan, topic

        # Defaults bind this iteration's objects (and make them locals: faster).
        def publish_cold(k: int, cold: Router = cold, messages: list[Message] = messages) -> object:
            return cold.publish(messages[k])

        def publish_cached(
            k: int, cached: Router = cached, messages: list[Message] = messages
        ) -> object:
            return cached.publish(messages[k])

        def linear(k: int, topics: list[str] = topics, filters: list[str] = filters) -> object:
            topic = topics[k]
            return [f for f in filters if topic_matches(f, topic)]

        for message in messages:  # warm the cache
            cached.publish(message)
        deliveries = sum(cached.publish(m) for m in messages) / len(messages)

        cold_s, cold_n = measure(publish_cold, len(topics), trie_iter, trie_seconds)
        cached_s, cached_n = measure(publish_cached, len(topics), trie_iter, trie_seconds)
        linear_s, linear_n = measure(linear, len(topics), linear_iter, linear_seconds)
        rows.append(
            {
                "filters": n,
                "wildcard_filters": sum(1 for f in filters if "+" in f or "#" in f),
                "mean_deliveries_per_publish": round(deliveries, 3),
                "subscribe_us": subscribe_s * 1e6,
                "trie_nocache_us": cold_s * 1e6,
                "trie_nocache_iterations": cold_n,
                "trie_cached_us": cached_s * 1e6,
                "trie_cached_iterations": cached_n,
                "linear_us": linear_s * 1e6,
                "linear_iterations": linear_n,
                "ratio_linear_over_trie": linear_s / cold_s,
                "ratio_linear_over_cached": linear_s / cached_s,
            }
        )
        print_row(rows[-1])
    return rows


def print_header() -> None:
    print(
        f"{'N filters':>10} | {'trie µs/match':>14} | {'cached µs/match':>15} | "
        f"{'linear µs/match':>15} | {'linear/trie':>11}"
    )
    print("-" * 78)


def print_row(row: dict[str, float | int]) -> None:
    print(
        f"{row['filters']:>10,} | {row['trie_nocache_us']:>14.2f} | "
        f"{row['trie_cached_us']:>15.2f} | {row['linear_us']:>15.1f} | "
        f"{row['ratio_linear_over_trie']:>10.{1 if row['ratio_linear_over_trie'] < 10 else 0}f}x",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and shorter loops")
    args = parser.parse_args(argv)
    sizes = [10, 100, 1_000, 10_000] if args.quick else [10, 100, 1_000, 10_000, 100_000]
    print_header()
    rows = run(sizes, args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "router_match",
                "quick": args.quick,
                "operation": "Router.publish to no-op subscribers vs linear topic_matches scan",
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print("\nwrote bench/results/router_match.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
