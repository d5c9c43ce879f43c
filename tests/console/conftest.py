"""Fixtures of the console's tests.

- `api`: the API in-process over the in-memory bus and a fresh database (HTTP-level tests).
- `up`: a real `fabric up` (tests/system/harness.py), stopped whatever happens.
- `browser`: headless Chromium through Playwright; `shots`: screenshots under the test's tmp dir.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.api.harness import RunningApi, fast_settings, running_api
from tests.console.browser import Shots, chromium
from tests.support.fake_bus import FakeBus
from tests.system.harness import FabricUp


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
async def api(pg_dsn: str, tmp_path: Path, bus: FakeBus) -> AsyncIterator[RunningApi]:
    bus.set_online("cluster:a", True)
    async with running_api(fast_settings(pg_dsn, tmp_path / "state"), bus.connector()) as running:
        yield running


@pytest.fixture
def up(tmp_path: Path) -> Iterator[FabricUp]:
    system = FabricUp(tmp_path / "state", tmp_path / "logs", ["a", "b"])
    try:
        yield system
    finally:
        system.close()


@pytest.fixture
async def browser(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Browser]:
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with chromium() as launched:
        yield launched


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path / "screenshots")
