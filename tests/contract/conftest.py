"""Outside-contract tests run every process with only the settings the test gives it."""

from __future__ import annotations

import os

import pytest

from tests.contract.logs import fabric_settings_in


@pytest.fixture(autouse=True)
def _no_caller_fabric_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's FABRIC_* shell settings must not change what these tests observe."""
    for key in fabric_settings_in(dict(os.environ)):
        monkeypatch.delenv(key)
