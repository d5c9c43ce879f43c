"""Group commit: a publish is confirmed only once an fdatasync covers its record, and many
publishes from many producers share each fdatasync."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from actors.broker.log import EventLog
from actors.broker.records import Scanner
from tests.broker.helpers import envelope
from tests.support.broker import embedded_broker
from tests.support.keys import api_keys
from transport.client import BrokerEndpoints, Publisher
from transport.sockets import Context

PRODUCERS = 10
EACH = 30


async def test_confirmations_follow_the_fsync_and_many_publishes_share_one(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    covered: list[int] = []  # bytes of the (single) segment each completed sync covers
    real_sync = EventLog.sync_fds

    def recording_sync(fds: list[int]) -> None:
        # The records written before the sync began (the file goes on with preallocated zeros).
        with Scanner(os.pread(fds[-1], os.fstat(fds[-1]).st_size, 0)) as scan:
            for _record in scan:
                pass
        before = scan.valid_end
        real_sync(fds)
        covered.append(before)

    monkeypatch.setattr(EventLog, "sync_fds", staticmethod(recording_sync))
    segment_dir = tmp_path / "log"

    async def producer(endpoints: BrokerEndpoints, k: int) -> None:
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            for i in range(EACH):
                (receipt,) = await pub.publish([envelope(k * 1000 + i)])
                (segment,) = segment_dir.iterdir()
                durable = segment.read_bytes()[: max(covered)]
                assert max(r.seq for r in Scanner(durable)) >= receipt.seq, "confirmed before its fsync"

    async with embedded_broker(tmp_path) as endpoints:
        await asyncio.gather(*(producer(endpoints, k) for k in range(PRODUCERS)))
    total = PRODUCERS * EACH
    assert len(covered) <= total * 2 // 3, f"{len(covered)} fsyncs for {total} publishes"
