"""What every figure gets: the mode, the number of runs, a work dir, and the running system.

`Bench.system(clusters, state=...)` gives the `fabric up` of state dir
`state` running exactly `clusters`: started on first use and shared by the
figures that follow (create, get and latency share the two-cluster one).
Asking for other clusters on the same state dir restarts `up` there with
them, as a user adding clusters would (the new ones start empty and catch
up); another state dir stops the running system first, since two systems
at once would measure each other. `close` stops whatever runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.system import System
from transport.bus_choice import BUS_NAMES, BusName

TWO_CLUSTERS = ("east", "west")


@dataclass
class Bench:
    work: Path
    quick: bool
    runs: int
    buses: tuple[BusName, ...] = BUS_NAMES
    _system: System | None = field(default=None, init=False)

    async def system(
        self, clusters: Sequence[str] = TWO_CLUSTERS, *, state: str = "main",
        env: Mapping[str, str] | None = None, bus: BusName = "zmq",
    ) -> System:
        root = self.root(state, bus)
        current = self._system
        if current is not None and current.root == root and current.clusters == tuple(clusters):
            return current
        await self.close()
        system = System(root, clusters, env, bus=bus)
        self._system = system
        await system.start()
        return system

    def root(self, state: str, bus: BusName) -> Path:
        return self.work / f"{state}-{bus}"

    async def close(self) -> None:
        system, self._system = self._system, None
        if system is not None:
            await system.stop()
