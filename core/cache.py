"""The query cache port: what the API reads accounts from and what the event driver writes.

SQLite implements it today (actors/api/cache_store.py); a shared PostgreSQL
cache could implement the same protocol so several API replicas share it.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.account import AccountRecord, ClusterReport, ReportState
from core.events import DomainEvent

REPORT_STATE_ORDER: dict[ReportState, int] = {"failed": 0, "created": 1, "deleted": 2}


@dataclass(frozen=True, slots=True)
class Change:
    """One event to apply, with the time it happened (a report's `updated_at`)."""

    event: DomainEvent
    occurred_at: str


def report_order(report: ClusterReport) -> tuple[int, int, int, str]:
    """The total order of a cluster's reports on one account: a newer one never loses."""
    return (
        report.observed_generation,
        REPORT_STATE_ORDER[report.state],
        report.attempts or 0,
        report.updated_at,
    )


class AccountCache(Protocol):
    def apply(self, changes: Sequence[Change]) -> list[bool]: ...

    def needs_replay(self) -> bool: ...

    def mark_replayed(self) -> None: ...

    def get_by_id(self, account_id: str) -> AccountRecord | None: ...

    def get_by_slug(self, slug: str) -> AccountRecord | None: ...

    def list_after(self, after: int | None, limit: int) -> list[AccountRecord]: ...

    def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]: ...

    def known_clusters(self) -> list[str]: ...
