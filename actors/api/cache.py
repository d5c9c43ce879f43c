"""The cache actor: the only owner of the SQLite query cache.

Writes come from the event driver (broker deliveries, with their seq) and
from the domain actor (the event it just committed, without a seq, so a
create's reply never races its cache row). Reads return plain records; the
HTTP side combines them with the cluster directory into Account views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from actors.api.cache_store import SqliteCache, StoreError
from actors.runtime import Actor, Request
from core.account import AccountRecord, ClusterReport
from core.errors import DependencyUnavailable
from core.events import DomainEvent


@dataclass(frozen=True, slots=True)
class ApplyEvent(Request[bool]):
    event_id: str
    seq: int | None
    event: DomainEvent
    occurred_at: str


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
class GetCursor(Request[int]):
    pass


@dataclass(frozen=True, slots=True)
class SetCursor(Request[None]):
    seq: int


@dataclass(frozen=True, slots=True)
class PingCache(Request[None]):
    pass


CacheMessage = ApplyEvent | FindAccount | ListAccountsPage | GetCursor | SetCursor | PingCache


class CacheActor(Actor[CacheMessage]):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: SqliteCache | None = None

    async def started(self) -> None:
        self._store = SqliteCache(self._path)

    async def stopped(self) -> None:
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
            case ApplyEvent(event_id, seq, event, occurred_at):
                applied = store.apply(event_id, seq, event, occurred_at)
                if applied:
                    self.log.debug(
                        "cache_event_applied", event_id=event_id, seq=seq,
                        account_id=event.account_id,
                    )
                return applied
            case FindAccount(account_id, slug):
                record = (
                    store.get_by_id(account_id) if account_id is not None
                    else store.get_by_slug(slug or "")
                )
                records = [record] if record is not None else []
                return self._snapshot(store, records)
            case ListAccountsPage(after, limit):
                return self._snapshot(store, store.list_after(after, limit))
            case GetCursor():
                return store.cursor()
            case SetCursor(seq):
                store.set_cursor(seq)
                return None
            case PingCache():
                store.ping()
                return None
            case _:
                assert_never(message)

    def _snapshot(self, store: SqliteCache, records: list[AccountRecord]) -> Snapshot:
        return Snapshot(records, store.reports([r.id for r in records]), store.known_clusters())
