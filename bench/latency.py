"""Figure 3: create-to-ready latency, p50 and p99, with two clusters, against the direct path.

On each of the bench's buses in turn (`--bus`), a two-cluster `fabric up` of
its own, fresh for the figure (state dir `latency`, one per bus), so the
buses start alike. One account at a time on that otherwise quiet system: the
time from sending `account.create` to `account.wait` answering `ready` (both
clusters created the namespace and its objects and the API heard back).
The direct path, measured alternately with it: a bare aiohttp client
creating the same objects in both emulators in parallel (bench/direct.py).
Each run takes `samples` of each after a few unmeasured ones, and yields
its p50 and p99 (nearest rank). Goals: p50 <= 1.5x direct, p99 <= 3x
direct p99 on every run. Each bus gets both figures, against its own direct
path (its own emulators, measured alternately with it).
"""

from __future__ import annotations

import math
import secrets
import time

from bench.context import Bench
from bench.direct import DirectClient, tenant
from bench.figures import Figure, Goal, figure
from transport.bus_choice import BusName

FULL_SAMPLES = 200
QUICK_SAMPLES = 10
WARMUP_SAMPLES = 5
STATE = "latency"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def run_latency(bench: Bench) -> list[Figure]:
    figures: list[Figure] = []
    for bus in bench.buses:
        figures.extend(await _latency_on(bench, bus))
    return figures


async def _latency_on(bench: Bench, bus: BusName) -> list[Figure]:
    system = await bench.system(state=STATE, bus=bus)
    await system.quiet(timeout=900.0)
    samples = QUICK_SAMPLES if bench.quick else FULL_SAMPLES
    tag = secrets.token_hex(3)
    p50s: list[tuple[float, float]] = []
    p99s: list[tuple[float, float]] = []
    async with DirectClient(system.kubes) as direct:
        for run in range(bench.runs):
            ours: list[float] = []
            theirs: list[float] = []
            for n in range(WARMUP_SAMPLES + samples):
                start = time.perf_counter()
                _ = await system.create_ready(f"l{tag}-{run}-{n}")
                mine = time.perf_counter() - start
                base = await direct.provision_everywhere(tenant(f"l{tag}-{run}", n))
                if n >= WARMUP_SAMPLES:
                    ours.append(mine * 1000)
                    theirs.append(base * 1000)
            p50s.append((percentile(ours, 0.5), percentile(theirs, 0.5)))
            p99s.append((percentile(ours, 0.99), percentile(theirs, 0.99)))
    direct_name = "direct path: a bare aiohttp client, the same objects, both emulators in parallel"
    note = f"{samples} accounts per run, one at a time, after {WARMUP_SAMPLES} unmeasured"
    return [
        figure("latency", "create-to-ready p50, 2 clusters", "ms", "lower", p50s, direct_name,
               Goal(1.5), notes=[note], bus=bus),
        figure("latency", "create-to-ready p99, 2 clusters", "ms", "lower", p99s, direct_name,
               Goal(3.0, every_run=True), notes=[note], bus=bus),
    ]
