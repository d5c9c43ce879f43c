"""The test RBAC evaluator decides as Kubernetes does, so a too-narrow or too-wide role fails
the system test: requests map to the right attributes, and rules match by verb, group,
resource, subresource, resource name and non-resource URL, with and without wildcards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.rbac import Attributes, Rule, allowed, allows, may_bind, request_attributes

CORE = ""
NET = "networking.k8s.io"
RBAC = "rbac.authorization.k8s.io"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces", "labelSelector=a%3Db",
         Attributes("list", CORE, "namespaces")),
        ("GET", "/api/v1/namespaces", "watch=true&resourceVersion=5",
         Attributes("watch", CORE, "namespaces")),
        ("GET", "/api/v1/namespaces", "watch=1", Attributes("watch", CORE, "namespaces")),
        ("GET", "/api/v1/namespaces", "watch=false", Attributes("list", CORE, "namespaces")),
        ("GET", "/api/v1/watch/namespaces", "", Attributes("watch", CORE, "namespaces")),
        ("GET", "/api/v1/namespaces", "fieldSelector=metadata.name%3Dacc-a",
         Attributes("list", CORE, "namespaces", name="acc-a")),
        ("GET", "/api/v1/namespaces", "fieldSelector=metadata.name%21%3Dacc-a",
         Attributes("list", CORE, "namespaces")),
        ("GET", "/api/v1/namespaces/acc-a", "",
         Attributes("get", CORE, "namespaces", namespace="acc-a", name="acc-a")),
        ("HEAD", "/api/v1/namespaces/acc-a", "",
         Attributes("get", CORE, "namespaces", namespace="acc-a", name="acc-a")),
        ("POST", "/api/v1/namespaces", "", Attributes("create", CORE, "namespaces")),
        ("PATCH", "/api/v1/namespaces/acc-a", "",
         Attributes("patch", CORE, "namespaces", namespace="acc-a", name="acc-a")),
        ("DELETE", "/api/v1/namespaces/acc-a", "",
         Attributes("delete", CORE, "namespaces", namespace="acc-a", name="acc-a")),
        ("PUT", "/api/v1/namespaces/acc-a/finalize", "",
         Attributes("update", CORE, "namespaces", "finalize", "acc-a", "acc-a")),
        ("GET", "/api/v1/resourcequotas", "labelSelector=x", Attributes("list", CORE, "resourcequotas")),
        ("POST", "/api/v1/namespaces/acc-a/limitranges", "",
         Attributes("create", CORE, "limitranges", namespace="acc-a")),
        ("DELETE", "/api/v1/namespaces/acc-a/limitranges", "",
         Attributes("deletecollection", CORE, "limitranges", namespace="acc-a")),
        ("PUT", "/api/v1/namespaces/acc-a/pods/p/status", "",
         Attributes("update", CORE, "pods", "status", "acc-a", "p")),
        ("POST", f"/apis/{NET}/v1/namespaces/acc-a/networkpolicies", "",
         Attributes("create", NET, "networkpolicies", namespace="acc-a")),
        ("PATCH", f"/apis/{RBAC}/v1/namespaces/acc-a/rolebindings/tenant-admin", "",
         Attributes("patch", RBAC, "rolebindings", namespace="acc-a", name="tenant-admin")),
        ("GET", "/version", "", Attributes("get", resource_request=False, path="/version")),
        ("GET", "/apis/apps/v1", "", Attributes("get", resource_request=False, path="/apis/apps/v1")),
        ("POST", "/api", "", Attributes("post", resource_request=False, path="/api")),
    ],
)
def test_an_http_request_maps_to_the_attributes_the_api_server_authorizes(
    method: str, path: str, query: str, expected: Attributes
) -> None:
    assert request_attributes(method, path, query) == expected


def rule(**fields: Any) -> Rule:
    return Rule.from_json(fields)


NS_GET = Attributes("get", CORE, "namespaces", namespace="acc-a", name="acc-a")
NS_CREATE = Attributes("create", CORE, "namespaces")
NS_LIST = Attributes("list", CORE, "namespaces")
NS_LIST_NAMED = Attributes("list", CORE, "namespaces", name="acc-a")
NS_FINALIZE = Attributes("update", CORE, "namespaces", "finalize", "acc-a", "acc-a")
POD_STATUS = Attributes("update", CORE, "pods", "status", "acc-a", "p")
NETPOL = Attributes("create", NET, "networkpolicies", namespace="acc-a")
HEALTHZ = Attributes("get", resource_request=False, path="/healthz/etcd")


@pytest.mark.parametrize(
    ("fields", "attrs", "expected"),
    [
        # verbs
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}, NS_GET, True),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}, NS_CREATE, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}, NS_LIST, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"]}, NS_CREATE, True),
        # API groups
        ({"apiGroups": [""], "resources": ["networkpolicies"], "verbs": ["create"]}, NETPOL, False),
        ({"apiGroups": [NET], "resources": ["networkpolicies"], "verbs": ["create"]}, NETPOL, True),
        ({"apiGroups": ["*"], "resources": ["networkpolicies"], "verbs": ["create"]}, NETPOL, True),
        ({"apiGroups": [NET], "resources": ["namespaces"], "verbs": ["get"]}, NS_GET, False),
        # resources and subresources
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, NS_GET, True),
        ({"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get"]}, NS_GET, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["update"]}, NS_FINALIZE, False),
        ({"apiGroups": [""], "resources": ["namespaces/finalize"], "verbs": ["update"]},
         NS_FINALIZE, True),
        ({"apiGroups": [""], "resources": ["namespaces/status"], "verbs": ["update"]},
         NS_FINALIZE, False),
        ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["update"]}, POD_STATUS, True),
        ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["update"]}, NS_FINALIZE, False),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["update"]}, POD_STATUS, True),
        ({"apiGroups": [""], "resources": ["namespaces/finalize"], "verbs": ["get"]}, NS_GET, False),
        # resource names restrict named requests and never admit unnamed ones
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"],
          "resourceNames": ["acc-a"]}, NS_GET, True),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"],
          "resourceNames": ["acc-b"]}, NS_GET, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"],
          "resourceNames": ["acc-a"]}, NS_CREATE, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"],
          "resourceNames": ["acc-a"]}, NS_LIST, False),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"],
          "resourceNames": ["acc-a"]}, NS_LIST_NAMED, True),
        # non-resource URLs
        ({"nonResourceURLs": ["/healthz/etcd"], "verbs": ["get"]}, HEALTHZ, True),
        ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, HEALTHZ, True),
        ({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, HEALTHZ, False),
        ({"nonResourceURLs": ["/healthz/*"], "verbs": ["post"]}, HEALTHZ, False),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, HEALTHZ, False),
        ({"nonResourceURLs": ["*"], "verbs": ["*"]}, NS_GET, False),
    ],
)
def test_a_rule_allows_exactly_what_kubernetes_rbac_allows(
    fields: dict[str, Any], attrs: Attributes, expected: bool
) -> None:
    assert allows(rule(**fields), attrs) is expected


def test_any_rule_of_a_role_suffices_and_no_rule_denies() -> None:
    rules = [
        rule(apiGroups=[""], resources=["namespaces"], verbs=["get"]),
        rule(apiGroups=[NET], resources=["networkpolicies"], verbs=["create"]),
    ]
    assert allowed(rules, NS_GET)
    assert allowed(rules, NETPOL)
    assert not allowed(rules, NS_CREATE)
    assert not allowed([], NS_GET)


def test_bind_is_checked_on_the_named_cluster_role_only() -> None:
    rules = [rule(apiGroups=[RBAC], resources=["clusterroles"], verbs=["bind"],
                  resourceNames=["admin"])]
    assert may_bind(rules, "admin", "acc-a")
    assert not may_bind(rules, "cluster-admin", "acc-a")
    assert not may_bind([rule(apiGroups=[RBAC], resources=["clusterroles"], verbs=["get"])], "admin")


def test_a_rule_splits_into_one_cell_per_group_resource_and_verb() -> None:
    cells = list(rule(apiGroups=["", NET], resources=["a", "b"], verbs=["get", "list"]).cells())
    assert len(cells) == 8
    assert {(c.api_groups, c.resources, c.verbs) for c in cells} == {
        ((g,), (r,), (v,)) for g in ("", NET) for r in ("a", "b") for v in ("get", "list")
    }
    named = list(rule(apiGroups=[RBAC], resources=["clusterroles"], verbs=["bind"],
                      resourceNames=["admin"]).cells())
    assert [c.resource_names for c in named] == [("admin",)]


@pytest.mark.parametrize(
    ("fields", "wild"),
    [
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}, False),
        ({"apiGroups": ["*"], "resources": ["namespaces"], "verbs": ["get"]}, True),
        ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]}, True),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"]}, True),
        ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, True),
    ],
)
def test_wildcards_are_recognised(fields: dict[str, Any], wild: bool) -> None:
    assert rule(**fields).uses_wildcards() is wild


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("get", "must be a mapping"),
        ({"apiGroups": [""], "resources": ["namespaces"]}, "needs verbs"),
        ({"apiGroups": [""], "resources": ["namespaces"], "verbs": "get"}, "list of strings"),
        ({"resources": ["namespaces"], "verbs": ["get"]}, "needs apiGroups and resources"),
        ({"apiGroups": [""], "verbs": ["get"]}, "needs apiGroups and resources"),
        ({"nonResourceURLs": ["/x"], "resources": ["pods"], "verbs": ["get"]}, "either"),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resource": ["x"]},
         "unknown rule fields"),
    ],
)
def test_a_malformed_rule_is_rejected_with_a_reason(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Rule.from_json(data)
