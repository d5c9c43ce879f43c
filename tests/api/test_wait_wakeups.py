"""`account.wait` wakes for every change that makes it converge, whenever that change lands.

The real cache actor (SQLite on its worker thread) and cluster directory actor,
with outcomes landing at adversarial moments around each wait: before it
starts, between its registration and its read, while an apply is on the
worker thread, and through the "changed elsewhere" path another replica's
NOTIFY takes. After the last outcome is applied, nothing else happens: a
wait that does not answer then has missed its wake-up (its own timeout is
far beyond the deadline it is given here).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.api.cache import Applied, ApplyEvents, CacheActor, CacheMessage, _ChangedElsewhere
from actors.api.cache_store import SqliteCache
from actors.api.clusters import ClusterDirectoryActor, DirectoryMessage, RemoveCluster
from actors.api.cursors import CursorCodec
from actors.api.methods import Deps, build_table
from actors.api.metrics import ApiMetrics
from actors.runtime import ActorRef, ActorSystem
from core.cache import Change
from core.events import AccountCreated, NamespaceProvisioned
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

CLUSTERS = ("a", "b")
AT = "2024-01-01T00:00:00+00:00"


@dataclass
class Rig:
    cache: ActorRef[CacheMessage]
    directory: ActorRef[DirectoryMessage]
    bus: FakeBus
    table: dict[str, Any]

    async def apply(self, *events: Any) -> None:
        await self.cache.ask(ApplyEvents([Applied(Change(e, AT), str(uuid.uuid4())) for e in events]))

    async def wait(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.table["account.wait"].handler(
            {"id": account_id, "timeout": 60.0}
        )
        return result


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    bus = FakeBus()
    for name in CLUSTERS:
        bus.set_online(f"cluster:{name}", True)
    async with ActorSystem() as system:
        cache = system.spawn(
            lambda: CacheActor(lambda: SqliteCache.open(tmp_path / "cache.sqlite3")), name="cache"
        )
        directory = system.spawn(
            # Polls rarely: a wait must never depend on the next poll to see an outcome.
            lambda: ClusterDirectoryActor(bus.connector(), ApiMetrics(), interval=3600.0),
            name="directory",
        )
        deps = Deps(domains=(), cache=cache, directory=directory,
                    cursors=CursorCodec(b"k" * 32), timeout=10.0)
        yield Rig(cache, directory, bus, build_table(deps))


def created(account_id: str) -> AccountCreated:
    slug = f"s{account_id[:8]}"
    return AccountCreated(account_id, slug, slug, f"{slug}@example.com", f"ns-{slug}", AT, 1)


def provisioned(account_id: str, cluster: str) -> NamespaceProvisioned:
    return NamespaceProvisioned(account_id, cluster, f"ns-{account_id[:8]}", "uid", "1", 1)


async def _yield(times: int) -> None:
    # Lets the wait reach a chosen point of its registration/read sequence (not a timer).
    for _ in range(times):
        await asyncio.sleep(0)


async def test_every_wait_answers_ready_once_its_last_outcome_is_applied(rig: Rig) -> None:
    rng = random.Random(11)
    for _ in range(150):
        account_id = str(uuid.uuid4())
        await rig.apply(created(account_id))
        early = [c for c in CLUSTERS if rng.random() < 0.3]
        if early:
            await rig.apply(*(provisioned(account_id, c) for c in early))
        waiting = asyncio.create_task(rig.wait(account_id))
        late = [c for c in CLUSTERS if c not in early]
        rng.shuffle(late)
        for cluster in late:
            await _yield(rng.randrange(12))
            if rng.random() < 0.5:
                # One batch with another account's outcome: the apply spends longer on the thread.
                await rig.apply(provisioned(str(uuid.uuid4()), cluster), provisioned(account_id, cluster))
            else:
                await rig.apply(provisioned(account_id, cluster))
            if rng.random() < 0.2:
                rig.cache.tell(_ChangedElsewhere(None if rng.random() < 0.5 else (account_id,)))
        await wait_until(waiting.done, timeout=5.0, message=f"account.wait of {account_id} answered")
        assert waiting.result()["status"] == "ready"


async def test_a_wait_answers_when_a_cluster_it_waits_on_goes_offline(rig: Rig) -> None:
    account_id = str(uuid.uuid4())
    await rig.apply(created(account_id), provisioned(account_id, "a"))
    waiting = asyncio.create_task(rig.wait(account_id))
    await _yield(20)  # parked, most likely: the wait must answer either way
    assert not waiting.done()
    rig.bus.set_online("cluster:b", False)
    # Answers with a fresh directory read, as a poll does.
    await rig.directory.ask(RemoveCluster("nobody"))
    await wait_until(waiting.done, timeout=5.0, message="account.wait answered")
    assert waiting.result()["status"] == "ready"

