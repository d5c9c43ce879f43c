"""The resync plan, as a pure function of the cluster view and the store: drift and garbage."""

from __future__ import annotations

import copy
from typing import Any

from actors.daemon.resync import ClusterView, plan
from actors.daemon.state import Desired, Tombstone
from core.desired import (
    ANNOTATION_GENERATION,
    ANNOTATION_SLUG,
    LABEL_PLAN,
    Children,
    desired_children,
    desired_namespace,
)
from core.events import AccountCreated
from core.tenancy import TenancyPolicy

POLICY = TenancyPolicy()


def desired(n: int, generation: int = 1, *, plan: str = "standard", suspended: bool = False) -> Desired:
    event = AccountCreated(
        f"a{n}", f"s{n}", f"S {n}", "o@example.com", f"acc-s{n}", "t", generation, plan, suspended
    )
    return Desired(event, f"e{n}", f"c{n}")


def healthy(d: Desired) -> tuple[dict[str, Any], Children]:
    ns = desired_namespace(d.tenant, POLICY)
    kids = {(c["kind"], c["metadata"]["name"]): c for c in desired_children(d.tenant, POLICY)}
    return ns, kids


def view(*items: tuple[dict[str, Any], Children]) -> ClusterView:
    return ClusterView(
        tuple(ns for ns, _ in items), {ns["metadata"]["name"]: kids for ns, kids in items}
    )


def orphan_ns(account_id: str, name: str, **meta: Any) -> dict[str, Any]:
    labels = {POLICY.managed_by_label: POLICY.managed_by_value, POLICY.account_label: account_id}
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels, **meta}}


def in_sync(_: str, __: int) -> bool:
    return True


def nothing_pending(_: str) -> bool:
    return False


def test_live_accounts_in_sync_and_without_drift_are_left_alone() -> None:
    live = [desired(1), desired(2)]
    result = plan(view(healthy(live[0]), healthy(live[1])), POLICY, live=live, deleting=(),
                  pending=nothing_pending, in_sync=in_sync)
    assert result.queue == []
    assert result.garbage == 0


def test_drift_is_found_for_a_missing_namespace_a_stale_generation_and_an_unreported_account() -> None:
    live = [desired(1), desired(2, generation=3), desired(3)]
    stale, kids = healthy(desired(2, generation=2))
    result = plan(
        view((stale, kids), healthy(live[2])), POLICY, live=live, deleting=(),
        pending=nothing_pending, in_sync=lambda acc, _: acc != "a3",
    )
    reasons = {d.account_id: d.reason for d in result.drift}
    assert reasons["a1"] == "namespace missing"
    assert ANNOTATION_GENERATION in reasons["a2"]
    assert reasons["a3"] == "not reported in sync"
    assert result.queue == ["a1", "a2", "a3"]


def test_a_changed_plan_or_suspension_is_drift_in_the_namespace_labels() -> None:
    live = [desired(1, generation=2, plan="large"), desired(2, generation=2, suspended=True)]
    old = [healthy(desired(1, generation=2)), healthy(desired(2, generation=2))]
    result = plan(view(*old), POLICY, live=live, deleting=(), pending=nothing_pending,
                  in_sync=in_sync)
    reasons = {d.account_id: d.reason for d in result.drift}
    assert LABEL_PLAN in reasons["a1"]
    assert "fabric.dev/suspended" in reasons["a2"]
    assert result.queue == ["a1", "a2"]


def test_a_hand_edited_quota_or_a_retired_policy_left_behind_is_drift() -> None:
    edited, left_behind = desired(1), desired(2, suspended=True)
    ns1, kids1 = healthy(edited)
    quota = copy.deepcopy(kids1[("ResourceQuota", "tenant-quota")])
    quota["spec"]["hard"]["pods"] = "9999"
    ns2, kids2 = healthy(left_behind)
    allow = next(
        c for c in desired_children(desired(2).tenant, POLICY)
        if c["metadata"]["name"] == "allow-dns"
    )
    result = plan(
        view((ns1, {**kids1, ("ResourceQuota", "tenant-quota"): quota}),
             (ns2, {**kids2, ("NetworkPolicy", "allow-dns"): allow})),
        POLICY, live=[edited, left_behind], deleting=(), pending=nothing_pending, in_sync=in_sync,
    )
    reasons = {d.account_id: d.reason for d in result.drift}
    assert reasons == {
        "a1": "ResourceQuota tenant-quota differs from the desired values",
        "a2": "NetworkPolicy allow-dns must not exist",
    }


def test_quantities_a_cluster_writes_differently_are_not_drift() -> None:
    d = desired(1)
    ns, kids = healthy(d)
    quota = copy.deepcopy(kids[("ResourceQuota", "tenant-quota")])
    quota["spec"]["hard"]["requests.memory"] = "8192Mi"  # the same as 8Gi
    quota["spec"]["hard"]["requests.cpu"] = "4000m"
    result = plan(view((ns, {**kids, ("ResourceQuota", "tenant-quota"): quota})), POLICY,
                  live=[d], deleting=(), pending=nothing_pending, in_sync=in_sync)
    assert result.drift == []


def test_accounts_with_work_on_its_way_are_not_queued_again() -> None:
    live = [desired(1)]
    result = plan(view(), POLICY, live=live, deleting=("a9",), pending=lambda acc: True,
                  in_sync=in_sync)
    assert result.queue == []


def test_a_namespace_of_ours_without_a_live_account_becomes_an_orphan_tombstone() -> None:
    ns = orphan_ns("a9", "acc-s9", annotations={ANNOTATION_SLUG: "s9", ANNOTATION_GENERATION: "4"})
    result = plan(view((ns, {})), POLICY, live=[], deleting=(),
                  pending=nothing_pending, in_sync=in_sync)
    assert result.orphans == [Tombstone("a9", "s9", "acc-s9", 4, "", "gc")]
    assert result.queue == ["a9"]
    assert result.garbage == 1


def test_garbage_that_is_terminating_pending_or_already_deleting_makes_no_new_orphan() -> None:
    terminating = orphan_ns("a7", "acc-s7", deletionTimestamp="2026-01-01T00:00:00Z")
    deleting = orphan_ns("a8", "acc-s8")
    pending = orphan_ns("a9", "acc-s9")
    result = plan(
        view((terminating, {}), (deleting, {}), (pending, {})), POLICY,
        live=[], deleting=("a8", "a6"), pending=lambda acc: acc == "a9", in_sync=in_sync,
    )
    assert result.orphans == []
    assert result.queue == ["a8", "a6"]  # a pending deletion is retried at each resync


def test_a_namespace_without_our_account_label_is_never_garbage() -> None:
    ns = orphan_ns("a9", "acc-s9")
    del ns["metadata"]["labels"][POLICY.account_label]
    result = plan(view((ns, {})), POLICY, live=[], deleting=(),
                  pending=nothing_pending, in_sync=in_sync)
    assert result.queue == []
