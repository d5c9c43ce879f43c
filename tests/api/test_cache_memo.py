"""The cache actor's memory of account reads (actors/api/cache_memo.py): an answer is kept
until a change to its account, and never outlives what it was read with."""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import pytest

from actors.api.cache import Applied, ApplyEvents, CacheActor, FindAccount
from actors.api.cache_memo import ReadMemo
from actors.api.cache_store import SqliteCache
from actors.runtime import ActorSystem
from core.account import AccountRecord, ClusterReport
from core.cache import AccountCache, CacheView, Change, ChangeListener
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)

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


def test_a_report_the_store_took_is_taken_into_the_answer_and_one_it_refused_changes_nothing() -> None:
    memo = ReadMemo()
    one = view("id-1", "one", clusters=("a", "b"))
    memo.remember(one)
    memo.applied(Change(provisioned("id-1", "b"), "2026-01-02T00:00:00Z"), did=False)
    assert memo.find("id-1", None) is one
    failed = NamespaceProvisionFailed("id-1", "a", "acc-one", "quota", 2, 3)
    memo.applied(Change(failed, "2026-01-03T00:00:00Z"), did=True)
    taken = memo.find(None, "one")
    assert taken is not None
    assert taken is not one
    assert taken.records == one.records
    assert taken.clusters == one.clusters
    assert taken.reports == {"id-1": [
        ClusterReport("a", "failed", 2, "2026-01-03T00:00:00Z", "quota", 3),
        ClusterReport("b", "created", 1, AT),
    ]}
    assert one.reports["id-1"][0].state == "created"  # the old entry is left as it was
    memo.applied(Change(created("id-1", "one", generation=2), AT), did=True)
    assert memo.find("id-1", None) is None  # the account itself changed: read it again


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


CLUSTERS = ("a", "b", "c")  # c is rare: its first report empties the memo


def random_change(rng: random.Random, ids: list[str], step: int) -> Change:
    """Mostly newer than what came before (so the cache changes), sometimes older or tied."""
    account_id = rng.choice(ids)
    slug, namespace = f"s-{account_id}", f"acc-{account_id}"
    generation = max(1, step // 20 + rng.randint(-1, 1))
    cluster = rng.choice(CLUSTERS) if rng.random() < 0.05 else rng.choice(CLUSTERS[:2])
    at = f"2026-01-01T00:{max(0, step - rng.randint(0, 3)):04d}Z"
    event: DomainEvent
    match rng.randrange(8):
        case 0:
            event = AccountUpdated(account_id, slug, slug, f"{slug}@example.com", namespace, AT,
                                   generation, suspended=rng.random() < 0.5)
        case 1:
            event = AccountDeleted(account_id, slug, namespace, at, generation, slug,
                                   f"{slug}@example.com", AT)
        case 2:
            event = NamespaceProvisionFailed(account_id, cluster, namespace, "refused", generation,
                                             rng.randint(1, 4))
        case 3:
            event = NamespaceDeleted(account_id, cluster, namespace, generation)
        case _:
            event = NamespaceProvisioned(account_id, cluster, namespace, "uid", "1", generation)
    return Change(event, at)


class ReadCounter:
    """The store the actor reads, counting its single-account reads."""

    def __init__(self, store: SqliteCache) -> None:
        self.store = store
        self.finds = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        self.finds += 1
        return await self.store.find(account_id, slug)


@pytest.mark.parametrize("seed", range(4))
async def test_every_answer_from_memory_is_what_the_store_reads_after_any_changes(
    tmp_path: Path, seed: int
) -> None:
    # Random batches of account events and reports (newer, older, tied, from a new
    # cluster); after each, every account asked through the actor, answered from memory
    # where it can, must equal a read of the store itself.
    rng = random.Random(seed)
    store = await SqliteCache.open(tmp_path / "cache.sqlite3")
    counter = ReadCounter(store)
    ids = ["id-0", "id-1", "id-2"]

    async def opened() -> AccountCache:
        return cast(AccountCache, counter)

    asks = taken = 0
    async with ActorSystem(stop_timeout=5.0) as system:  # the actor closes the store
        cache = system.spawn(lambda: CacheActor(opened), name="cache")
        first = [Change(AccountCreated(i, f"s-{i}", f"s-{i}", f"s-{i}@example.com", f"acc-{i}", AT, 1),
                        AT) for i in ids]
        _ = await cache.ask(ApplyEvents([Applied(c, f"e-{c.event.account_id}") for c in first]))
        for step in range(100):
            batch = [random_change(rng, ids, step) for _ in range(rng.randint(1, 3))]
            items = [Applied(c, f"e-{step}-{n}") for n, c in enumerate(batch)]
            changed = await cache.ask(ApplyEvents(items))
            reported = {c.event.account_id for c, did in zip(batch, changed, strict=True)
                        if did and hasattr(c.event, "cluster")}
            for account_id in ids:
                finds = counter.finds
                answered = await cache.ask(FindAccount(account_id=account_id))
                asks += 1
                taken += account_id in reported and counter.finds == finds
                assert answered == await store.find(account_id, None), (step, account_id)
    # Reports taken into answers in memory were compared, or the test proved nothing.
    assert taken >= 20
    assert counter.finds < asks / 2
