"""The daemon actor end to end in one process: in-memory bus, in-memory cluster, real actor system."""

from __future__ import annotations

from pathlib import Path

import structlog.testing

from core.envelope import Envelope
from core.events import (
    AccountCreated,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    to_envelope,
)
from core.tenancy import ObjectRef, PermanentKubeError, TemporaryKubeError
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import (
    POLICY,
    ExplodingPublisher,
    all_acked,
    created,
    deleted,
    outcomes,
    running,
    settings,
)
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until


async def test_an_account_created_event_provisions_reports_and_acks(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="event acked")
    ns = cluster.namespace("acc-team1")
    assert ns is not None
    [report] = outcomes(bus, NamespaceProvisioned)
    assert isinstance(report, NamespaceProvisioned)
    assert report.cluster == "east"
    assert report.namespace == "acc-team1"
    assert report.uid == ns["metadata"]["uid"]
    assert bus.log[-1].correlation_id == "req-1"


async def test_temporary_errors_are_retried_without_blocking_other_accounts(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.fail("create", TemporaryKubeError("500 InternalError"), times=5)
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="first acked")
        assert cluster.calls["create"] >= 6
        await bus.publish([created(2), created(3)])
        await wait_until(lambda: all_acked(bus), message="all acked")
    assert len(outcomes(bus, NamespaceProvisioned)) == 3


