"""Failures inside the broker and misuse by clients: stop loudly or refuse precisely, lose nothing."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
import structlog.testing

from actors.broker import cleaner
from actors.broker.log import EventLog
from actors.runtime import Escalation
from core.bus import BusRejected
from core.envelope import Envelope
from tests.broker.helpers import envelope, read_log
from tests.support.broker import embedded_broker
from tests.support.keys import api_keys
from tests.support.wait import wait_until
from transport.client import Publisher
from transport.sockets import Context


async def test_an_fsync_failure_stops_the_broker_and_is_never_retried(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []

    def failing_sync(fds: list[int]) -> None:
        calls.append(fds)
        for fd in fds:  # they are ours to close (duplicates handed over by the log)
            os.close(fd)
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(EventLog, "sync_fds", staticmethod(failing_sync))
    with pytest.raises(BaseExceptionGroup) as info:
        async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints, keys=api_keys()) as pub:
            await pub.publish([envelope(1)])
    assert info.group_contains(Escalation)
    assert len(calls) == 1


async def test_a_bad_envelope_among_coalesced_publishes_fails_only_its_caller(
    ctx: Context, tmp_path: Path
) -> None:
    bad = Envelope(
        "00000000-0000-0000-0000-00000000000x", "account.created", 2, "a", "account:a", False, "t", "c", {}
    )
    good = [envelope(i) for i in range(20)]
    async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints, keys=api_keys()) as pub:
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


async def test_a_failed_cleaning_round_is_logged_the_log_is_untouched_and_a_later_round_cleans(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_clean = cleaner.clean
    calls: list[int] = []

    def clean_once_failing(
        plan: cleaner.CleanPlan, step: cleaner.Step = cleaner.no_step
    ) -> cleaner.CleanResult:
        calls.append(len(plan.inputs))
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "injected: no space left")
        return real_clean(plan, step)

    monkeypatch.setattr(cleaner, "clean", clean_once_failing)
    events = [envelope(i, key=i % 4) for i in range(40)]
    with structlog.testing.capture_logs() as logs:
        async with embedded_broker(tmp_path, segment_bytes=1000) as endpoints:
            async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
                await pub.publish(events)
            _ = await wait_until(
                lambda: any(e["event"] == "log_cleaned" for e in logs), message="a round after the failure"
            )
            retained = await read_log(ctx, endpoints)
    assert any(e["event"] == "log_cleaning_failed" for e in logs)
    assert not list((tmp_path / "log").glob("*.cleaned"))
    newest = {e.key: e.event_id for e in events}
    assert {env.key: env.event_id for _seq, env in retained} == newest
