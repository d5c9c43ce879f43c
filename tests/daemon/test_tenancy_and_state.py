"""Tenancy overrides, drift, the generation annotation and outcome ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.tenancy import (
    ANNOTATION_GENERATION,
    InvalidOverride,
    TenancyPolicy,
    Tenant,
    applied_generation,
    desired_children,
    desired_namespace,
    drift,
    parse_overrides,
)


def test_overrides_change_only_what_they_name() -> None:
    policy = parse_overrides(
        ["# cluster east", "", "pod_security_level = baseline", "quota.pods = 20", "cluster_role=edit"]
    )
    assert policy.pod_security_level == "baseline"
    assert policy.quota["pods"] == "20"
    assert policy.quota["limits.cpu"] == TenancyPolicy().quota["limits.cpu"]
    assert policy.cluster_role == "edit"
    ns = desired_namespace(Tenant("a", "x", "acc-x", "X"), policy)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("colour = blue", "unknown setting 'colour'"),
        ("quota.pods = lots", "must be a quantity"),
        ("pod_security_level = lax", "pod_security_level must be one of"),
        ("subject_kind = Robot", "subject_kind must be one of"),
        ("just words", "expected 'key = value'"),
    ],
)
def test_a_bad_override_is_refused_with_a_clear_reason(line: str, words: str) -> None:
    with pytest.raises(InvalidOverride, match=words):
        parse_overrides([line])


def test_the_namespace_carries_the_generation_it_was_applied_at() -> None:
    ns = desired_namespace(Tenant("a", "x", "acc-x", "X", 7), TenancyPolicy())
    assert ns["metadata"]["annotations"][ANNOTATION_GENERATION] == "7"
    assert applied_generation(ns) == 7
    assert applied_generation({"metadata": {"annotations": {ANNOTATION_GENERATION: "x"}}}) == 0
    assert applied_generation({"metadata": {}}) == 0


def test_the_shipped_example_overrides_file_parses_to_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "actors" / "daemon" / "tenancy.example"
    assert parse_overrides(example.read_text().splitlines()) == TenancyPolicy()


def test_drift_names_a_missing_object_or_a_changed_label() -> None:
    policy = TenancyPolicy()
    tenant = Tenant("a", "x", "acc-x", "X")
    ns = desired_namespace(tenant, policy)
    complete = {(c["kind"], c["metadata"]["name"]) for c in desired_children(tenant, policy)}
    assert drift(tenant, policy, ns, complete) is None
    assert drift(tenant, policy, ns, complete - {("RoleBinding", "tenant-admin")}) == (
        "RoleBinding tenant-admin is missing"
    )
    ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] = "baseline"
    reason = drift(tenant, policy, ns, complete)
    assert reason is not None
    assert "pod-security.kubernetes.io/warn" in reason
