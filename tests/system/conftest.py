"""The whole system under test: one `fabric up` per test, stopped whatever happens.

A test module may set `CLUSTERS` (default a, b): the clusters `up.start()` runs when not told.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.harness import FabricUp


@pytest.fixture
def up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FabricUp]:
    clusters: list[str] = getattr(request.module, "CLUSTERS", ["a", "b"])
    system = FabricUp(tmp_path / "state", tmp_path / "logs", clusters)
    try:
        yield system
    finally:
        system.close()
