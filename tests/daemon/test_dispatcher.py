"""The daemon actor end to end in one process: in-memory bus, in-memory cluster, real actor system."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from actors.daemon.state import DesiredStore
from core.desired import ANNOTATION_GENERATION, ANNOTATION_NAME
from core.envelope import Envelope
from core.events import (
    AccountCreated,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    to_envelope,
)
from core.tenancy import (
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
)
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import (
    CONSUMER,
    POLICY,
    ExplodingPublisher,
    account,
    created,
    deleted,
    lag,
    latest,
    namespace,
    outcomes,
    reported,
    running,
    settings,
)
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until


def ours(n: int) -> dict[str, str]:
    return {POLICY.managed_by_label: POLICY.managed_by_value, POLICY.account_label: account(n)}


async def test_an_account_is_provisioned_and_reported_at_its_generation(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
        # The ack follows the store, not the report: it may land just after the report.
        await wait_until(lambda: lag(bus) == 0, message="lag 0")
    ns = cluster.namespace(namespace(1))
    assert ns is not None
    report = latest(bus, 1)
    assert isinstance(report, NamespaceProvisioned)
    assert (report.cluster, report.namespace, report.uid) == ("east", "acc-team1", ns["metadata"]["uid"])
    assert bus.newest(f"outcome:east:{account(1)}").correlation_id == "req-1"  # type: ignore[union-attr]
    assert ns["metadata"]["annotations"][ANNOTATION_GENERATION] == "1"
    assert len(cluster.children(namespace(1))) == 6


async def test_a_new_generation_is_applied_and_reported_with_the_same_namespace(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="generation 1")
        uid = cluster.namespace(namespace(1))["metadata"]["uid"]  # type: ignore[index]
        await bus.publish([created(1, 2, name="Renamed")])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 2), message="generation 2")
    ns = cluster.namespace(namespace(1))
    assert ns is not None
    assert ns["metadata"]["uid"] == uid
    assert ns["metadata"]["annotations"][ANNOTATION_NAME] == "Renamed"
    assert ns["metadata"]["annotations"][ANNOTATION_GENERATION] == "2"


@pytest.mark.parametrize("compacting", [True, False])
async def test_a_late_daemon_makes_no_create_call_for_accounts_deleted_in_the_log(
    tmp_path: Path, compacting: bool
) -> None:
    bus, cluster = FakeBus(compacting=compacting, batch_size=1), FakeCluster()
    await bus.publish([created(1), created(2), created(3), created(2, 2), deleted(3)])
    await bus.publish([created(4), deleted(2, 3), created(5), deleted(5)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(
            lambda: all(reported(bus, n, NamespaceProvisioned) for n in (1, 4))
            and reported(bus, 2, NamespaceDeleted, 3)
            and all(reported(bus, n, NamespaceDeleted, 2) for n in (3, 5)),
            message="every account reported",
        )
        # The position passes the daemon's own last reports (not `account:` keys) with the
        # bus's next pass over them, not with the reports: waited for, not assumed.
        await wait_until(lambda: lag(bus) == 0, message="the lag back to 0")
    assert {n: cluster.namespace_creates[namespace(n)] for n in (2, 3, 5)} == {2: 0, 3: 0, 5: 0}
    assert cluster.namespace(namespace(1)) is not None
    assert cluster.namespace(namespace(4)) is not None


async def test_a_stuck_account_delays_no_other_is_reported_failed_and_heals(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.break_namespace(namespace(1), TemporaryKubeError("500 InternalError: etcd is sad"))
    await bus.publish([created(n) for n in range(1, 5)])
    async with running(bus, cluster, settings(tmp_path, failed_after=3)):
        await wait_until(
            lambda: all(reported(bus, n, NamespaceProvisioned) for n in (2, 3, 4)),
            message="the other accounts provisioned",
        )
        await wait_until(lambda: lag(bus) == 0, message="position at the head")
        await wait_until(
            lambda: reported(bus, 1, NamespaceProvisionFailed), message="stuck account reported"
        )
        [failed] = outcomes(bus, NamespaceProvisionFailed, 1)
        assert isinstance(failed, NamespaceProvisionFailed)
        assert failed.attempts == 3
        assert failed.reason == "500 InternalError: etcd is sad"
        assert failed.observed_generation == 1
        await bus.publish([created(5)])
        await wait_until(lambda: reported(bus, 5, NamespaceProvisioned), message="a later one")
        cluster.heal_namespace(namespace(1))
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="healed")
        await wait_until(lambda: lag(bus) == 0, message="position at the head again")
    assert len(outcomes(bus, NamespaceProvisionFailed, 1)) == 1  # reported once, not per retry


async def test_a_permanent_error_is_reported_at_once_and_retried_at_resync(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.fail("create", PermanentKubeError("403 Forbidden: namespaces is forbidden"))
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: outcomes(bus, NamespaceProvisionFailed), message="failed")
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="resync retried")
    [failed] = outcomes(bus, NamespaceProvisionFailed, 1)
    assert isinstance(failed, NamespaceProvisionFailed)
    assert failed.reason == "403 Forbidden: namespaces is forbidden"
    assert failed.attempts == 1


async def test_deletion_removes_the_namespace_reports_the_tombstone_and_keeps_no_record(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster(finalize_after_reads=3)
    await bus.publish([created(1), created(2)])
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path)):
            await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
            await bus.publish([deleted(1, 4)])
            await wait_until(lambda: reported(bus, 1, NamespaceDeleted, 4), message="deleted")
            assert cluster.namespace(namespace(1)) is None
            await wait_until(lambda: reported(bus, 2, NamespaceProvisioned), message="other one")
            await wait_until(
                lambda: any(e["event"] == "tombstone_dropped" for e in logs), message="dropped"
            )
    store = await DesiredStore.open(tmp_path)
    try:
        assert [d.account_id for d in store] == [account(2)]
        assert store.deleting == {}
    finally:
        await store.close()


async def test_a_deletion_cut_short_by_a_stop_is_finished_after_the_restart(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
        cluster.break_namespace(namespace(1), TemporaryKubeError("503 ServiceUnavailable"))
        await bus.publish([deleted(1)])
        await wait_until(lambda: lag(bus) == 0, message="tombstone recorded")
    cluster.heal_namespace(namespace(1))
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceDeleted, 2), message="deleted")
    assert cluster.namespace(namespace(1)) is None


async def test_a_namespace_not_ours_is_never_adopted_nor_removed(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    foreign = cluster.put_namespace(namespace(1), {"team": "someone-else"})
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisionFailed), message="refused")
        failed = latest(bus, 1)
        assert isinstance(failed, NamespaceProvisionFailed)
        assert "refusing to adopt" in failed.reason
        await bus.publish([deleted(1)])
        await wait_until(lambda: reported(bus, 1, NamespaceDeleted, 2), message="deleted")
    assert cluster.namespace(namespace(1)) == foreign
    assert cluster.children(namespace(1)) == []
    assert cluster.calls["delete"] == 0


async def test_malformed_and_foreign_events_are_skipped_and_the_position_moves_on(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    good = created(1)
    garbage = Envelope(
        good.event_id, "account.created", 2, good.aggregate_id, good.key, False, good.occurred_at,
        "c", {"account_id": good.aggregate_id},
    )
    report = to_envelope(
        NamespaceProvisioned(account(7), "west", "acc-a", "u", "1", 1), correlation_id="c"
    )
    await bus.publish([garbage, report, created(2)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 2, NamespaceProvisioned), message="provisioned")
        await wait_until(lambda: lag(bus) == 0, message="position at the head")
    assert cluster.namespace(namespace(1)) is None


async def test_resync_recreates_a_hand_deleted_namespace_and_reports_its_new_uid(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
        first_uid = cluster.namespace(namespace(1))["metadata"]["uid"]  # type: ignore[index]
        cluster.remove_by_hand(namespace(1))
        await wait_until(
            lambda: len(outcomes(bus, NamespaceProvisioned, 1)) == 2, message="re-created"
        )
    new = latest(bus, 1)
    assert isinstance(new, NamespaceProvisioned)
    assert new.uid != first_uid
    assert new.uid == cluster.namespace(namespace(1))["metadata"]["uid"]  # type: ignore[index]
    assert len(cluster.children(namespace(1))) == 6


async def test_resync_repairs_a_deleted_policy_object_and_an_edited_label_without_reporting(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
        reports = len(bus.history)
        ns = cluster.namespace(namespace(1))
        assert ns is not None
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
        del cluster.objects[("NetworkPolicy", namespace(1), "default-deny")]

        def repaired() -> bool:
            now = cluster.namespace(namespace(1))
            return (
                now is not None
                and now["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
                and ("NetworkPolicy", namespace(1), "default-deny") in cluster.objects
            )

        await wait_until(repaired, message="drift repaired")
    assert len(bus.history) == reports  # same namespace, nothing new to report


async def test_resync_recreates_a_namespace_that_is_still_terminating_once_it_is_gone(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster(finalize_after_reads=5)
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
        first = cluster.namespace(namespace(1))
        assert first is not None
        await cluster.delete(ObjectRef("Namespace", namespace(1)))

        def recreated() -> bool:
            ns = cluster.namespace(namespace(1))
            return ns is not None and ns["metadata"]["uid"] != first["metadata"]["uid"]

        await wait_until(recreated, message="recreated after finalizing")
        await wait_until(lambda: len(outcomes(bus, NamespaceProvisioned)) == 2, message="reported")
    assert outcomes(bus, NamespaceProvisionFailed) == []  # waiting for finalizers is no failure


async def test_garbage_collection_removes_our_namespace_of_an_account_not_in_the_store(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    orphan = cluster.put_namespace(namespace(9), ours(9))
    orphan["metadata"]["annotations"] = {ANNOTATION_GENERATION: "3"}
    foreign = cluster.put_namespace("acc-other", {"team": "x"})
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: reported(bus, 9, NamespaceDeleted, 3), message="collected")
        assert reported(bus, 1, NamespaceProvisioned)
    assert cluster.namespace(namespace(9)) is None
    assert cluster.namespace("acc-other") == foreign


async def test_garbage_collection_waits_until_the_store_has_caught_up_with_the_log(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(batch_size=1), FakeCluster()
    # Account 1's namespace exists already; its create is the last of a long catch-up.
    await bus.publish([created(n) for n in range(10, 40)] + [created(1)])
    live = cluster.put_namespace(namespace(1), ours(1))
    cluster.put_namespace(namespace(9), ours(9))
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path, resync=0.001)):
            await wait_until(lambda: reported(bus, 9, NamespaceDeleted, 0), message="collected")
            await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="adopted")
    ns = cluster.namespace(namespace(1))
    assert ns is not None
    assert ns["metadata"]["uid"] == live["metadata"]["uid"]
    assert outcomes(bus, NamespaceDeleted) == [NamespaceDeleted(account(9), "east", namespace(9), 0)]
    names = [entry["event"] for entry in logs]
    assert names.index("store_synced") < names.index("orphan_found")
    assert "resync_completed" not in names[: names.index("store_synced")]


async def test_a_fresh_store_reads_the_log_from_the_beginning_not_an_old_position(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path / "old")):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
    uid = cluster.namespace(namespace(1))["metadata"]["uid"]  # type: ignore[index]
    # The state dir is lost; the bus still holds the consumer's position at the head.
    lists = cluster.calls["list"]
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path / "new", resync=0.01)):
            await wait_until(
                lambda: any(e["event"] == "outcome_published" for e in logs), message="re-read"
            )
            await wait_until(lambda: cluster.calls["list"] >= lists + 15, message="resyncs ran")
            await wait_until(lambda: lag(bus) == 0, message="position at the head")
    assert [ref for ref in cluster.deletes if ref.kind == "Namespace"] == []
    assert cluster.namespace(namespace(1))["metadata"]["uid"] == uid  # type: ignore[index]


async def test_the_desired_store_survives_a_restart(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
    cluster.remove_by_hand(namespace(1))
    assert bus.acked_seq(CONSUMER) == bus.head  # nothing to redeliver: only the store knows
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: cluster.namespace(namespace(1)) is not None, message="recreated")


async def test_an_unexpected_error_in_one_reconcile_is_logged_and_retried(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    exploding = ExplodingPublisher(bus)
    await bus.publish([created(1), created(2)])
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path), publisher=exploding):
            await wait_until(
                lambda: reported(bus, 1, NamespaceProvisioned)
                and reported(bus, 2, NamespaceProvisioned),
                message="both provisioned",
            )
    assert exploding.exploded
    assert [e["event"] for e in logs].count("reconcile_crashed") == 1
    assert len(outcomes(bus, NamespaceProvisioned)) == 2


async def test_an_event_naming_a_system_namespace_is_refused_without_touching_the_cluster(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    acc = account(666)
    hostile = AccountCreated(acc, "system", "x", "o@example.com", "kube-system", "t", 1)
    await bus.publish([to_envelope(hostile, correlation_id="evil")])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: outcomes(bus, NamespaceProvisionFailed), message="refused")
        await wait_until(lambda: cluster.calls["list"] >= 10, message="resyncs ran")
    [failed] = outcomes(bus, NamespaceProvisionFailed)
    assert isinstance(failed, NamespaceProvisionFailed)
    assert "kube-system" in failed.reason
    assert cluster.calls["create"] == cluster.calls["read"] == cluster.calls["delete"] == 0


async def test_work_logs_name_the_event_the_account_and_the_cluster(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    env = created(1)
    await bus.publish([env])
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path)):
            await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="provisioned")
    names = [entry["event"] for entry in logs]
    for name in ("event_received", "namespace_created", "outcome_published"):
        [entry] = [e for e in logs if e["event"] == name]
        assert entry["event_id"] == env.event_id, name
        assert entry["account_id"] == env.aggregate_id, name
        assert entry["cluster"] == "east", name
    assert names.index("event_received") < names.index("namespace_created")
    assert names.index("namespace_created") < names.index("outcome_published")
