"""The reconciler against an in-memory cluster: idempotent create, ownership, deletion by label,
changes of plan and suspension applied in place."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from actors.daemon.reconcile import Provisioned, Reconciler, Refused, Removed, Removing, Waiting
from core.desired import LABEL_PLAN, LABEL_SUSPENDED, desired_children
from core.tenancy import (
    PLANS,
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
    TenancyPolicy,
    Tenant,
)
from tests.daemon.fake_cluster import FakeCluster

POLICY = TenancyPolicy()
ACC = "0b7a3c38-6f1e-4b0a-9a55-2f7d5d0b9a11"
OTHER = "9d3c1f2e-1a2b-4c3d-8e9f-001122334455"
TENANT = Tenant(ACC, "acme", "acc-acme", "Acme Inc.")
OURS = {POLICY.managed_by_label: POLICY.managed_by_value, POLICY.account_label: ACC}


def reconciler(cluster: FakeCluster) -> Reconciler:
    return Reconciler(cluster, POLICY)


async def test_ensure_creates_the_labelled_namespace_and_every_policy_object() -> None:
    cluster = FakeCluster()
    outcome = await reconciler(cluster).ensure(TENANT)
    assert isinstance(outcome, Provisioned)
    assert outcome.created
    ns = cluster.namespace("acc-acme")
    assert ns is not None
    assert outcome.uid == ns["metadata"]["uid"]
    labels = ns["metadata"]["labels"]
    assert labels[POLICY.account_label] == ACC
    assert labels[POLICY.managed_by_label] == "fabric"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["metadata"]["annotations"]["fabric.dev/account-name"] == "Acme Inc."
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in cluster.children("acc-acme"))
    assert kinds == [
        ("LimitRange", "tenant-defaults"),
        ("NetworkPolicy", "allow-dns"),
        ("NetworkPolicy", "allow-same-namespace"),
        ("NetworkPolicy", "default-deny"),
        ("ResourceQuota", "tenant-quota"),
        ("RoleBinding", "tenant-admin"),
    ]


async def test_ensure_twice_is_idempotent_and_restores_drifted_labels() -> None:
    cluster = FakeCluster()
    r = reconciler(cluster)
    first = await r.ensure(TENANT)
    ns = cluster.namespace("acc-acme")
    assert ns is not None
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
    quota = next(o for o in cluster.children("acc-acme") if o["kind"] == "ResourceQuota")
    quota["spec"]["hard"]["pods"] = "9999"
    second = await r.ensure(TENANT)
    assert isinstance(first, Provisioned)
    assert isinstance(second, Provisioned)
    assert second.uid == first.uid
    assert not second.created
    assert cluster.namespace("acc-acme")["metadata"]["labels"][  # type: ignore[index]
        "pod-security.kubernetes.io/enforce"
    ] == "restricted"
    quota = next(o for o in cluster.children("acc-acme") if o["kind"] == "ResourceQuota")
    assert quota["spec"]["hard"]["pods"] == PLANS["standard"].quota["pods"]
    assert len(cluster.children("acc-acme")) == len(desired_children(TENANT, POLICY))


async def test_a_create_whose_response_was_lost_succeeds_on_retry_without_a_duplicate() -> None:
    cluster = FakeCluster()
    cluster.lose_response("create")
    r = reconciler(cluster)
    with pytest.raises(TemporaryKubeError):
        await r.ensure(TENANT)
    uid = cluster.namespace("acc-acme")["metadata"]["uid"]  # type: ignore[index]
    outcome = await r.ensure(TENANT)
    assert isinstance(outcome, Provisioned)
    assert outcome.uid == uid
    assert not outcome.created


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ({}, "without label"),
        ({POLICY.managed_by_label: "someone-else"}, "without label"),
        ({POLICY.managed_by_label: "fabric", POLICY.account_label: OTHER}, OTHER),
    ],
)
async def test_a_foreign_namespace_is_refused_and_left_untouched(
    labels: dict[str, str], words: str
) -> None:
    cluster = FakeCluster()
    before = cluster.put_namespace("acc-acme", labels)
    rv = before["metadata"]["resourceVersion"]
    outcome = await reconciler(cluster).ensure(TENANT)
    assert isinstance(outcome, Refused)
    assert words in outcome.reason
    assert "acc-acme" in outcome.reason
    after = cluster.namespace("acc-acme")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == rv
    assert cluster.children("acc-acme") == []


@pytest.mark.parametrize(
    "tenant",
    [
        Tenant(ACC, "system", "kube-system", "x"),
        Tenant(ACC, "kube-x", "acc-kube-x", "x"),
        Tenant(ACC, "acme", "acc-other", "x"),
        Tenant(ACC, "Bad_Name", "acc-Bad_Name", "x"),
        Tenant("not a label value!", "acme", "acc-acme", "x"),
        Tenant(ACC, "acme", "acc-acme", "x", plan="huge"),
    ],
)
async def test_bad_names_are_refused_before_touching_the_cluster(tenant: Tenant) -> None:
    cluster = FakeCluster()
    assert isinstance(await reconciler(cluster).ensure(tenant), Refused)
    assert sum(cluster.calls.values()) == 0


async def test_remove_of_an_id_that_cannot_be_a_label_touches_nothing() -> None:
    cluster = FakeCluster()
    assert isinstance(await reconciler(cluster).remove("not a label value!"), Refused)
    assert sum(cluster.calls.values()) == 0


async def test_a_permanent_error_becomes_a_refusal_with_the_kubernetes_reason() -> None:
    cluster = FakeCluster()
    cluster.fail("create", PermanentKubeError("403 Forbidden: namespaces is forbidden"))
    outcome = await reconciler(cluster).ensure(TENANT)
    assert outcome == Refused("403 Forbidden: namespaces is forbidden")


async def test_a_namespace_being_deleted_makes_ensure_wait() -> None:
    cluster = FakeCluster(finalize_after_reads=100)
    r = reconciler(cluster)
    await r.ensure(TENANT)
    await cluster.delete(ObjectRef("Namespace", "acc-acme"))
    outcome = await r.ensure(TENANT)
    assert isinstance(outcome, Waiting)
    assert "being deleted" in outcome.reason


async def test_remove_deletes_our_namespace_and_says_removing_until_it_is_gone() -> None:
    cluster = FakeCluster(finalize_after_reads=1)
    r = reconciler(cluster)
    await r.ensure(TENANT)
    assert await r.remove(ACC) == Removing(("acc-acme",))
    assert cluster.calls["delete"] == 1
    assert await r.remove(ACC) == Removing(("acc-acme",))
    assert cluster.calls["delete"] == 1  # terminating: asked once, then only looked at
    assert await r.remove(ACC) == Removed(())
    assert cluster.namespace("acc-acme") is None
    assert cluster.children("acc-acme") == []


async def test_remove_finds_every_namespace_of_the_account_by_label_and_only_those() -> None:
    cluster = FakeCluster(finalize_after_reads=0)
    cluster.put_namespace("acc-acme", OURS)
    cluster.put_namespace("acc-acme-old", OURS)
    cluster.put_namespace("acc-other", {**OURS, POLICY.account_label: OTHER})
    cluster.put_namespace("acc-hand-made", {POLICY.account_label: ACC})
    r = reconciler(cluster)
    assert await r.remove(ACC) == Removing(("acc-acme", "acc-acme-old"))
    assert await r.remove(ACC) == Removed(())
    assert cluster.namespace("acc-other") is not None
    assert cluster.namespace("acc-hand-made") is not None


async def test_remove_of_an_account_with_nothing_in_the_cluster_is_done_at_once() -> None:
    cluster = FakeCluster()
    assert await reconciler(cluster).remove(ACC) == Removed(())
    assert cluster.calls["delete"] == 0


def objects(cluster: FakeCluster, namespace: str = "acc-acme") -> dict[tuple[str, str], Any]:
    return {(o["kind"], o["metadata"]["name"]): o for o in cluster.children(namespace)}


CONFIG_MAP = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "tenant-data", "namespace": "acc-acme"}, "data": {"k": "v"},
}


async def test_a_plan_change_patches_the_quota_and_limit_range_in_place() -> None:
    cluster = FakeCluster()
    r = reconciler(cluster)
    first = await r.ensure(TENANT)
    before = objects(cluster)
    larger = dataclasses.replace(TENANT, generation=2, plan="large")
    second = await r.ensure(larger)
    assert isinstance(first, Provisioned)
    assert isinstance(second, Provisioned)
    assert second.uid == first.uid
    after = objects(cluster)
    quota, limits = after[("ResourceQuota", "tenant-quota")], after[("LimitRange", "tenant-defaults")]
    assert quota["spec"]["hard"] == dict(PLANS["large"].quota)
    assert limits["spec"]["limits"][0]["default"] == dict(PLANS["large"].limits["default"])
    # In place: the same objects (uid), patched, not deleted and created again.
    assert {k: o["metadata"]["uid"] for k, o in after.items()} == {
        k: o["metadata"]["uid"] for k, o in before.items()
    }
    ns = cluster.namespace("acc-acme")
    assert ns is not None
    assert ns["metadata"]["labels"][LABEL_PLAN] == "large"
    assert ns["metadata"]["annotations"]["fabric.dev/generation"] == "2"


async def test_suspend_denies_all_and_admits_nothing_new_and_resume_restores_the_plan() -> None:
    cluster = FakeCluster()
    r = reconciler(cluster)
    await r.ensure(TENANT)
    await cluster.create(CONFIG_MAP)
    before = objects(cluster)

    await r.ensure(dataclasses.replace(TENANT, generation=2, suspended=True))
    suspended = objects(cluster)
    hard = suspended[("ResourceQuota", "tenant-quota")]["spec"]["hard"]
    assert hard == {**PLANS["standard"].quota, "pods": "0", "services": "0"}
    policies = sorted(name for kind, name in suspended if kind == "NetworkPolicy")
    assert policies == ["default-deny", "suspended-deny-all"]
    assert suspended[("NetworkPolicy", "suspended-deny-all")]["spec"] == {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
    }
    # Nothing else in the namespace was deleted.
    assert set(before) - set(suspended) == {
        ("NetworkPolicy", "allow-same-namespace"), ("NetworkPolicy", "allow-dns"),
    }
    assert suspended[("ConfigMap", "tenant-data")] == before[("ConfigMap", "tenant-data")]
    ns = cluster.namespace("acc-acme")
    assert ns is not None
    assert ns["metadata"]["labels"][LABEL_SUSPENDED] == "true"

    await r.ensure(dataclasses.replace(TENANT, generation=3))
    resumed = objects(cluster)
    assert set(resumed) == set(before)
    assert resumed[("ResourceQuota", "tenant-quota")]["spec"]["hard"] == dict(
        PLANS["standard"].quota
    )  # `services` is gone again, not left at 0
    assert resumed[("ConfigMap", "tenant-data")] == before[("ConfigMap", "tenant-data")]


async def test_a_quota_entry_added_by_hand_is_removed_and_an_edited_one_restored() -> None:
    cluster = FakeCluster()
    r = reconciler(cluster)
    await r.ensure(TENANT)
    quota = objects(cluster)[("ResourceQuota", "tenant-quota")]
    quota["spec"]["hard"].update({"pods": "9999", "count/secrets": "5"})
    await r.ensure(TENANT)
    assert objects(cluster)[("ResourceQuota", "tenant-quota")]["spec"]["hard"] == dict(
        PLANS["standard"].quota
    )


async def test_a_new_namespace_is_made_without_deleting_anything() -> None:
    cluster = FakeCluster()
    await reconciler(cluster).ensure(dataclasses.replace(TENANT, suspended=True))
    assert cluster.calls["delete"] == 0
    assert ("NetworkPolicy", "suspended-deny-all") in objects(cluster)
