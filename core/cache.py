"""The query cache port: what the API reads accounts from and what the event driver writes.

Two implementations: SQLite, one file per API process (the default,
actors/api/cache_store.py), and PostgreSQL, one database several API replicas
share (actors/api/cache_pg.py). Every method is a coroutine: a store's I/O
(an fsync, a round trip) never runs on the event loop.

State, not history. The cache holds the newest state it knows per key (an
account, one cluster's report on an account); it keeps no event ids, no log
position and no history, so the order in which events arrive, repeats, and
several writers feeding it the same stream never change what it ends with:

- An account event changes the account only if its `generation` is newer
  than the cached one. A deleted account stays, marked deleted at the
  tombstone's generation, so an older `account.created` arriving later
  cannot revive it (it only fills in the descriptive fields the tombstone
  does not carry, when the cache has never seen them).
- An outcome event changes a cluster's report only if its
  `report_order` is not older than the cached report's: observed generation
  first, then the state order failed < created < deleted, then attempts,
  then the time it happened. So a `namespace.provisioned` for generation 1
  never overwrites a `namespace.deleted` for generation 2.
- `apply` takes a batch and is one transaction: all of it or none of it. It
  returns, per change, whether the cache changed.
- `needs_replay` is true from the moment a cache is created empty until
  `mark_replayed`: the consumer feeding it must read the log from its start
  first (its position on the bus may be ahead of an empty cache).
- `known_clusters` (every cluster that ever reported) is read on every
  account read, so it costs O(1): implementations keep it in memory and
  notice when another process sharing the store added one. `find` and
  `page` are the reads the API makes: accounts with their reports and the
  known clusters, in one trip to the store. A list by status hands `page` a
  `StatusHint`, so the store skips, in its own query, the accounts that
  cannot have that status: a list of the few accounts still provisioning
  does not derive the status of every ready one.
- Several processes may write one store. `listen(changed)` runs until
  cancelled and calls `changed(account_ids)` for changes other writers
  committed (it may also report our own), or `changed(None)` when it cannot
  tell which (it reconnected and may have missed some): that is how a waiter
  on one replica wakes when another applied the event. A store no one else
  writes may return at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, assert_never

from core.account import AccountRecord, ClusterReport, ReportState, StatusHint
from core.events import (
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    OutcomeEvent,
)

REPORT_STATE_ORDER: dict[ReportState, int] = {"failed": 0, "created": 1, "deleted": 2}


@dataclass(frozen=True, slots=True)
class Change:
    """One event to apply, with the time it happened (a report's `updated_at`)."""

    event: DomainEvent
    occurred_at: str


def report_of(event: OutcomeEvent, occurred_at: str) -> ClusterReport:
    """The report an outcome says, as every store keeps it and every read returns it."""
    match event:
        case NamespaceProvisioned():
            return ClusterReport(event.cluster, "created", event.observed_generation, occurred_at)
        case NamespaceProvisionFailed():
            return ClusterReport(
                event.cluster, "failed", event.observed_generation, occurred_at, event.reason,
                event.attempts,
            )
        case NamespaceDeleted():
            return ClusterReport(event.cluster, "deleted", event.observed_generation, occurred_at)
        case _:
            assert_never(event)


def report_order(report: ClusterReport) -> tuple[int, int, int, str]:
    """The total order of a cluster's reports on one account: a newer one never loses."""
    return (
        report.observed_generation,
        REPORT_STATE_ORDER[report.state],
        report.attempts or 0,
        report.updated_at,
    )


@dataclass(frozen=True, slots=True)
class CacheView:
    """Accounts with the reports on them and every known cluster, as one read saw them."""

    records: list[AccountRecord]
    reports: dict[str, list[ClusterReport]]
    clusters: list[str]


ChangeListener = Callable[[Sequence[str] | None], None]
"""Told the ids of accounts changed by any writer; None: anything may have changed."""


class AccountCache(Protocol):
    # True when other processes write the store too (API replicas on one PostgreSQL
    # cache): a read must go to the store to see their commits at once, so it is never
    # answered from memory. False: this process is its only writer.
    shared: bool

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply a batch in one transaction, visible to reads once this returns; per change,
        whether the cache changed. It may not be durable yet: see `sync`."""
        ...

    async def sync(self) -> None:
        """Make every batch applied so far durable (a no-op where commits already are). The
        bus is acked only after it, so a reader may see a batch before the disk has it:
        were it lost, the bus delivers it again."""
        ...

    async def claim_feed(self) -> bool:
        """Whether this process's event driver may feed the store from the bus now: always
        for a private store. A shared store has one feeder at a time (a lease held while its
        holder lives): the drivers of several replicas on one durable consumer would compete
        for its deliveries, and on JetStream each would take the others' for lost ones.
        Asked before subscribing and before each batch, so a lost lease stops the feed."""
        ...

    async def needs_replay(self) -> bool: ...

    async def mark_replayed(self) -> None: ...

    async def get_by_id(self, account_id: str) -> AccountRecord | None: ...

    async def get_by_slug(self, slug: str) -> AccountRecord | None: ...

    async def list_after(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> list[AccountRecord]: ...

    async def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]: ...

    async def known_clusters(self) -> list[str]: ...

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        """The account with this id (else this slug), if the cache shows it."""
        ...

    async def page(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> CacheView:
        """Up to `limit` accounts past position `after`, in position order; with a `hint`,
        only those it keeps (the caller still derives their status)."""
        ...

    async def ping(self) -> None: ...

    async def listen(self, changed: ChangeListener) -> None: ...

    async def close(self) -> None: ...
