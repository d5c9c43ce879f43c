"""Seeded random histories against the daemon actor: the cluster ends as the newest state says.

Each seed gives a few accounts a random life (create, updates, maybe a delete;
generations grow by one per event) interleaved across accounts, injects
temporary faults and lost responses, and publishes in batches while the daemon
runs, on a compacting bus or one that keeps every record. Afterwards: each
live account has exactly its namespace and policy objects at its newest
generation and its newest report says so; each deleted one has no namespace
and a `namespace.deleted` report at its tombstone's generation; the position
is at the head.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.desired import ANNOTATION_GENERATION
from core.envelope import Envelope
from core.events import NamespaceDeleted, NamespaceProvisioned
from core.tenancy import TemporaryKubeError
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import (
    POLICY,
    account,
    created,
    deleted,
    lag,
    namespace,
    reported,
    running,
    settings,
)
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

ACCOUNTS = 5


def history(rng: random.Random) -> tuple[list[Envelope], dict[int, tuple[bool, int]]]:
    """The interleaved events, and per account (live?, newest generation)."""
    lives: list[list[Envelope]] = []
    final: dict[int, tuple[bool, int]] = {}
    for n in range(ACCOUNTS):
        events = [created(n, 1)]
        generation = 1
        for _ in range(rng.randint(0, 3)):
            generation += 1
            events.append(created(n, generation, name=f"Name {generation}"))
        live = rng.random() < 0.5
        if not live:
            generation += 1
            events.append(deleted(n, generation))
        lives.append(events)
        final[n] = (live, generation)
    merged: list[Envelope] = []
    while any(lives):
        merged.append(rng.choice([life for life in lives if life]).pop(0))
    return merged, final


@pytest.mark.parametrize("seed", range(12))
async def test_random_histories_converge_to_the_newest_state_per_account(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    events, final = history(rng)
    bus = FakeBus(compacting=seed % 2 == 0, batch_size=rng.randint(1, 4))
    cluster = FakeCluster(finalize_after_reads=rng.randint(0, 3))
    for op in ("create", "read", "patch", "delete", "list"):
        cluster.fail(op, TemporaryKubeError(f"503 on {op}"), times=rng.randint(0, 3))
    cluster.lose_response("create", rng.randint(0, 2))
    cut1, cut2 = sorted(rng.sample(range(len(events) + 1), 2))
    async with running(bus, cluster, settings(tmp_path, resync=0.05, max_parallel=3)):
        for batch in (events[:cut1], events[cut1:cut2], events[cut2:]):
            if batch:
                await bus.publish(batch)

        def converged() -> bool:
            for n, (live, generation) in final.items():
                ns = cluster.namespace(namespace(n))
                if live != (ns is not None):
                    return False
                if ns is not None and (
                    len(cluster.children(namespace(n))) != 6
                    or ns["metadata"]["annotations"][ANNOTATION_GENERATION] != str(generation)
                ):
                    return False
                kind = NamespaceProvisioned if live else NamespaceDeleted
                if not reported(bus, n, kind, generation):
                    return False
            return lag(bus) == 0

        await wait_until(converged, message=f"seed {seed} converged")
    for n, (live, _) in final.items():
        ns = cluster.namespace(namespace(n))
        if live:
            assert ns is not None
            assert ns["metadata"]["labels"][POLICY.account_label] == account(n)
