"""The cache actor's memory of single-account reads, so a hot `account.get` skips the store.

An entry is what the store answered for one account: its record, its reports and
the known clusters, as one `CacheView`. It stays until a change to that account:
the cache actor forgets it when it applies a change to the account (and everything
when a change may have been missed), so a memo hit answers what a store read at that
moment would have. A cluster's report the store took is the one exception: the entry
takes it too (`core.cache.report_of`, the report every store keeps), since an
account's reports change once per cluster on its way to ready, and each change is
read again at once (a waiter's `account.wait`, the event driver's readiness timing).

Only a store this process alone writes is remembered: on a shared one
(`AccountCache.shared`, API replicas on one PostgreSQL cache) another replica's
commit would show only once its notification arrived, and a read through one replica
right after a change through another must see it.

Every entry was read with the same known clusters. A cluster new to the cache (an
applied report from it, or a read that shows it) empties the memo: every account
shows the new cluster from then on. That happens once per cluster.

An entry is never changed once made, so a reader may keep it and compare it by
identity (the API keeps each account's rendered JSON beside the entry it came from).

Bounded: past `capacity` accounts the oldest entries go first (accounts read once
and never again are the ones that age out), so memory follows the hot set, not the
number of accounts.
"""

from __future__ import annotations

from core.cache import CacheView, Change, report_of
from core.events import DomainEvent, OutcomeEvent

CAPACITY = 10_000


class ReadMemo:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._by_id: dict[str, CacheView] = {}
        self._ids_by_slug: dict[str, str] = {}
        self._clusters: tuple[str, ...] | None = None  # what every entry was read with

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, account_id: str | None, slug: str | None) -> CacheView | None:
        """The account as last read (do not change it), or None: read it from the store."""
        if account_id is None:
            account_id = self._ids_by_slug.get(slug or "")
            if account_id is None:
                return None
        return self._by_id.get(account_id)

    def remember(self, view: CacheView) -> None:
        """Keep what a store read answered (reads of one account are kept; pages are not)."""
        if len(view.records) != 1:
            return
        clusters = tuple(view.clusters)
        if clusters != self._clusters:
            self.clear()
            self._clusters = clusters
        record = view.records[0]
        self.forget(record.id)
        while len(self._by_id) >= self._capacity:
            self.forget(next(iter(self._by_id)))
        self._by_id[record.id] = view
        self._ids_by_slug[record.slug] = record.id

    def applied(self, change: Change, did: bool) -> None:
        """What the store answered for one change it applied: `did`, whether it changed."""
        if not did:
            return  # the store holds what it held: so does every entry
        event = change.event
        if isinstance(event, OutcomeEvent) and self._clusters is not None:
            entry = self._by_id.get(event.account_id)
            if entry is not None and event.cluster in self._clusters:
                new = report_of(event, change.occurred_at)
                kept = [r for r in entry.reports[event.account_id] if r.cluster != new.cluster]
                reports = sorted([*kept, new], key=lambda r: r.cluster)  # as the store reads them
                # A new view, never the old one changed: readers compare entries by identity.
                self._by_id[event.account_id] = CacheView(
                    entry.records, {event.account_id: reports}, entry.clusters
                )
                return
        self.changed(event)

    def changed(self, event: DomainEvent) -> None:
        """An applied change: forget the account, and whatever its slug named (a slug that
        passed to a new account); a report from a cluster new to us empties the memo."""
        self.forget(event.account_id)
        slug = getattr(event, "slug", None)
        if slug is not None and slug in self._ids_by_slug:
            self.forget(self._ids_by_slug[slug])
        cluster = getattr(event, "cluster", None)
        if cluster is not None and self._clusters is not None and cluster not in self._clusters:
            self.clear()

    def forget(self, account_id: str) -> None:
        view = self._by_id.pop(account_id, None)
        if view is not None and self._ids_by_slug.get(view.records[0].slug) == account_id:
            del self._ids_by_slug[view.records[0].slug]

    def clear(self) -> None:
        self._by_id.clear()
        self._ids_by_slug.clear()
        self._clusters = None
