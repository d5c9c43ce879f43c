"""Failures inside the broker and misuse by clients: stop loudly or refuse precisely, lose nothing."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from actors.broker.log import EventLog
from actors.runtime import Escalation
from core.bus import BusRejected
from core.envelope import Envelope
from tests.broker.helpers import envelope
from tests.support.broker import embedded_broker
from transport.client import Publisher
from transport.sockets import Context


async def test_an_fsync_failure_stops_the_broker_and_is_never_retried(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []

    def failing_sync(fds: list[int]) -> None:
        calls.append(fds)
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(EventLog, "sync_fds", staticmethod(failing_sync))
    with pytest.raises(BaseExceptionGroup) as info:
        async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints) as pub:
            await pub.publish([envelope(1)])
    assert info.group_contains(Escalation)
    assert len(calls) == 1


async def test_a_bad_envelope_among_coalesced_publishes_fails_only_its_caller(
    ctx: Context, tmp_path: Path
) -> None:
    bad = Envelope("00000000-0000-0000-0000-00000000000x", "account.created", 1, "a", "t", "c", {})
    good = [envelope(i) for i in range(20)]
    async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints) as pub:
        outcomes = await asyncio.gather(
            *(pub.publish([e]) for e in good[:10]),
            pub.publish([bad]),
            *(pub.publish([e]) for e in good[10:]),
            return_exceptions=True,
        )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], BusRejected)
    receipts = [o[0] for o in outcomes if isinstance(o, list)]
    assert sorted(r.seq for r in receipts) == list(range(1, 21))
    assert [r.event_id for r in receipts] == [e.event_id for e in good]
