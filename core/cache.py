"""The query cache port: what the API reads accounts from and what the event driver writes.

SQLite implements it today (actors/api/cache_store.py); a shared PostgreSQL
cache could implement the same protocol so several API replicas share it.

Contract:
- `apply(event_id, seq, event)` applies a domain event's effect once: an
  `event_id` seen before changes nothing and returns False. When `seq` is
  given (a broker delivery) the consumer cursor moves to it in the same
  transaction, and a `seq` at or below the cursor changes nothing either.
- Reads never block on writers for long and return plain records.
"""

from __future__ import annotations

from typing import Protocol

from core.account import AccountRecord, ClusterReport
from core.events import DomainEvent


class AccountCache(Protocol):
    def apply(self, event_id: str, seq: int | None, event: DomainEvent, occurred_at: str) -> bool: ...

    def cursor(self) -> int: ...

    def get_by_id(self, account_id: str) -> AccountRecord | None: ...

    def get_by_slug(self, slug: str) -> AccountRecord | None: ...

    def list_after(self, after: int | None, limit: int) -> list[AccountRecord]: ...

    def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]: ...

    def known_clusters(self) -> list[str]: ...
