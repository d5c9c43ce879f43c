"""The cache actor: the only owner of the SQLite query cache.

Writes come from the event driver (a batch of bus deliveries, applied in one
transaction before the driver acks them) and from the domain actor (the
event it just committed, so a create's reply never races its cache row; the
driver's later apply of the same event is a no-op by generation). Reads
return plain records; the HTTP side combines them with the cluster directory
into Account views.

`WatchAccount` answers a future resolved the next time an apply changes that
account or a cluster's report on it (actors/api/watchers.py): `account.wait`
parks on it rather than polling. Waiters are woken after the transaction
commits, and all of them when the actor stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from actors.api.cache_store import SqliteCache, StoreError
from actors.api.watchers import Watchers
from actors.runtime import Actor, Request
from core.account import AccountRecord, ClusterReport
from core.cache import Change
from core.errors import DependencyUnavailable


@dataclass(frozen=True, slots=True)
class Applied:
    """One change to apply; `event_id` and `seq` only travel to the log lines."""

    change: Change
    event_id: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ApplyEvents(Request[list[bool]]):
    """Apply all of them in one transaction; per item, whether the cache changed."""

    items: Sequence[Applied]


@dataclass(frozen=True, slots=True)
class Snapshot:
    records: list[AccountRecord]
    reports: dict[str, list[ClusterReport]]
    clusters: list[str]


@dataclass(frozen=True, slots=True)
class FindAccount(Request[Snapshot]):
    account_id: str | None = None
    slug: str | None = None


@dataclass(frozen=True, slots=True)
class ListAccountsPage(Request[Snapshot]):
    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class WatchAccount(Request[asyncio.Future[None]]):
    """A future resolved at the next change of this account (or of a report on it)."""

    account_id: str


@dataclass(frozen=True, slots=True)
class NeedsReplay(Request[bool]):
    pass


@dataclass(frozen=True, slots=True)
class MarkReplayed(Request[None]):
    pass


@dataclass(frozen=True, slots=True)
class PingCache(Request[None]):
    pass


CacheMessage = (
    ApplyEvents | FindAccount | ListAccountsPage | WatchAccount | NeedsReplay
    | MarkReplayed | PingCache
)


class CacheActor(Actor[CacheMessage]):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: SqliteCache | None = None
        self._watchers = Watchers()

    async def started(self) -> None:
        self._store = SqliteCache(self._path)
        if self._store.recreated:
            self.log.warning("cache_recreated", path=str(self._path), reason="old schema")

    async def stopped(self) -> None:
        self._watchers.notify_all()
        if self._store is not None:
            self._store.close()

    async def receive(self, message: CacheMessage) -> object:
        try:
            return self._handle(message)
        except StoreError as exc:
            # The asker learns the cache is unavailable; nothing was applied (one transaction).
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    def _handle(self, message: CacheMessage) -> object:
        store = self._store
        assert store is not None
        match message:
            case ApplyEvents(items):
                changed = store.apply([item.change for item in items])
                for item, did in zip(items, changed, strict=True):
                    if did:
                        self.log.debug(
                            "cache_event_applied", event_id=item.event_id, seq=item.seq,
                            account_id=item.change.event.account_id,
                        )
                        self._watchers.notify(item.change.event.account_id)
                return changed
            case FindAccount(account_id, slug):
                record = (
                    store.get_by_id(account_id) if account_id is not None
                    else store.get_by_slug(slug or "")
                )
                records = [record] if record is not None else []
                return self._snapshot(store, records)
            case ListAccountsPage(after, limit):
                return self._snapshot(store, store.list_after(after, limit))
            case WatchAccount(account_id):
                return self._watchers.watch(account_id)
            case NeedsReplay():
                return store.needs_replay()
            case MarkReplayed():
                store.mark_replayed()
                return None
            case PingCache():
                store.ping()
                return None
            case _:
                assert_never(message)

    def _snapshot(self, store: SqliteCache, records: list[AccountRecord]) -> Snapshot:
        return Snapshot(records, store.reports([r.id for r in records]), store.known_clusters())
