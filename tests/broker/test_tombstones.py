"""Tombstones in a running broker: kept for the retention and while any registered consumer is
behind them; dropped (with every older record of the key) once all have passed or left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog.testing

from tests.broker.helpers import READER, account, envelope, read_log, settle_position
from tests.support.broker import embedded_broker
from tests.support.keys import api_keys, consumer_keys
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import Context

RETENTION = 0.3


async def _filler(ctx: Context, endpoints: BrokerEndpoints, start: int) -> None:
    """Updates to other keys, enough to seal segments and so give the cleaner work."""
    async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
        await pub.publish([envelope(start + i, key=100 + i % 5) for i in range(20)])


@pytest.mark.parametrize("release", ["acked_past", "removed"])
async def test_a_tombstone_stays_while_a_consumer_is_behind_it_and_goes_once_released(
    ctx: Context, tmp_path: Path, release: str
) -> None:
    deleted = f"account:{account(1)}"
    with structlog.testing.capture_logs() as logs:
        async with embedded_broker(
            tmp_path, tombstone_retention=RETENTION, segment_bytes=2000
        ) as endpoints:
            async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
                await pub.publish([envelope(i) for i in range(3)])
            async with Subscriber(
                ctx, endpoints, keys=consumer_keys("cluster:slow"), consumer="cluster:slow",
                key_prefix="account:",
            ) as slow:
                first = await anext(slow.batches())  # registered at 0; it stores nothing, acks nothing
            assert len(first.deliveries) == 3
            async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
                (receipt,) = await pub.publish([envelope(10, key=1, tombstone=True)])
            await _filler(ctx, endpoints, 1000)
            await settle_position(ctx, endpoints, READER)
            expired = time.monotonic() + RETENTION
            _ = await wait_until(lambda: time.monotonic() > expired, message="retention over")

            def rounds() -> int:
                return sum(1 for e in logs if e["event"] == "log_cleaned")

            before = rounds()
            await _filler(ctx, endpoints, 2000)
            _ = await wait_until(lambda: rounds() > before, message="a round after the retention")
            held = {env.key: (seq, env.tombstone) for seq, env in await read_log(ctx, endpoints)}
            assert held[deleted] == (receipt.seq, True)

            if release == "removed":
                async with Directory(ctx, endpoints, keys=api_keys()) as directory:
                    assert await directory.remove("cluster:slow")
            else:
                await settle_position(ctx, endpoints, "cluster:slow")

            async def forgotten() -> bool:
                return deleted not in {env.key for _s, env in await read_log(ctx, endpoints)}

            # Nothing was published since: only the due tombstone can start this round.
            _ = await wait_until(forgotten, timeout=10, message="the tombstone dropped")
            remaining = {env.key for _s, env in await read_log(ctx, endpoints)}
    assert remaining >= {f"account:{account(0)}", f"account:{account(2)}"}


async def test_with_no_consumer_registered_a_tombstone_goes_once_its_retention_is_over(
    ctx: Context, tmp_path: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with embedded_broker(tmp_path, tombstone_retention=RETENTION) as endpoints:
            async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
                await pub.publish([envelope(i) for i in range(3)])
                await pub.publish([envelope(10, key=1, tombstone=True)])

            def forgotten() -> bool:  # the key index as the broker reports it after a round
                return any(
                    e["event"] == "log_cleaned" and (e["keys"], e["tombstones"]) == (2, 0) for e in logs
                )

            _ = await wait_until(forgotten, timeout=10, message="the tombstone dropped")
            async with Directory(ctx, endpoints, keys=api_keys()) as directory:
                assert await directory.consumers() == []
