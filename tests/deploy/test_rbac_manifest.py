"""deploy/rbac.yaml is well formed: its binding gives the ClusterRole to its ServiceAccount,
no rule uses a wildcard, the only named grant is `bind` on the tenants' ClusterRole, and
`delete` reaches only the account namespaces and the network policies a suspension swaps.
(Whether the rules are exactly what the daemon uses is tests/system/test_rbac.py's job.)"""

from __future__ import annotations

from typing import Any

import pytest

from core.tenancy import TenancyPolicy
from tests.support.processes import ROOT
from tests.support.rbac import cluster_role_rules, find_object, load_manifests

MANIFEST = ROOT / "deploy" / "rbac.yaml"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return load_manifests(MANIFEST)


def test_it_holds_a_namespace_a_service_account_a_cluster_role_and_its_binding(
    docs: list[dict[str, Any]],
) -> None:
    assert sorted(doc["kind"] for doc in docs) == [
        "ClusterRole", "ClusterRoleBinding", "Namespace", "ServiceAccount",
    ]


def test_the_binding_gives_the_cluster_role_to_the_service_account(
    docs: list[dict[str, Any]],
) -> None:
    account = find_object(docs, "ServiceAccount")["metadata"]
    role = find_object(docs, "ClusterRole")["metadata"]
    binding = find_object(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    assert find_object(docs, "Namespace")["metadata"]["name"] == account["namespace"]


def test_the_service_accounts_namespace_is_not_one_the_daemon_would_manage(
    docs: list[dict[str, Any]],
) -> None:
    labels = find_object(docs, "Namespace")["metadata"].get("labels") or {}
    assert TenancyPolicy().managed_by_label not in labels


def test_no_rule_uses_a_wildcard(docs: list[dict[str, Any]]) -> None:
    assert [r for r in cluster_role_rules(docs) if r.uses_wildcards()] == []


def test_the_only_named_grant_is_bind_on_the_tenants_cluster_role(
    docs: list[dict[str, Any]],
) -> None:
    named = [r for r in cluster_role_rules(docs) if r.resource_names]
    assert [(r.api_groups, r.resources, r.verbs, r.resource_names) for r in named] == [
        (("rbac.authorization.k8s.io",), ("clusterroles",), ("bind",),
         (TenancyPolicy().cluster_role,)),
    ]
    assert all("bind" not in r.verbs for r in cluster_role_rules(docs) if not r.resource_names)


def test_delete_is_granted_only_on_namespaces_and_network_policies(
    docs: list[dict[str, Any]],
) -> None:
    deletable = {
        (group, resource)
        for r in cluster_role_rules(docs) if "delete" in r.verbs
        for group in r.api_groups for resource in r.resources
    }
    assert deletable == {("", "namespaces"), ("networking.k8s.io", "networkpolicies")}
