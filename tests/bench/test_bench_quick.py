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

LATENCY = ["create-to-ready p50, 2 clusters", "create-to-ready p99, 2 clusters"]
CONVERGENCE = ["convergence, 20 accounts x 4 clusters", "daemon CPU per account-cluster"]
BUSES = ("zmq", "jetstream")
# (figure, the bus of the system it measured: None where none runs); the end-to-end groups
# once per bus, the quick run covering both.
EXPECTED: dict[str, list[tuple[str, str | None]]] = {
    "create": [("account.create, 16 clients", "zmq"), ("account.create, 64 clients", "zmq")],
    "get": [("account.get, 16 clients", "zmq"), ("account.get, 64 clients", "zmq")],
    "latency": [(name, bus) for bus in BUSES for name in LATENCY],
    "convergence": [(name, bus) for bus in BUSES for name in CONVERGENCE],
    "publish": [(name, None) for name in [
        "confirmed publish, async",
        "confirmed publish, async, against fsync-always",
        "confirmed publish, batched (100 per publish, 8 in flight)",
        "one-at-a-time confirm latency p50",
        "one-at-a-time confirm latency p99",
        "one-at-a-time confirm latency p50, against the transport's floor",
        "one-at-a-time confirm latency p50, against default sync",
    ]],
    "growth": [(f"{label} at 20,000 events", None) for _key, label, _cap in GROWTH_FIGURES],
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
    names = {group: [(f["name"], f["bus"]) for f in doc["figures"] if f["group"] == group]
             for group in EXPECTED}
    assert names == EXPECTED
    figures = {(f["group"], f["name"], f["bus"]): f for f in doc["figures"]}
    compared = [(c["group"], c["name"]) for c in doc["side_by_side"]]
    assert compared == [(g, n) for g, names_ in (("latency", LATENCY), ("convergence", CONVERGENCE))
                        for n in names_]
    for c in doc["side_by_side"]:
        assert list(c["buses"]) == list(BUSES), c
        for bus, side in c["buses"].items():
            f = figures[(c["group"], c["name"], bus)]
            assert side["measured"] == f["measured"]["median"], c
            assert side["baseline"] == f["baseline"]["median"], c
        versus = c["versus"]["jetstream"]
        assert versus["of"] == "zmq", c
        zmq, js = c["buses"]["zmq"], c["buses"]["jetstream"]
        assert versus["measured"] == pytest.approx(js["measured"] / zmq["measured"], rel=1e-2), c
        assert versus["ratio"] == pytest.approx(js["ratio"] / zmq["ratio"], rel=1e-2), c
    for bus in BUSES:  # where each path's CPU went, every process named
        notes = figures[("latency", LATENCY[0], bus)]["notes"]
        ours = next(n for n in notes if n.startswith("run 1: CPU per create-to-ready, ms: "))
        direct = next(n for n in notes if n.startswith("run 1: CPU per direct provision, ms: "))
        for process in ("api", "daemon-east", "daemon-west", "kube-east", "kube-west", "postgres",
                        "broker" if bus == "zmq" else "nats"):
            assert f" {process} " in ours, ours
        assert " in all) on " in ours, ours
        assert all(f" {p} " in direct for p in ("client", "kube-east", "kube-west")), direct
        assert " api " not in direct, direct
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
