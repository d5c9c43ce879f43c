"""kubernetes-asyncio against the emulator: objects, metadata, Status errors, selectors, patches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tests.kube_emulator.conftest import core, networking, rbac
from tests.support.kube import KubeEndpoint
from tests.support.wait import wait_until

pytestmark = pytest.mark.processes


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or b"{}")
    return body


def ns(name: str, **labels: str) -> client.V1Namespace:
    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or None))


async def test_created_namespace_carries_server_metadata(api: client.ApiClient) -> None:
    v1 = core(api)
    created = await v1.create_namespace(ns("acct-1", team="a"))
    assert created.metadata.uid
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": "acct-1"}
    assert created.spec.finalizers == ["kubernetes"]
    assert created.status.phase == "Active"
    again = await v1.read_namespace("acct-1")
    assert again.metadata.uid == created.metadata.uid


async def test_every_write_bumps_one_global_resource_version(api: client.ApiClient) -> None:
    v1 = core(api)
    a = await v1.create_namespace(ns("rv-a"))
    b = await v1.create_namespace(ns("rv-b"))
    q = await v1.create_namespaced_resource_quota(
        "rv-a", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "3"}}})
    versions = [int(o.metadata.resource_version) for o in (a, b, q)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    listed = await v1.list_namespace()
    assert int(listed.metadata.resource_version) == versions[-1]


async def test_duplicate_namespace_is_409_already_exists(api: client.ApiClient) -> None:
    v1 = core(api)
    await v1.create_namespace(ns("dup"))
    with pytest.raises(ApiException) as info:
        await v1.create_namespace(ns("dup"))
    assert info.value.status == 409
    assert status_of(info.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'namespaces "dup" already exists', "reason": "AlreadyExists",
        "details": {"name": "dup", "kind": "namespaces"}, "code": 409,
    }


async def test_missing_objects_are_404_not_found(api: client.ApiClient) -> None:
    v1 = core(api)
    with pytest.raises(ApiException) as info:
        await v1.read_namespace("missing")
    assert info.value.status == 404
    body = status_of(info.value)
    assert (body["reason"], body["message"]) == ("NotFound", 'namespaces "missing" not found')
    with pytest.raises(ApiException) as info:
        await rbac(api).read_namespaced_role_binding("x", "default")
    assert status_of(info.value)["message"] == (
        'rolebindings.rbac.authorization.k8s.io "x" not found')
    assert status_of(info.value)["details"] == {
        "name": "x", "group": "rbac.authorization.k8s.io", "kind": "rolebindings"}


async def test_creating_in_a_missing_namespace_is_404_for_the_namespace(
    api: client.ApiClient,
) -> None:
    with pytest.raises(ApiException) as info:
        await core(api).create_namespaced_limit_range(
            "nowhere", {"metadata": {"name": "lr"}})
    assert info.value.status == 404
    assert status_of(info.value)["message"] == 'namespaces "nowhere" not found'


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("Bad_Name", "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                     "characters or '-', and must start and end with an alphanumeric character "
                     "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ("with.dot", "must not contain dots"),
        ("a" * 64, "must be no more than 63 characters"),
    ],
)
async def test_invalid_namespace_names_are_422_with_dns1123_messages(
    api: client.ApiClient, name: str, detail: str
) -> None:
    with pytest.raises(ApiException) as info:
        await core(api).create_namespace(ns(name))
    assert info.value.status == 422
    body = status_of(info.value)
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        f'Namespace "{name}" is invalid: metadata.name: Invalid value: "{name}": {detail}')
    assert body["details"]["kind"] == "Namespace"
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "message": f'Invalid value: "{name}": {detail}',
        "field": "metadata.name"}]


async def test_label_selectors_filter_lists(api: client.ApiClient) -> None:
    v1 = core(api)
    await v1.create_namespace(ns("s-1", suite="sel", tier="a", managed="yes"))
    await v1.create_namespace(ns("s-2", suite="sel", tier="b", managed="yes"))
    await v1.create_namespace(ns("s-3", suite="sel", tier="c"))

    async def names(selector: str) -> list[str]:
        listed = await v1.list_namespace(label_selector=f"suite=sel,{selector}")
        return [n.metadata.name for n in listed.items]

    assert await names("managed=yes") == ["s-1", "s-2"]
    assert await names("tier in (a,c)") == ["s-1", "s-3"]
    assert await names("managed,tier!=a") == ["s-2"]
    assert await names("!managed") == ["s-3"]
    with pytest.raises(ApiException) as info:
        await v1.list_namespace(label_selector="tier in (a")
    assert info.value.status == 400


async def test_strategic_merge_and_apply_patches_upsert_and_merge(api: client.ApiClient) -> None:
    v1 = core(api)
    await v1.create_namespace(ns("p-1", keep="1"))
    patched = await v1.patch_namespace("p-1", {"metadata": {"labels": {"added": "2"}}})
    assert patched.metadata.labels == {
        "keep": "1", "added": "2", "kubernetes.io/metadata.name": "p-1"}
    config = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "quota"},
              "spec": {"hard": {"pods": "10"}}}
    created = await v1.patch_namespaced_resource_quota(
        "quota", "p-1", config, field_manager="test", force=True,
        _content_type="application/apply-patch+yaml")
    assert created.spec.hard == {"pods": "10"}
    config["spec"] = {"hard": {"pods": "20"}}
    updated = await v1.patch_namespaced_resource_quota(
        "quota", "p-1", config, field_manager="test", force=True,
        _content_type="application/apply-patch+yaml")
    assert updated.spec.hard == {"pods": "20"}
    assert updated.metadata.uid == created.metadata.uid
    assert updated.status.hard == {"pods": "20"}


async def test_stale_resource_version_on_replace_is_409_conflict(api: client.ApiClient) -> None:
    v1 = core(api)
    await v1.create_namespace(ns("c-1"))
    first = await v1.create_namespaced_service_account("c-1", {"metadata": {"name": "sa"}})
    await v1.patch_namespaced_service_account("sa", "c-1", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiException) as info:
        await v1.replace_namespaced_service_account("sa", "c-1", first)
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(info.value)["message"]


async def test_deleted_namespace_terminates_then_disappears_with_its_objects(
    api: client.ApiClient, shared_kube: KubeEndpoint
) -> None:
    kube = shared_kube
    v1 = core(api)
    await v1.create_namespace(ns("gone"))
    await networking(api).create_namespaced_network_policy(
        "gone", {"metadata": {"name": "deny"}, "spec": {"podSelector": {}}})
    code, body = await kube.request("DELETE", "/api/v1/namespaces/gone")
    assert code == 200
    assert body["kind"] == "Namespace"
    assert body["status"]["phase"] == "Terminating"
    assert body["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as info:
        await v1.create_namespaced_resource_quota("gone", {"metadata": {"name": "q2"}})
    assert info.value.status == 403
    forbidden = status_of(info.value)
    assert forbidden["message"] == (
        'resourcequotas "q2" is forbidden: unable to create new content in namespace gone '
        "because it is being terminated")
    assert forbidden["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    with pytest.raises(ApiException) as info:
        await v1.create_namespace(ns("gone"))
    assert status_of(info.value)["message"] == (
        'object is being deleted: namespaces "gone" already exists')

    async def removed() -> bool:
        code, _ = await kube.request("GET", "/api/v1/namespaces/gone")
        return code == 404

    finalized: bool = await wait_until(removed, timeout=10, message="namespace finalized")
    assert finalized
    code, _ = await kube.request("GET",
                                 "/apis/networking.k8s.io/v1/namespaces/gone/networkpolicies/deny")
    assert code == 404


APPLY = {"Content-Type": "application/apply-patch+yaml"}


def ns_config(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


async def test_apply_removes_fields_its_manager_stops_applying(shared_kube: KubeEndpoint) -> None:
    path = "/api/v1/namespaces/ssa-1?fieldManager=provisioner"
    code, _ = await shared_kube.request("PATCH", path, json=ns_config("ssa-1", a="1", b="2"),
                                        headers=APPLY)
    assert code == 201
    code, body = await shared_kube.request("PATCH", path, json=ns_config("ssa-1", a="1"),
                                           headers=APPLY)
    assert code == 200
    assert body["metadata"]["labels"] == {"a": "1", "kubernetes.io/metadata.name": "ssa-1"}
    entry = next(m for m in body["metadata"]["managedFields"] if m["manager"] == "provisioner")
    assert (entry["operation"], entry["fieldsV1"]) == (
        "Apply", {"f:metadata": {"f:labels": {"f:a": {}}}})


async def test_apply_conflicts_with_another_managers_change_unless_forced(
    shared_kube: KubeEndpoint,
) -> None:
    kube = shared_kube
    path = "/api/v1/namespaces/ssa-2?fieldManager=provisioner"
    assert (await kube.request("PATCH", path, json=ns_config("ssa-2", team="x"),
                               headers=APPLY))[0] == 201
    code, _ = await kube.request(
        "PATCH", "/api/v1/namespaces/ssa-2?fieldManager=kubectl-label",
        json={"metadata": {"labels": {"team": "y"}}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200
    code, body = await kube.request("PATCH", path, json=ns_config("ssa-2", team="x"),
                                    headers=APPLY)
    assert code == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-label" using v1: .metadata.labels.team')
    assert body["details"]["causes"] == [{
        "reason": "FieldManagerConflict", "message": 'conflict with "kubectl-label" using v1',
        "field": ".metadata.labels.team"}]
    code, body = await kube.request("PATCH", path + "&force=true",
                                    json=ns_config("ssa-2", team="x"), headers=APPLY)
    assert code == 200
    assert body["metadata"]["labels"]["team"] == "x"


async def test_apply_without_field_manager_is_400(shared_kube: KubeEndpoint) -> None:
    code, body = await shared_kube.request("PATCH", "/api/v1/namespaces/ssa-3",
                                           json=ns_config("ssa-3"), headers=APPLY)
    assert code == 400
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
        "apply patch")


async def test_quantities_are_decoded_like_the_real_server(shared_kube: KubeEndpoint) -> None:
    kube = shared_kube
    assert (await kube.request("POST", "/api/v1/namespaces",
                               json={"metadata": {"name": "qty"}}))[0] == 201
    code, body = await kube.request("POST", "/api/v1/namespaces/qty/resourcequotas", json={
        "metadata": {"name": "numeric"}, "spec": {"hard": {"pods": 10, "requests.cpu": "500m"}}})
    assert code == 201
    assert body["spec"]["hard"] == {"pods": "10", "requests.cpu": "500m"}
    code, body = await kube.request("POST", "/api/v1/namespaces/qty/limitranges", json={
        "metadata": {"name": "bad"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "lots"}}]}})
    assert code == 400
    assert body["message"] == (
        'LimitRange in version "v1" cannot be handled as a LimitRange: quantities must match the '
        "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_a_body_with_a_number_that_is_not_finite_is_400_and_stores_nothing(
    shared_kube: KubeEndpoint, number: str
) -> None:
    # Python's JSON reader takes these; the API server refuses them, and nothing stored may
    # hold one (the emulator's JSON copies and answers could not carry it).
    name = f"nonfinite-{number.lower().lstrip('-')}-{len(number)}"
    body = f'{{"metadata": {{"name": "{name}", "labels": {{"a": "b"}}}}, "x": {number}}}'
    code, answer = await shared_kube.request(
        "POST", "/api/v1/namespaces", data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert code == 400, answer
    assert "not a number" in answer["message"]
    assert (await shared_kube.request("GET", f"/api/v1/namespaces/{name}"))[0] == 404


async def test_a_namespace_with_a_finalizer_stays_terminating_until_it_is_removed(
    shared_kube: KubeEndpoint,
) -> None:
    kube = shared_kube
    code, _ = await kube.request("POST", "/api/v1/namespaces", json={
        "metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}})
    assert code == 201
    assert (await kube.request("DELETE", "/api/v1/namespaces/held"))[0] == 200

    async def finalized_by_controller() -> bool:
        _, body = await kube.request("GET", "/api/v1/namespaces/held")
        return bool(body["spec"]["finalizers"] == [])

    done: bool = await wait_until(finalized_by_controller, timeout=10,
                                  message="kubernetes finalizer removed")
    assert done
    code, body = await kube.request("GET", "/api/v1/namespaces/held")
    assert (code, body["status"]["phase"]) == (200, "Terminating")
    code, _ = await kube.request(
        "PATCH", "/api/v1/namespaces/held", json={"metadata": {"finalizers": None}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200
    assert (await kube.request("GET", "/api/v1/namespaces/held"))[0] == 404


async def test_body_namespace_must_match_the_url_and_dry_run_stores_nothing(
    shared_kube: KubeEndpoint,
) -> None:
    kube = shared_kube
    assert (await kube.request("POST", "/api/v1/namespaces",
                               json={"metadata": {"name": "match"}}))[0] == 201
    code, body = await kube.request("POST", "/api/v1/namespaces/match/serviceaccounts", json={
        "metadata": {"name": "sa", "namespace": "other"}})
    assert code == 400
    assert body["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request")
    code, body = await kube.request("POST", "/api/v1/namespaces/match/serviceaccounts?dryRun=All",
                                    json={"metadata": {"name": "sa"}})
    assert code == 201
    assert body["metadata"]["namespace"] == "match"
    assert (await kube.request("GET", "/api/v1/namespaces/match/serviceaccounts/sa"))[0] == 404
