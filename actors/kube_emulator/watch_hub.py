"""The store's watch bookkeeping: event history, the resume floor, open watches (no I/O).

Owned by the store actor and used only from it. Events are recorded as they happen and
handed to open watches only by `publish`, which the store calls once the events' journal
records are fsynced (etcd never shows a watcher an uncommitted revision). A watch may resume
from any resourceVersion at or above `floor`; older ones get 410 Expired.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from dataclasses import dataclass

from actors.kube_emulator import errors
from actors.kube_emulator.messages import JSON, WatchEvent, WatchStart
from actors.kube_emulator.resources import ResourceType


def namespace_of(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


@dataclass(slots=True)
class _Watcher:
    rtype: ResourceType
    namespace: str | None
    queue: asyncio.Queue[WatchEvent]
    opened_at: int  # the store's version when it opened: later events only


class WatchHub:
    def __init__(self, history: int) -> None:
        self.size = history
        self.floor = 0
        self.history: collections.deque[WatchEvent] = collections.deque()
        self.watchers: dict[int, _Watcher] = {}
        self.ids = itertools.count(1)
        self.unpublished: list[WatchEvent] = []

    def reset(self, resource_version: int) -> None:
        """After (re)loading from disk: no history, resume only from now on."""
        self.floor = resource_version
        self.history.clear()
        self.unpublished = []

    def record(self, event: WatchEvent) -> None:
        self.unpublished.append(event)
        self.history.append(event)
        while len(self.history) > self.size:
            self.floor = self.history.popleft().rv

    def publish(self, through: int | None = None) -> None:
        """Hand open watches the events now durable: those up to version `through` (all)."""
        if through is None:
            events, self.unpublished = self.unpublished, []
        else:
            events = [e for e in self.unpublished if e.rv <= through]
            self.unpublished = [e for e in self.unpublished if e.rv > through]
        for event in events:
            namespace = namespace_of(event.object)
            for watcher in self.watchers.values():
                # A watch opened after the event got it in its initial events already.
                if (watcher.rtype is event.rtype and watcher.namespace in (None, namespace)
                        and event.rv > watcher.opened_at):
                    watcher.queue.put_nowait(event)

    def open(
        self, rtype: ResourceType, namespace: str | None, resource_version: str | None,
        current: list[JSON], now: int,
    ) -> WatchStart:
        """Start a watch; `current` is the kind's objects for a watch from the current state."""
        if resource_version in (None, "", "0"):
            initial = [WatchEvent("ADDED", int(o["metadata"]["resourceVersion"]), rtype, o, None)
                       for o in current if namespace is None or namespace_of(o) == namespace]
        else:
            try:
                since = int(resource_version or "")
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {resource_version!r}")
            if since < self.floor:
                raise errors.expired(since, self.floor + 1)
            initial = [e for e in self.history if e.rv > since and e.rtype is rtype
                       and (namespace is None or namespace_of(e.object) == namespace)]
        watch_id = next(self.ids)
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.watchers[watch_id] = _Watcher(rtype, namespace, queue, now)
        return WatchStart(watch_id, initial, queue, now)

    def close(self, watch_id: int) -> None:
        self.watchers.pop(watch_id, None)
