"""Figure 3: create-to-ready latency, p50 and p99, with two clusters, against the direct path.

On each of the bench's buses in turn (`--bus`), a two-cluster `fabric up` of
its own, fresh for the figure (state dir `latency`, one per bus), so the
buses start alike. One account at a time on that otherwise quiet system: the
time from sending `account.create` to `account.wait` answering `ready` (both
clusters created the namespace and its objects and the API heard back).
The direct path, measured alternately with it: a bare aiohttp client
creating the same objects in both emulators in parallel (bench/direct.py).
Each run takes `samples` of each after a few unmeasured ones, and yields
its p50 and p99 (nearest rank), and notes where the CPU went (`CpuLedger`):
per create-to-ready, every process of the system (the emulators only while
ours ran), and per direct provision, its client and the emulators while it
ran. Both paths share two cores, so what our path spends beside the
Kubernetes work is what it waits for. Goals: p50 <= 1.5x direct, p99 <= 3x
direct p99 on every run. Each bus gets both figures, against its own direct
path (its own emulators, measured alternately with it).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections import defaultdict

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


class CpuLedger:
    """CPU seconds by process over a run's measured samples, ours and the direct path's."""

    def __init__(self) -> None:
        self.ours: defaultdict[str, float] = defaultdict(float)
        self.direct: defaultdict[str, float] = defaultdict(float)
        self.samples = 0

    def add(self, before: dict[str, float], between: dict[str, float], after: dict[str, float],
            client: float) -> None:
        """One sample: the system's CPU `before` ours, `between` ours and the direct path's, and
        `after` it; `client` the direct path's own CPU."""
        for name, now in after.items():
            if name.startswith("kube-"):  # the direct path's emulators too
                self.ours[name] += max(0.0, between.get(name, now) - before.get(name, now))
                self.direct[name] += max(0.0, now - between.get(name, now))
            else:  # no other process does anything for the direct path
                self.ours[name] += max(0.0, now - before.get(name, now))
        self.direct["client"] += client
        self.samples += 1

    def notes(self, run: int) -> list[str]:
        def line(spent: dict[str, float]) -> str:
            each = ", ".join(f"{name} {spent[name] / self.samples * 1000:.2f}" for name in sorted(spent))
            return f"{each} ({sum(spent.values()) / self.samples * 1000:.2f} in all)"

        return [
            f"run {run + 1}: CPU per create-to-ready, ms: {line(self.ours)} on {os.cpu_count()} cores",
            f"run {run + 1}: CPU per direct provision, ms: {line(self.direct)}",
        ]


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
    cpu_notes: list[str] = []
    async with DirectClient(system.kubes) as direct:
        for run in range(bench.runs):
            ours: list[float] = []
            theirs: list[float] = []
            ledger = CpuLedger()
            for n in range(WARMUP_SAMPLES + samples):
                measured = n >= WARMUP_SAMPLES
                before = system.cpu_by_child() if measured else {}
                start = time.perf_counter()
                _ = await system.create_ready(f"l{tag}-{run}-{n}")
                mine = time.perf_counter() - start
                between = system.cpu_by_child() if measured else {}
                client = time.process_time()
                base = await direct.provision_everywhere(tenant(f"l{tag}-{run}", n))
                client = time.process_time() - client
                if measured:
                    ledger.add(before, between, system.cpu_by_child(), client)
                    ours.append(mine * 1000)
                    theirs.append(base * 1000)
            p50s.append((percentile(ours, 0.5), percentile(theirs, 0.5)))
            p99s.append((percentile(ours, 0.99), percentile(theirs, 0.99)))
            cpu_notes.extend(ledger.notes(run))
    direct_name = "direct path: a bare aiohttp client, the same objects, both emulators in parallel"
    note = f"{samples} accounts per run, one at a time, after {WARMUP_SAMPLES} unmeasured"
    return [
        figure("latency", "create-to-ready p50, 2 clusters", "ms", "lower", p50s, direct_name,
               Goal(1.5), notes=[note, *cpu_notes], bus=bus),
        figure("latency", "create-to-ready p99, 2 clusters", "ms", "lower", p99s, direct_name,
               Goal(3.0, every_run=True), notes=[note], bus=bus),
    ]
