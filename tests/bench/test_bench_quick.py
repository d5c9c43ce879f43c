"""`fabric bench --quick --json PATH` runs every figure end to end and writes each with its baseline.

Shape only: the numbers are the benchmark's business, never a test's (they
move with the machine). Run through `bin/fabric`, the entry point people use,
so a benchmark that breaks (a renamed method, a process that no longer
starts) fails here instead of silently.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.growth import FIGURES as GROWTH_FIGURES
from tests.support.processes import ProcessGroup

EXPECTED = {
    "create": ["account.create, 16 clients", "account.create, 64 clients"],
    "get": ["account.get, 16 clients", "account.get, 64 clients"],
    "latency": ["create-to-ready p50, 2 clusters", "create-to-ready p99, 2 clusters"],
    "convergence": ["convergence, 20 accounts x 4 clusters", "daemon CPU per account-cluster"],
    "publish": [
        "confirmed publish, async",
        "confirmed publish, async, against fsync-always",
        "confirmed publish, batched (100 per publish, 8 in flight)",
        "one-at-a-time confirm latency p50",
        "one-at-a-time confirm latency p99",
        "one-at-a-time confirm latency p50, against default sync",
    ],
    "growth": [f"{label} at 20,000 events" for _key, label, _cap in GROWTH_FIGURES],
}


def _positive(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value > 0


def _check_side(side: dict[str, Any], runs: int) -> None:
    for key in ("median", "min", "max"):
        assert _positive(side[key]), side
    assert side["min"] <= side["median"] <= side["max"], side
    assert len(side["runs"]) == runs, side
    assert all(_positive(v) for v in side["runs"]), side


@pytest.mark.timeout(600)
async def test_quick_bench_writes_every_figure_beside_its_baseline(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    proc = await procs.start("fabric", "bench", "--quick", "--json", str(out), name="bench")
    async with asyncio.timeout(560):
        await proc.process.wait()
    assert proc.process.returncode == 0, proc.log_text()

    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    assert doc["errors"] == []
    assert doc["command"].endswith(f"bench --quick --json {out}")
    assert _positive(doc["machine"]["nproc"])
    assert doc["machine"]["cpu_model"]
    assert doc["groups"] == list(EXPECTED)
    names = {group: [f["name"] for f in doc["figures"] if f["group"] == group] for group in EXPECTED}
    assert names == EXPECTED
    for f in doc["figures"]:
        _check_side(f["measured"], runs=1)
        _check_side(f["baseline"], runs=1)
        assert f["baseline"]["name"], f
        assert f["better"] in ("higher", "lower"), f
        assert f["unit"], f
        assert f["ratio"] == pytest.approx(f["measured"]["median"] / f["baseline"]["median"], rel=1e-2)
        assert len(f["run_ratios"]) == 1, f
        assert _positive(f["run_ratios"][0]), f
        if f["goal"] is None:
            assert f["met"] is None, f
        else:
            assert _positive(f["goal"]["ratio"]), f
            assert f["goal"]["text"], f
            assert isinstance(f["met"], bool), f
