"""Figure 4: convergence throughput, N accounts x 4 clusters, and daemon CPU per account-cluster.

The daemons alone, as a user sees them when clusters join: a `fabric up`
with one cluster gets N accounts through the API (their events reach the
broker); then, for each run, `fabric up` is started again on the same state
dir with four new clusters, which start empty and catch up on every live
account. Throughput: 4N account-clusters over the time from the first to the
last `created` the new clusters reported (the reports' own timestamps, as
the API shows them once every account is created everywhere), so the
creates are not part of it. Daemon CPU: each daemon process's utime+stime
from its own cluster's first `created` to its last (sampled every
SAMPLE_INTERVAL and interpolated), so no daemon's start-up is counted, per
account-cluster in those windows. The spread of the daemons' first reports
is a note: how far the starts overlap the throughput's window.

The baseline, measured right after in the same four emulators: a bare aiohttp
client in the bench's own process creating the same objects (bench/direct.py)
for N other accounts, with the daemons' parallelism (each daemon's
`--max-parallel` default, or FABRIC_DAEMON_PARALLEL: that many accounts in
flight per cluster); its process CPU per account-cluster. The daemons'
periodic resync is pushed past the figure (FABRIC_RESYNC_SECONDS, unless
set), so it lists no cluster while the baseline runs. Goals: throughput
>= 0.8x, CPU <= 1.5x.

On each of the bench's buses (`--bus`), a state dir of its own, seeded alike;
the runs alternate between the buses (run 1 on each, then run 2 on each, ...)
so that a machine getting busier or quieter during the figure moves both.
Each bus's figures are against the direct path measured on its own emulators
right after its run. The bus server's CPU over the same window (our broker,
or `up`'s nats-server) is a note beside the daemons': neither figure counts it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.daemon.settings import build_parser
from actors.legacy import db
from bench.context import Bench
from bench.direct import DirectClient, tenant
from bench.figures import BenchError, Figure, Goal, figure
from bench.load import Target, run_all
from bench.system import System, cpu_seconds, poll
from transport.bus_choice import BusName

CLUSTERS = 4
FULL_ACCOUNTS = 1000
QUICK_ACCOUNTS = 20
CREATE_CLIENTS = 64
SAMPLE_INTERVAL = 0.1
TIMEOUT = 1800.0
STATE = "convergence"
BUS_SERVERS: dict[BusName, str] = {"zmq": "broker", "jetstream": "nats"}  # `up`'s child on each bus
ENV = {"FABRIC_RESYNC_SECONDS": "3600"}


def daemon_parallelism() -> int:
    return int(build_parser(os.environ).get_default("max_parallel"))


def _bodies(tag: str, n: int) -> list[bytes]:
    return [
        json.dumps({
            "jsonrpc": "2.0", "id": i, "method": "account.create",
            "params": {"name": f"v{tag}-{i}", "owner_email": f"v{tag}-{i}@bench.example",
                       "slug": f"v{tag}-{i}"},
        }).encode()
        for i in range(n)
    ]


class CpuSampler:
    """utime+stime of some children of `up` (summed), sampled in the background with the time."""

    def __init__(self, system: System, children: list[str]) -> None:
        self._system = system
        self._children = children
        self._pids: dict[str, int] = {}
        self.samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds)

    async def run(self) -> None:
        while True:
            total = 0.0
            for child in self._children:
                pid = self._system.pid_if_running(child)
                if pid is None:
                    continue
                if self._pids.setdefault(child, pid) != pid:
                    raise BenchError(f"{child} restarted during the figure:\n{self._system.log_tail()}")
                total += cpu_seconds(pid)
            self.samples.append((time.time(), total))
            await asyncio.sleep(SAMPLE_INTERVAL)

    def at(self, when: float) -> float:
        """The CPU total at `when`, interpolated between the samples around it."""
        times = [t for t, _ in self.samples]
        i = bisect.bisect_left(times, when)
        if i == 0 or i == len(times):
            raise BenchError("the CPU samples do not cover the measured window")
        (t0, c0), (t1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0)


async def _seed(bench: Bench, n: int, tag: str, bus: BusName) -> None:
    """N accounts created through a one-cluster system; back once all their events are published."""
    system = await bench.system(("seed",), state=STATE, env=ENV, bus=bus)
    _ = await run_all(Target(system.api_url, system.admin_key), CREATE_CLIENTS, _bodies(tag, n))
    pool = await db.create_pool(system.dsn, max_size=1)
    try:

        async def published() -> bool:
            return await db.backlog(pool) == 0

        await poll(published, timeout=TIMEOUT, interval=0.1, what="the outbox relayed every create")
    finally:
        await pool.close()


def _reports(
    accounts: list[dict[str, Any]], clusters: tuple[str, ...]
) -> dict[str, list[float]] | None:
    """When each account was reported created, by cluster, or None while one is not yet."""
    times: dict[str, list[float]] = {cluster: [] for cluster in clusters}
    for account in accounts:
        for cluster in clusters:
            report = account["clusters"].get(cluster)
            if report is None or report["state"] != "created" or not report["updated_at"]:
                return None
            times[cluster].append(datetime.fromisoformat(report["updated_at"]).timestamp())
    return times


@dataclass(frozen=True, slots=True)
class SystemRun:
    """One catch-up of the system: seconds are per account-cluster."""

    rate: float  # account-clusters/s, first to last `created` of any cluster
    daemon_cpu: float
    kube_cpu: float
    server_cpu: float | None  # None when `up` runs no bus server (an outside NATS)
    start_spread: float  # seconds between the first daemon's first report and the last's
    system: System


def _per_cluster(samplers: dict[str, CpuSampler], windows: dict[str, tuple[float, float]]) -> float:
    """CPU seconds each cluster's process spent within that cluster's own window."""
    return sum(samplers[c].at(last) - samplers[c].at(first) for c, (first, last) in windows.items())


async def _system_once(bench: Bench, run: int, n: int, bus: BusName) -> SystemRun:
    """The system's catch-up of `n` accounts in CLUSTERS new clusters.

    Each daemon's (and its emulator's) CPU is counted from its own cluster's first `created`
    to its last. The four start at once on two cores: in one window for all, a daemon still
    starting (its imports alone take about a second of CPU) while another already reports
    would count its start-up as work on accounts, as much of it as the starts overlap."""
    clusters = tuple(f"r{run}{c}" for c in "abcd"[:CLUSTERS])
    # The system before is stopped first: its bus server's pid must not be sampled as this one's.
    await bench.close()
    probe = System(bench.root(STATE, bus), clusters)  # only to read pid files while `up` starts
    daemons = {c: CpuSampler(probe, [f"daemon-{c}"]) for c in clusters}
    kubes = {c: CpuSampler(probe, [f"kube-{c}"]) for c in clusters}
    server = CpuSampler(probe, [BUS_SERVERS[bus]])
    sampled = [*daemons.values(), *kubes.values(), server]
    samplers = [asyncio.create_task(s.run(), name="bench:cpu-sampler") for s in sampled]
    try:
        system = await bench.system(clusters, state=STATE, env=ENV, bus=bus)
        found: dict[str, list[float]] = {}

        async def converged() -> bool:
            for sampler in samplers:
                if sampler.done():
                    sampler.result()  # a restarted child: its error
            states = {c["name"]: c["status"] for c in await system.call("cluster.list", {})}
            if any(states.get(c) != "online" for c in clusters) or await system.provisioning():
                return False  # the cheap checks first: the listing below costs the API more
            times = _reports(await system.accounts(), clusters)
            if times is not None:
                found.update(times)
            return times is not None

        await poll(converged, timeout=TIMEOUT, interval=0.5, what=f"{n} accounts in {clusters}")
        windows = {c: (min(times), max(times)) for c, times in found.items()}
        first = min(w[0] for w in windows.values())
        last = max(w[1] for w in windows.values())

        async def sampled_after_last() -> bool:
            return all(s.samples and s.samples[-1][0] > last for s in sampled)

        await poll(sampled_after_last, timeout=10, interval=SAMPLE_INTERVAL, what="a CPU sample")
    finally:
        for sampler in samplers:
            _ = sampler.cancel()
        _ = await asyncio.gather(*samplers, return_exceptions=True)
    total = sum(len(times) for times in found.values())
    if total != n * CLUSTERS or any(last_c <= first_c for first_c, last_c in windows.values()):
        got = {c: len(times) for c, times in found.items()}
        raise BenchError(f"expected {n} reports over some time from each of {clusters}, got {got}")
    # A window's first report is the work before it: each window holds one account fewer.
    worked = total - len(windows)
    has_server = system.pid_if_running(BUS_SERVERS[bus]) is not None
    return SystemRun(
        rate=(total - 1) / (last - first),
        daemon_cpu=_per_cluster(daemons, windows) / worked,
        kube_cpu=_per_cluster(kubes, windows) / worked,
        server_cpu=(server.at(last) - server.at(first)) / total if has_server else None,
        start_spread=max(w[0] for w in windows.values()) - first,
        system=system,
    )


async def _direct_once(system: System, tag: str, n: int, parallel: int) -> tuple[float, float, float]:
    """(account-clusters/s, client CPU s and emulator CPU s per account-cluster)."""
    kube_pids = [system.pid(f"kube-{c}") for c in system.clusters]
    kube_before = sum(cpu_seconds(p) for p in kube_pids)
    tenants = [tenant(tag, i) for i in range(n)]
    async with DirectClient(system.kubes, limit=parallel * len(system.clusters)) as direct:
        cpu_before = time.process_time()
        elapsed = await direct.converge(tenants, parallel)
        cpu = time.process_time() - cpu_before
    kube = sum(cpu_seconds(p) for p in kube_pids) - kube_before
    total = n * len(system.clusters)
    return total / elapsed, cpu / total, kube / total


async def run_convergence(bench: Bench) -> list[Figure]:
    n = QUICK_ACCOUNTS if bench.quick else FULL_ACCOUNTS
    parallel = daemon_parallelism()
    tag = secrets.token_hex(3)
    for bus in bench.buses:
        await _seed(bench, n, tag, bus)
    rates: dict[BusName, list[tuple[float, float]]] = {bus: [] for bus in bench.buses}
    cpus: dict[BusName, list[tuple[float, float]]] = {bus: [] for bus in bench.buses}
    notes: dict[BusName, list[str]] = {bus: [] for bus in bench.buses}
    for run in range(bench.runs):
        for bus in bench.buses:
            ours = await _system_once(bench, run, n, bus)
            base_rate, base_cpu, base_kube = await _direct_once(
                ours.system, f"v{tag}{run}", n, parallel
            )
            rates[bus].append((ours.rate, base_rate))
            cpus[bus].append((ours.daemon_cpu * 1000, base_cpu * 1000))
            notes[bus].append(f"run {run + 1}: emulator CPU per account-cluster "
                              f"{ours.kube_cpu * 1000:.2f} ms (daemons) vs {base_kube * 1000:.2f} ms "
                              f"(direct); the daemons' first reports {ours.start_spread:.2f} s apart")
            if ours.server_cpu is not None:
                notes[bus].append(f"run {run + 1}: {BUS_SERVERS[bus]} CPU per account-cluster "
                                  f"{ours.server_cpu * 1000:.2f} ms, not in the daemons' figure")
    direct_name = (f"bare aiohttp client, the same objects in the same {CLUSTERS} emulators, "
                   f"{parallel} accounts in flight per cluster")
    how = (f"{n} accounts created through the API first; then {CLUSTERS} new clusters join and catch "
           "up; first to last `created` reported")
    return [
        f
        for bus in bench.buses
        for f in (
            figure("convergence", f"convergence, {n} accounts x {CLUSTERS} clusters",
                   "account-clusters/s", "higher", rates[bus], direct_name, Goal(0.8),
                   notes=[how, *notes[bus]], bus=bus),
            figure("convergence", "daemon CPU per account-cluster", "ms", "lower", cpus[bus],
                   "the bare client's own CPU per account-cluster", Goal(1.5),
                   notes=[f"each of the {CLUSTERS} daemon processes' utime+stime from its cluster's "
                          "first `created` to its last"], bus=bus),
        )
    ]
