"""The whole system under test: one `fabric up` per test, stopped whatever happens.

A test module may set `CLUSTERS` (default a, b): the clusters `up.start()` runs when not told.

Every test that uses `up` (or the `bus` fixture) runs once per bus, `zmq` and `jetstream`
(test ids `[zmq]`, `[jetstream]`); a module restricts that with `BUSES = ["zmq"]`, as those
do whose subject is not the bus (lifecycle, RBAC, outside dependencies), to keep the suite's
time in check. On the JetStream bus `fabric up` runs a local nats-server in the broker's
place (`FabricUp.bus_child`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.harness import BUSES, FabricUp


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bus" in metafunc.fixturenames:
        buses = list(getattr(metafunc.module, "BUSES", BUSES))
        # Module scope, so a module-scoped system (one `up` for many tests) runs once per bus.
        metafunc.parametrize("bus", buses, ids=buses, scope="module")


@pytest.fixture
def up(tmp_path: Path, request: pytest.FixtureRequest, bus: str) -> Iterator[FabricUp]:
    clusters: list[str] = getattr(request.module, "CLUSTERS", ["a", "b"])
    system = FabricUp(tmp_path / "state", tmp_path / "logs", clusters, bus=bus)
    try:
        yield system
    finally:
        system.close()
