"""The suite's guard against leaked tasks fails a test that leaves one running."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def test_a_test_leaving_a_task_running_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest("from tests.conftest import _no_leaked_tasks  # noqa: F401\n")
    pytester.makepyfile(
        """
        import asyncio

        async def test_leaks():
            asyncio.get_running_loop().create_task(asyncio.Event().wait(), name="forgotten")

        async def test_clean():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider",
        "-o", "asyncio_mode=auto",
        "-o", "asyncio_default_fixture_loop_scope=function",
    )  # fmt: skip
    # test_leaks passes its call phase and errors at teardown, where the guard looks.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test leaked running tasks:*forgotten*"])
