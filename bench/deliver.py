"""Delivery throughput: catch-up of a new consumer, and live publish -> confirm -> consume -> ack.

Not a test. Runs the broker as its own process, publishes in coalesced
batches, and reports events/s for:

- catch-up: a consumer registered after N events were stored reads them all;
- live: a subscriber acks every batch while a producer keeps WINDOW publishes
  in flight; timed from the first publish to the last delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.keys import api_keys
from bench.publish import WINDOW, _broker_process, _envelopes, _wait_ready, _windowed
from transport.client import BrokerEndpoints, Publisher, Subscriber
from transport.sockets import Context, close_context, new_context


class _Consumer:
    def __init__(self) -> None:
        self.count = 0
        self.done_at = 0.0
        self.halfway = asyncio.Event()

    async def run(self, ctx: Context, endpoints: BrokerEndpoints, consumer: str, n: int) -> None:
        async with Subscriber(ctx, endpoints, keys=api_keys(), consumer=consumer) as sub:
            async for batch in sub.batches():
                await sub.ack(batch.position)
                self.count += len(batch.deliveries)
                if self.count >= n // 2:
                    self.halfway.set()
                if self.count >= n:
                    break
        self.done_at = time.perf_counter()


async def bench_once(ctx: Context, endpoints: BrokerEndpoints, n: int) -> tuple[float, float]:
    # A key per event: compaction keeps every record, so each consumer reads all 2n.
    first, second = _envelopes(n, keys=None, tag="first"), _envelopes(n, keys=None, tag="second")
    async with Publisher(ctx, endpoints, keys=api_keys(), timeout=30) as pub:

        async def publish_first(i: int) -> None:
            await pub.publish([first[i]])

        async def publish_second(i: int) -> None:
            await pub.publish([second[i]])

        await _windowed(n, WINDOW, publish_first)
        late = _Consumer()
        start = time.perf_counter()
        await late.run(ctx, endpoints, "cache-bench-late", n)
        catch_up = n / (late.done_at - start)
        live = _Consumer()
        task = asyncio.create_task(live.run(ctx, endpoints, "cache-bench-live", 2 * n))
        await live.halfway.wait()  # its catch-up of the first n is not part of the live figure
        start = time.perf_counter()
        await _windowed(n, WINDOW, publish_second)
        await task
        return catch_up, n / (live.done_at - start)


async def run(n: int, runs: int) -> None:
    catch_ups: list[float] = []
    lives: list[float] = []
    ctx = new_context()
    try:
        with tempfile.TemporaryDirectory(prefix="fabric-bench-") as tmp:
            for r in range(runs):
                with _broker_process(Path(tmp) / f"broker-{r}") as endpoints:
                    await _wait_ready(ctx, endpoints)
                    catch_up, live = await bench_once(ctx, endpoints, n)
                    catch_ups.append(catch_up)
                    lives.append(live)
    finally:
        close_context(ctx)
    print(f"delivery throughput, {n} events per run, median of {runs} runs")
    for label, values in (
        ("catch-up of a late consumer (SYNC pages)", catch_ups),
        ("live: publish -> fsync -> PUB -> consume -> ack", lives),
    ):
        print(f"  {label:<56} {statistics.median(values):>10,.0f} events/s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench deliver", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run(args.events, args.runs))
    return 0
