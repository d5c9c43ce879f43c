"""Plans, tenancy overrides laid over them, suspension, drift and the generation annotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.desired import (
    ANNOTATION_GENERATION,
    LABEL_PLAN,
    LABEL_SUSPENDED,
    applied_generation,
    desired_children,
    desired_namespace,
    drift,
    retired_children,
)
from core.plans import quantity, same_quantities
from core.tenancy import (
    DEFAULT_PLAN,
    PLANS,
    InvalidOverride,
    ObjectRef,
    TenancyPolicy,
    Tenant,
    check_tenant,
    parse_overrides,
)

# What every account got before plans existed: the standard plan must stay exactly this.
BEFORE_PLANS_QUOTA = {
    "pods": "50",
    "requests.cpu": "4",
    "requests.memory": "8Gi",
    "limits.cpu": "8",
    "limits.memory": "16Gi",
    "persistentvolumeclaims": "10",
    "requests.storage": "50Gi",
    "services.loadbalancers": "0",
    "services.nodeports": "0",
}
BEFORE_PLANS_LIMITS = {
    "type": "Container",
    "default": {"cpu": "500m", "memory": "512Mi"},
    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
}


def tenant(plan: str = DEFAULT_PLAN, *, suspended: bool = False, generation: int = 1) -> Tenant:
    return Tenant("a", "x", "acc-x", "X", generation, plan, suspended)


def child(t: Tenant, policy: TenancyPolicy, kind: str) -> dict[str, Any]:
    return next(c for c in desired_children(t, policy) if c["kind"] == kind)


def network_policies(t: Tenant) -> list[str]:
    return [c["metadata"]["name"] for c in desired_children(t, TenancyPolicy())
            if c["kind"] == "NetworkPolicy"]


def test_the_default_plan_is_what_every_account_got_before_plans() -> None:
    t = tenant()
    assert DEFAULT_PLAN == "standard"
    assert child(t, TenancyPolicy(), "ResourceQuota")["spec"]["hard"] == BEFORE_PLANS_QUOTA
    assert child(t, TenancyPolicy(), "LimitRange")["spec"]["limits"] == [BEFORE_PLANS_LIMITS]
    assert dict(PLANS["standard"].quota) == BEFORE_PLANS_QUOTA


def test_plans_grow_from_small_to_large_and_hold_only_valid_quantities() -> None:
    assert {"small", "standard", "large"} <= set(PLANS)
    for plan in PLANS.values():
        assert set(plan.quota) == set(BEFORE_PLANS_QUOTA)
        assert all(quantity(v) is not None for v in plan.quota.values())
        assert set(plan.limits) == {"default", "defaultRequest"}
    for resource in ("pods", "requests.cpu", "limits.memory", "requests.storage"):
        sizes = [quantity(PLANS[p].quota[resource]) for p in ("small", "standard", "large")]
        assert sizes == sorted(s for s in sizes if s is not None)
        assert len(set(sizes)) == 3


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_a_clusters_overrides_apply_on_top_of_every_plan(plan: str) -> None:
    policy = parse_overrides(
        ["# cluster east", "", "pod_security_level = baseline", "quota.pods = 20",
         "cluster_role=edit", "default_cpu = 2"]
    )
    assert policy.quota == {"pods": "20"}
    t = tenant(plan)
    hard = child(t, policy, "ResourceQuota")["spec"]["hard"]
    assert hard == {**PLANS[plan].quota, "pods": "20"}
    [limits] = child(t, policy, "LimitRange")["spec"]["limits"]
    assert limits["default"] == {**PLANS[plan].limits["default"], "cpu": "2"}
    assert limits["defaultRequest"] == PLANS[plan].limits["defaultRequest"]
    assert child(t, policy, "RoleBinding")["roleRef"]["name"] == "edit"
    ns = desired_namespace(t, policy)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert ns["metadata"]["labels"][LABEL_PLAN] == plan


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("colour = blue", "unknown setting 'colour'"),
        ("quota.pods = lots", "must be a quantity"),
        ("default_cpu = lots", "default_cpu must be a quantity"),
        ("pod_security_level = lax", "pod_security_level must be one of"),
        ("subject_kind = Robot", "subject_kind must be one of"),
        ("just words", "expected 'key = value'"),
    ],
)
def test_a_bad_override_is_refused_with_a_clear_reason(line: str, words: str) -> None:
    with pytest.raises(InvalidOverride, match=words):
        parse_overrides([line])


def test_suspension_admits_no_new_pods_or_services_whatever_the_plan_or_overrides() -> None:
    policy = parse_overrides(["quota.pods = 20"])
    for plan in PLANS:
        hard = child(tenant(plan, suspended=True), policy, "ResourceQuota")["spec"]["hard"]
        assert hard == {**PLANS[plan].quota, "pods": "0", "services": "0"}


def test_suspension_replaces_the_allow_policies_with_a_deny_all() -> None:
    assert network_policies(tenant()) == ["default-deny", "allow-same-namespace", "allow-dns"]
    assert network_policies(tenant(suspended=True)) == ["default-deny", "suspended-deny-all"]
    deny = child(tenant(suspended=True), TenancyPolicy(), "NetworkPolicy")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    suspended = next(c for c in desired_children(tenant(suspended=True), TenancyPolicy())
                     if c["metadata"]["name"] == "suspended-deny-all")
    assert suspended["spec"] == deny["spec"]  # no ingress or egress rule: all denied
    assert retired_children(tenant(suspended=True)) == [
        ObjectRef("NetworkPolicy", "allow-same-namespace", "acc-x"),
        ObjectRef("NetworkPolicy", "allow-dns", "acc-x"),
    ]
    assert retired_children(tenant()) == [ObjectRef("NetworkPolicy", "suspended-deny-all", "acc-x")]
    labels = desired_namespace(tenant(suspended=True), TenancyPolicy())["metadata"]["labels"]
    assert labels[LABEL_SUSPENDED] == "true"


def test_an_unknown_plan_is_refused_before_anything_is_built() -> None:
    bad = check_tenant(tenant("huge"))
    assert bad is not None
    assert bad.field == "plan"
    assert "small" in bad.reason


def test_the_namespace_carries_the_generation_it_was_applied_at() -> None:
    ns = desired_namespace(tenant(generation=7), TenancyPolicy())
    assert ns["metadata"]["annotations"][ANNOTATION_GENERATION] == "7"
    assert applied_generation(ns) == 7
    assert applied_generation({"metadata": {"annotations": {ANNOTATION_GENERATION: "x"}}}) == 0
    assert applied_generation({"metadata": {}}) == 0


def test_the_shipped_example_overrides_file_parses_to_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "actors" / "daemon" / "tenancy.example"
    assert parse_overrides(example.read_text().splitlines()) == TenancyPolicy()


def test_drift_names_a_missing_object_or_a_changed_label() -> None:
    policy = TenancyPolicy()
    t = tenant()
    ns = desired_namespace(t, policy)
    complete = {(c["kind"], c["metadata"]["name"]): c for c in desired_children(t, policy)}
    assert drift(t, policy, ns, complete) is None
    without = {k: v for k, v in complete.items() if k != ("RoleBinding", "tenant-admin")}
    assert drift(t, policy, ns, without) == "RoleBinding tenant-admin is missing"
    ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] = "baseline"
    reason = drift(t, policy, ns, complete)
    assert reason is not None
    assert "pod-security.kubernetes.io/warn" in reason


@pytest.mark.parametrize(
    ("have", "want", "same"),
    [
        ({"memory": "1Gi", "cpu": "0.5"}, {"memory": "1024Mi", "cpu": "500m"}, True),
        ({"pods": "1e1"}, {"pods": "10"}, True),
        ({"pods": "10"}, {"pods": "11"}, False),
        ({"pods": "10", "services": "0"}, {"pods": "10"}, False),
        ({"pods": "lots"}, {"pods": "10"}, False),
        (None, {"pods": "10"}, False),
    ],
)
def test_quantities_compare_by_value(have: object, want: dict[str, str], same: bool) -> None:
    assert same_quantities(have, want) is same
