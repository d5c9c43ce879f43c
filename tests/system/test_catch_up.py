"""Clusters that were away: a daemon stopped for a while misses events and catches up when it
comes back; a cluster added on a later `fabric up` receives every live account and no deleted one.

Flow (one state dir, three runs of `fabric up`):
1. clusters a,b: two accounts become ready in both.
2. clusters a only: b's daemon is away; create two accounts, delete one of the first ones;
   then `fabric up` is SIGKILLed (its children are orphaned).
3. clusters a,b,c: the new `up` clears the orphans first; b catches up on what it missed
   (one namespace created, one removed),
   the new cluster c gets exactly the live accounts.
"""

from __future__ import annotations

import pytest

from tests.system.harness import (
    FabricUp,
    call_ok,
    create_account,
    eventually,
    gone,
    list_accounts,
    namespaces,
)

pytestmark = pytest.mark.processes


async def converged(
    up: FabricUp, clusters: list[str], live: set[str], deleted: set[str], *, away: bool = False
) -> bool:
    """Live accounts ready everywhere, deleted ones gone; with a cluster away a deleted
    account may stay `deleting` (its namespace there is not removed yet)."""
    accounts = {a["slug"]: a for a in await list_accounts(up)}
    for slug in live:
        account = accounts[slug]
        assert account["status"] == "ready", account
        for cluster in clusters:
            assert account["clusters"][cluster]["state"] == "created", (cluster, account)
    for slug in deleted:
        final = {"deleting", "deleted"} if away else {"deleted"}
        assert accounts.get(slug, {"status": "deleted"})["status"] in final, accounts.get(slug)
    for cluster in clusters:
        names = await namespaces(up, cluster)
        assert names == sorted(f"acc-{s}" for s in live), (cluster, names)
    return True


@pytest.mark.timeout(240)
async def test_away_daemon_catches_up_and_a_new_cluster_gets_only_live_accounts(
    up: FabricUp,
) -> None:
    up.start(["a", "b"])
    await up.wait_ready()
    first = [await create_account(up, slug) for slug in ("keep-1", "drop-1")]
    await eventually(
        lambda: converged(up, ["a", "b"], {"keep-1", "drop-1"}, set()),
        timeout=30,
        message="first accounts in a and b",
    )
    assert up.stop() == 0

    up.start(["a"])
    await up.wait_ready()
    await create_account(up, "keep-2")
    await create_account(up, "keep-3")
    await call_ok(up, "account.delete", {"id": first[1]["id"]})
    live = {"keep-1", "keep-2", "keep-3"}
    await eventually(
        lambda: converged(up, ["a"], live, {"drop-1"}, away=True), timeout=30, message="a alone converged"
    )

    async def b_offline() -> bool:
        clusters = {c["name"]: c for c in await call_ok(up, "cluster.list", {})}
        assert clusters["b"]["status"] == "offline", clusters
        return True

    await eventually(b_offline, timeout=15, message="b offline while away")
    # This run ends without warning: its children outlive it until the next `up` clears them.
    orphans = up.kill_up()
    assert orphans

    up.start(["a", "b", "c"])
    await up.wait_ready()
    assert all(gone(pid) for pid in orphans.values()), orphans
    await eventually(
        lambda: converged(up, ["a", "b", "c"], live, {"drop-1"}),
        timeout=40,
        message="b caught up and c received every live account",
    )

    async def all_online() -> bool:
        # The api refreshes its view of the broker's consumers every few moments; a daemon
        # restarted by this run may still show its previous run's last_seen until then.
        clusters = {c["name"]: c for c in await call_ok(up, "cluster.list", {})}
        assert {clusters[n]["status"] for n in ("a", "b", "c")} == {"online"}, clusters
        return True

    await eventually(all_online, timeout=15, message="a, b and c online")
    assert up.stop() == 0
    # Stopped in reverse start order: daemons, api, kube emulators, the bus, postgres.
    stopped = [e["child"] for e in up.log_events(3) if e.get("event") == "child_stopped"]
    assert stopped == [
        "daemon-c",
        "daemon-b",
        "daemon-a",
        "api",
        "kube-c",
        "kube-b",
        "kube-a",
        up.bus_child,
        "postgres",
    ], stopped
    assert not (up.state_dir / "ready").exists()
    assert not list((up.state_dir / "run").glob("*.pid"))
