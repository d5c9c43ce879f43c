"""Fixtures of the API tests: the API in-process over the in-memory bus and a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.harness import RunningApi, fast_settings, running_api
from tests.support.fake_bus import FakeBus, FakeConnector


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
async def api(pg_dsn: str, tmp_path: Path, bus: FakeBus) -> AsyncIterator[RunningApi]:
    bus.set_online("cluster:a", True)
    async with running_api(fast_settings(pg_dsn, tmp_path / "state"), FakeConnector(bus)) as running:
        yield running
