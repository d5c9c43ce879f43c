"""Fixtures every test can use: no leaked tasks, real processes ended by pid, free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup
from transport.sockets import Context, close_context, new_context


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



# PostgreSQL fixtures of the API's tests (appended; see tests/support/postgres.py).
from tests.support.postgres import PgAdmin  # noqa: E402


@pytest.fixture(scope="session")
def pg_base() -> Generator[Path, None, None]:
    """Where test servers keep their data: outside pytest's tmp dirs, which pytest makes 0700."""
    from tests.support.postgres import server_base

    with server_base() as base:
        yield base


@pytest.fixture(scope="session")
def pg_pristine(pg_base: Path) -> Path:
    """An initdb'd data directory that test servers start from copies of."""
    from tests.support.postgres import make_pristine

    return make_pristine(pg_base / "pristine")


@pytest.fixture(scope="session")
def pg_admin(request: pytest.FixtureRequest) -> Generator[PgAdmin, None, None]:
    """One PostgreSQL for the session: FABRIC_TEST_PG_DSN when set, else an embedded server."""
    import os

    from tests.support.ports import free_port
    from tests.support.postgres import EmbeddedServer

    given = os.environ.get("FABRIC_TEST_PG_DSN")
    if given:
        admin = PgAdmin(given)
        admin.prepare_template()
        yield admin
        return
    pristine: Path = request.getfixturevalue("pg_pristine")
    server = EmbeddedServer.from_pristine(pristine, pristine.parent / "session", free_port())
    server.start()
    try:
        admin = PgAdmin(server.dsn())
        admin.prepare_template()
        yield admin
    finally:
        server.stop()


@pytest.fixture
async def pg_dsn(pg_admin: PgAdmin) -> AsyncIterator[str]:
    """A fresh database with the legacy schema, dropped after the test."""
    dsn = await pg_admin.fresh_database()
    try:
        yield dsn
    finally:
        await pg_admin.drop_database(dsn)


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    """A ZeroMQ context per test (never the global instance), closed with its sockets."""
    context = new_context()
    try:
        yield context
    finally:
        close_context(context)