async def test_a_stuck_account_does_not_hold_up_another(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.put_namespace("acc-team1", {})  # foreign: not a temporary error, refused at once
    cluster.fail("read", TemporaryKubeError("503"), times=1000)
    await bus.publish([created(1), created(2)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(
            lambda: outcomes(bus, NamespaceProvisioned), message="account 2 provisioned"
        )
        assert bus.acked_seq("cluster:east") == 0  # account 1 still retrying: seq 1 unacked


async def test_a_permanent_error_reports_failure_with_the_reason_and_acks(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.fail("create", PermanentKubeError("403 Forbidden: namespaces is forbidden"))
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="acked")
    [failed] = outcomes(bus, NamespaceProvisionFailed)
    assert isinstance(failed, NamespaceProvisionFailed)
    assert failed.reason == "403 Forbidden: namespaces is forbidden"
    assert cluster.namespace("acc-team1") is None


async def test_deletion_removes_the_namespace_then_reports_and_acks(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster(finalize_after_reads=3)
    await bus.publish([created(1), deleted(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="both acked")
    assert cluster.namespace("acc-team1") is None
    assert [e.type for e in bus.log[2:]] == ["namespace.provisioned", "namespace.deleted"]


async def test_an_old_create_redelivered_after_the_deletion_has_no_effect(tmp_path: Path) -> None:
    events = [created(1), deleted(1)]
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish(events)
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="both acked")
    creates = cluster.calls["create"]
    replay = FakeBus()  # a broker that lost its acks: everything comes again
    await replay.publish(events)
    async with running(replay, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(replay), message="replay acked")
    assert cluster.calls["create"] == creates
    assert [e.type for e in replay.log[2:]] == ["namespace.deleted"]


async def test_a_lost_ack_means_a_harmless_redo_with_one_namespace_and_one_report(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path), lose_acks=True):
        await wait_until(lambda: len(bus.log) == 2, message="outcome published")
    uid = cluster.namespace("acc-team1")["metadata"]["uid"]  # type: ignore[index]
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="redo acked")
    assert cluster.namespace("acc-team1")["metadata"]["uid"] == uid  # type: ignore[index]
    assert len(outcomes(bus, NamespaceProvisioned)) == 1


async def test_malformed_and_foreign_events_are_acked_and_ignored(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    bad = created(1)
    garbage = Envelope(bad.event_id, "account.created", 1, bad.aggregate_id, bad.occurred_at,
                       "c", {"account_id": bad.aggregate_id})
    other = to_envelope(
        NamespaceProvisioned("a", "west", "acc-a", "u", "1"), correlation_id="c"
    )
    await bus.publish([garbage, other, created(2)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="all acked")
    assert cluster.namespace("acc-team2") is not None


async def test_resync_recreates_a_namespace_deleted_by_hand_and_removes_a_deleted_accounts(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1), created(2), deleted(2)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: all_acked(bus), message="acked")
        first_uid = cluster.namespace("acc-team1")["metadata"]["uid"]  # type: ignore[index]
        cluster.remove_by_hand("acc-team1")
        cluster.put_namespace(
            "acc-team2",
            {POLICY.managed_by_label: "fabric", POLICY.account_label: created(2).aggregate_id},
        )
        await wait_until(
            lambda: cluster.namespace("acc-team1") is not None
            and cluster.namespace("acc-team2") is None,
            message="drift repaired",
        )
        await wait_until(
            lambda: len(outcomes(bus, NamespaceProvisioned)) == 3, message="re-creation reported"
        )
    new = outcomes(bus, NamespaceProvisioned)[-1]
    assert isinstance(new, NamespaceProvisioned)
    assert new.uid != first_uid
    assert len(cluster.children("acc-team1")) == 6


async def test_the_desired_set_survives_a_restart(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus), message="acked")
    cluster.remove_by_hand("acc-team1")
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: cluster.namespace("acc-team1") is not None, message="recreated")


async def test_an_unexpected_error_restarts_the_actor_which_redoes_the_event(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    exploding = ExplodingPublisher(bus)
    await bus.publish([created(1), created(2)])
    async with running(bus, cluster, settings(tmp_path), publisher=exploding):
        await wait_until(lambda: all_acked(bus) and len(bus.log) == 4, message="all acked")
    assert exploding.exploded
    assert len(outcomes(bus, NamespaceProvisioned)) == 2
    assert cluster.calls["create"] >= 2 * 7


async def test_an_event_naming_a_system_namespace_is_refused_without_touching_the_cluster(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    acc = "00000000-0000-4000-8000-000000000666"
    hostile = AccountCreated(acc, "system", "x", "o@example.com", "kube-system", "t")
    await bus.publish([to_envelope(hostile, correlation_id="evil")])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: all_acked(bus), message="acked")
        await wait_until(lambda: cluster.calls["list"] >= 2, message="resyncs ran")
    [failed] = outcomes(bus, NamespaceProvisionFailed)
    assert isinstance(failed, NamespaceProvisionFailed)
    assert "kube-system" in failed.reason
    assert cluster.calls["create"] == cluster.calls["read"] == cluster.calls["delete"] == 0


async def test_work_logs_name_the_event_and_the_account(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    env = created(1)
    await bus.publish([env])
    with structlog.testing.capture_logs() as logs:
        async with running(bus, cluster, settings(tmp_path)):
            await wait_until(lambda: all_acked(bus), message="acked")
    names = [entry["event"] for entry in logs]
    for name in ("event_received", "namespace_created", "outcome_published", "event_acked"):
        [entry] = [e for e in logs if e["event"] == name]
        assert entry["event_id"] == env.event_id, name
        assert entry["account_id"] == env.aggregate_id, name
    assert names.index("namespace_created") < names.index("outcome_published")
    assert names.index("outcome_published") < names.index("event_acked")


async def test_resync_repairs_a_deleted_policy_object_and_an_edited_label_without_reporting(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: all_acked(bus), message="acked")
        reports = len(bus.log)
        ns = cluster.namespace("acc-team1")
        assert ns is not None
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
        del cluster.objects[("NetworkPolicy", "acc-team1", "default-deny")]

        def repaired() -> bool:
            now = cluster.namespace("acc-team1")
            return (
                now is not None
                and now["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
                and ("NetworkPolicy", "acc-team1", "default-deny") in cluster.objects
            )

        await wait_until(repaired, message="drift repaired")
    assert len(bus.log) == reports  # same namespace, nothing new to report


async def test_resync_recreates_a_namespace_that_is_still_terminating_once_it_is_gone(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster(finalize_after_reads=5)
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: all_acked(bus), message="acked")
        first = cluster.namespace("acc-team1")
        assert first is not None
        await cluster.delete(ObjectRef("Namespace", "acc-team1"))

        def recreated() -> bool:
            ns = cluster.namespace("acc-team1")
            return ns is not None and ns["metadata"]["uid"] != first["metadata"]["uid"]

        await wait_until(recreated, message="recreated after finalizing")
        await wait_until(lambda: len(outcomes(bus, NamespaceProvisioned)) == 2, message="reported")
