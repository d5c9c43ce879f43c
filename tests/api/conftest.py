"""Fixtures of the API tests: the API in-process over the in-memory bus and a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.harness import RunningApi, fast_settings, running_api
from tests.support.fake_bus import FakeBus, FakeConnector
from tests.support.postgres import PgAdmin


@pytest.fixture
async def cache_dsn(pg_admin: PgAdmin) -> AsyncIterator[str]:
    """An empty database (the legacy server's) for a PostgreSQL query cache, dropped after."""
    dsn = await pg_admin.fresh_database(migrated=False)
    try:
        yield dsn
    finally:
        await pg_admin.drop_database(dsn)


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
async def api(pg_dsn: str, tmp_path: Path, bus: FakeBus) -> AsyncIterator[RunningApi]:
    bus.set_online("cluster:a", True)
    async with running_api(fast_settings(pg_dsn, tmp_path / "state"), FakeConnector(bus)) as running:
        yield running
