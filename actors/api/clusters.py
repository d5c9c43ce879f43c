"""The cluster directory actor: remembers what the bus last said about its durable consumers.

A background task polls the bus's consumer directory every `interval`
seconds. Reads get the last good answer, so a short broker outage does not
break `account.get` or `cluster.list`; `reachable` turns false when a poll
fails (what /readyz reports as `broker`). Consumers named `cluster:NAME` are
the clusters; the `cache` consumer's lag is the cache's lag.

An account lists every known cluster from its first answer on, so a read
that comes before the first poll has answered asks the bus itself, once per
start and briefly (`first_wait`), rather than answer an empty list.

`WatchDirectory` answers a future resolved when the set of clusters or of
those online changes (actors/api/watchers.py): a cluster going offline can
be what `account.wait` was waiting for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import assert_never

from actors.api.metrics import ApiMetrics
from actors.api.watchers import Watchers
from actors.runtime import Actor, Request
from core.bus import BusConnector, ConsumerInfo

CLUSTER_PREFIX = "cluster:"
CACHE_CONSUMER = "cache"


@dataclass(frozen=True, slots=True)
class Directory:
    consumers: tuple[ConsumerInfo, ...] = ()
    reachable: bool = False
    answered: bool = False  # at least one answer since start

    @property
    def clusters(self) -> list[ConsumerInfo]:
        return [c for c in self.consumers if c.name.startswith(CLUSTER_PREFIX)]

    def cluster_names(self) -> list[str]:
        return [c.name[len(CLUSTER_PREFIX) :] for c in self.clusters]

    def online(self) -> list[str]:
        return [c.name[len(CLUSTER_PREFIX) :] for c in self.clusters if c.online]

    def last_seen(self) -> dict[str, str | None]:
        return {c.name[len(CLUSTER_PREFIX) :]: c.last_seen for c in self.clusters}

    def shape(self) -> tuple[frozenset[str], frozenset[str]]:
        """What a waiter cares about: which clusters there are and which are online."""
        return frozenset(self.cluster_names()), frozenset(self.online())


@dataclass(frozen=True, slots=True)
class GetDirectory(Request[Directory]):
    pass


@dataclass(frozen=True, slots=True)
class WatchDirectory(Request[asyncio.Future[None]]):
    """A future resolved when the clusters, or those online, change."""


@dataclass(frozen=True, slots=True)
class RemoveCluster(Request[bool]):
    """Forget cluster NAME's consumer at the bus (a decommissioned cluster: it no longer holds
    tombstones back, and `cluster.list` no longer shows it); False if the bus did not know it."""

    name: str


@dataclass(frozen=True, slots=True)
class _Answered:
    consumers: tuple[ConsumerInfo, ...]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: str = field(default="")


DirectoryMessage = GetDirectory | WatchDirectory | RemoveCluster | _Answered | _Failed


class ClusterDirectoryActor(Actor[DirectoryMessage]):
    def __init__(
        self,
        connector: BusConnector,
        metrics: ApiMetrics,
        *,
        interval: float = 2.0,
        first_wait: float = 1.0,
    ) -> None:
        self._connector = connector
        self._metrics = metrics
        self._interval = interval
        self._first_wait = first_wait
        self._asked_first = False
        self._state = Directory()
        self._watchers = Watchers()

    async def started(self) -> None:
        self._task = self.start_task(self._poll(), name="poll")

    async def stopped(self) -> None:
        self._watchers.notify_all()

    async def receive(self, message: DirectoryMessage) -> object:
        match message:
            case GetDirectory():
                if not self._state.answered and not self._asked_first:
                    self._asked_first = True
                    await self._ask_first()
                return self._state
            case WatchDirectory():
                return self._watchers.watch()
            case RemoveCluster(name):
                return await self._remove(name)
            case _Answered(consumers):
                self._answered(consumers)
                return None
            case _Failed(error):
                if self._state.reachable or not self._state.answered:
                    self.log.warning("broker_directory_failed", error=error)
                self._state = Directory(self._state.consumers, reachable=False,
                                        answered=self._state.answered)
                return None
            case _:
                assert_never(message)

    def _answered(self, consumers: tuple[ConsumerInfo, ...]) -> None:
        if not self._state.reachable:
            self.log.info("broker_directory_reached", consumers=len(consumers))
        before = self._state.shape()
        self._state = Directory(consumers, reachable=True, answered=True)
        if self._state.shape() != before:
            self._watchers.notify_all()
        self._metrics.consumers(consumers)
        for c in consumers:
            if c.name == CACHE_CONSUMER:
                self._metrics.cache_lag.set(c.lag)

    async def _remove(self, name: str) -> bool:
        async with self._connector.directory() as directory:
            removed = await directory.remove(f"{CLUSTER_PREFIX}{name}")
            consumers = tuple(await directory.consumers())
        self.log.info("cluster_removed", cluster=name, known=removed)
        self._answered(consumers)
        return removed

    async def _ask_first(self) -> None:
        try:
            async with asyncio.timeout(self._first_wait), self._connector.directory() as directory:
                infos = await directory.consumers()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.warning("broker_directory_failed", error=repr(exc))
            return
        self._answered(tuple(infos))

    async def _poll(self) -> None:
        while True:
            try:
                async with self._connector.directory() as directory:
                    while True:
                        infos = await asyncio.wait_for(directory.consumers(), self._interval * 2 + 1)
                        self.ref.tell(_Answered(tuple(infos)))
                        await asyncio.sleep(self._interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ref.tell(_Failed(repr(exc)))
                await asyncio.sleep(self._interval)
