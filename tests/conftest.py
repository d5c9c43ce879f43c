"""Fixtures every test can use: no leaked tasks, real processes ended by pid, free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running once it and its fixtures are done."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    for _ in range(3):  # let tasks that are finishing right now finish
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.gather(*leaked, return_exceptions=True)
    assert not leaked, f"test leaked running tasks: {sorted(t.get_name() for t in leaked)}"


@pytest.fixture
async def procs(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProcessGroup]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        await group.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(group.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can print process logs on failure."""
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
