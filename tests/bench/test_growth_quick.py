"""`fabric bench growth --quick --json` runs end to end and reports every figure of every row.

Shape only: the figures are the benchmark's business, never a test's (they move
with the machine). Run through `bin/fabric`, the entry point people use, so the
registration in `bench/__main__.py` is covered too.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.processes import ProcessGroup

FIGURES = ("rss_mb", "rss_mb_before_restart", "disk_mb", "disk_mb_before_restart", "restart_s")


@pytest.mark.parametrize("consumer", ["keeping-up", "none"])
async def test_growth_quick_reports_each_figure_per_row(procs: ProcessGroup, consumer: str) -> None:
    proc = await procs.start(
        "fabric", "bench", "growth", "--quick", "--json", "--consumer", consumer,
        name="bench", stdout_to_log=False,
    )
    async with asyncio.timeout(90):
        out, _ = await proc.process.communicate()
    assert proc.process.returncode == 0, proc.log_text()

    report = json.loads(out)
    rows = report["rows"]
    assert [row["events"] for row in rows] == [2_000, 20_000]
    for row in rows:
        for figure in FIGURES:
            value = row[figure]
            assert type(value) in (int, float), (figure, row)
            assert value > 0, (figure, row)
        assert isinstance(row["settled"], bool)
    assert set(report["ratios"]) == set(FIGURES)
    assert all(ratio > 0 for ratio in report["ratios"].values())
    assert report["goal"] == {"max_ratio": 1.2, "max_rss_mb": 80.0}
    assert report["accounts"] == 200
    assert isinstance(report["consumer"], str)
    assert report["consumer"]
