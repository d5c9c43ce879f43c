"""The cache actor's memory of account reads (actors/api/cache_memo.py): an answer is kept
until a change to its account, and never outlives what it was read with."""

from __future__ import annotations

from typing import cast

import pytest

from actors.api.cache import CacheActor, FindAccount
from actors.api.cache_memo import ReadMemo
from actors.runtime import ActorSystem
from core.account import AccountRecord, ClusterReport
from core.cache import AccountCache, CacheView, ChangeListener
from core.events import AccountCreated, AccountDeleted, NamespaceProvisioned

AT = "2026-01-01T00:00:00Z"


def view(account_id: str, slug: str, clusters: tuple[str, ...] = ("a",), generation: int = 1) -> CacheView:
    record = AccountRecord(account_id, slug, slug, f"{slug}@example.com", f"acc-{slug}", AT, None,
                           generation, AT)
    reports = [ClusterReport(c, "created", generation, AT) for c in clusters]
    return CacheView([record], {account_id: reports}, list(clusters))


def created(account_id: str, slug: str, generation: int = 1) -> AccountCreated:
    return AccountCreated(account_id, slug, slug, f"{slug}@example.com", f"acc-{slug}", AT, generation)


def provisioned(account_id: str, cluster: str) -> NamespaceProvisioned:
    return NamespaceProvisioned(account_id, cluster, "acc-x", "uid", "1", 1)


def test_a_read_is_answered_by_id_and_slug_until_a_change_to_its_account() -> None:
    memo = ReadMemo()
    one, two = view("id-1", "one"), view("id-2", "two")
    memo.remember(one)
    memo.remember(two)
    assert memo.find("id-1", None) is one
    assert memo.find(None, "two") is two
    memo.changed(created("id-1", "one", generation=2))
    assert memo.find("id-1", None) is None
    assert memo.find(None, "one") is None
    assert memo.find("id-2", None) is two  # other accounts keep theirs


def test_a_slug_that_passes_to_a_new_account_no_longer_answers_with_the_old_one() -> None:
    memo = ReadMemo()
    memo.remember(view("old", "acme"))
    memo.changed(AccountDeleted("new", "acme", "acc-acme", AT, 1, "acme", "a@example.com", AT))
    assert memo.find(None, "acme") is None
    assert memo.find("old", None) is None


def test_a_cluster_new_to_the_cache_empties_the_memo_and_a_read_with_more_clusters_replaces_it() -> None:
    memo = ReadMemo()
    memo.remember(view("id-1", "one"))
    memo.remember(view("id-2", "two"))
    memo.changed(provisioned("id-1", "a"))  # a known cluster: only its account goes
    assert memo.find("id-2", None) is not None
    memo.changed(provisioned("id-1", "b"))  # a new one: every answer lacks it
    assert len(memo) == 0
    memo.remember(view("id-1", "one"))
    wider = view("id-2", "two", clusters=("a", "b"))
    memo.remember(wider)  # read after another writer added b: the narrower answer goes
    assert memo.find("id-1", None) is None
    assert memo.find("id-2", None) is wider


def test_pages_are_not_kept_and_the_oldest_answers_go_first_past_the_capacity() -> None:
    memo = ReadMemo(capacity=3)
    memo.remember(CacheView([view("p1", "p1").records[0], view("p2", "p2").records[0]], {}, ["a"]))
    assert len(memo) == 0
    for n in range(5):
        memo.remember(view(f"id-{n}", f"s{n}"))
    assert len(memo) == 3
    assert [memo.find(f"id-{n}", None) is not None for n in range(5)] == [False, False, True, True, True]
    assert memo.find(None, "s0") is None


class CountingStore:
    """A store that counts its reads; `shared` as the test says."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.reads = 0

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        self.reads += 1
        return view(account_id or "id-1", slug or "one")

    async def listen(self, changed: ChangeListener) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("shared", "reads"), [(False, 1), (True, 3)])
async def test_only_a_store_no_other_process_writes_is_answered_from_memory(
    shared: bool, reads: int
) -> None:
    # On a shared store (API replicas on one PostgreSQL cache) a read right after another
    # replica's change must see it, with no notification to wait for: every read goes to it.
    store = CountingStore(shared)

    async def opened() -> AccountCache:
        return cast(AccountCache, store)

    async with ActorSystem(stop_timeout=5.0) as system:
        cache = system.spawn(lambda: CacheActor(opened), name="cache")
        for _ in range(3):
            found = await cache.ask(FindAccount(account_id="id-1"))
            assert found.records[0].id == "id-1"
    assert store.reads == reads
