"""Seeded random histories against the daemon actor: the cluster ends as the last event says.

Each seed interleaves creates and deletes of a few accounts (in any order, with
repeats), injects temporary faults and lost responses, and publishes in
batches while the daemon runs. Afterwards: every event is acked; each live
account has exactly its namespace and policy objects, each deleted one none;
every applied event has one outcome event, and one account's outcomes follow
its events' order.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.envelope import Envelope
from core.events import AccountCreated, AccountDeleted, to_envelope
from core.tenancy import TemporaryKubeError, outcome_event_id
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import POLICY, all_acked, running, settings
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

ACCOUNTS = 4


def history(rng: random.Random) -> list[Envelope]:
    events: list[Envelope] = []
    for _ in range(rng.randint(6, 16)):
        n = rng.randrange(ACCOUNTS)
        acc = f"00000000-0000-4000-8000-{n:012d}"
        if rng.random() < 0.6:
            ev: AccountCreated | AccountDeleted = AccountCreated(
                acc, f"m{n}", f"M {n}", "m@example.com", f"acc-m{n}", "t"
            )
        else:
            ev = AccountDeleted(acc, f"m{n}", f"acc-m{n}", "t")
        events.append(to_envelope(ev, correlation_id=f"h-{len(events)}"))
    return events


@pytest.mark.parametrize("seed", range(12))
async def test_random_histories_converge_to_the_last_event_per_account(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    events = history(rng)
    bus, cluster = FakeBus(), FakeCluster(finalize_after_reads=rng.randint(0, 3))
    for op in ("create", "read", "patch", "delete", "list"):
        cluster.fail(op, TemporaryKubeError(f"503 on {op}"), times=rng.randint(0, 3))
    cluster.lose_response("create", rng.randint(0, 2))
    cut1, cut2 = sorted(rng.sample(range(len(events) + 1), 2))
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        for batch in (events[:cut1], events[cut1:cut2], events[cut2:]):
            if batch:
                await bus.publish(batch)
            await wait_until(lambda: not bus.log or all_acked(bus), message="batch acked")
        last: dict[str, str] = {e.aggregate_id: e.type for e in events}

        def converged() -> bool:
            for acc, kind in last.items():
                n = int(acc[-12:])
                ns = cluster.namespace(f"acc-m{n}")
                if (kind == "account.created") != (ns is not None):
                    return False
                if ns is not None and len(cluster.children(f"acc-m{n}")) != 6:
                    return False
            return all_acked(bus)

        await wait_until(converged, message=f"seed {seed} converged")
    for acc, kind in last.items():
        ns = cluster.namespace(f"acc-m{int(acc[-12:])}")
        if kind == "account.created":
            assert ns is not None
            assert ns["metadata"]["labels"][POLICY.account_label] == acc
    position = {env.event_id: i for i, env in enumerate(bus.log)}
    assert not [e for e in bus.log if e.type == "namespace.provision_failed"]
    for acc in last:
        mine = [e for e in events if e.aggregate_id == acc]
        reported = []
        for source in mine:
            kind = "provisioned" if source.type == "account.created" else "deleted"
            oid = outcome_event_id(source.event_id, "east", kind)
            if oid in position:
                reported.append(position[oid])
        assert reported == sorted(reported), f"account {acc} outcomes out of order"
        final = mine[-1]
        kind = "provisioned" if final.type == "account.created" else "deleted"
        assert outcome_event_id(final.event_id, "east", kind) in position, "last event reported"
