"""The emulator's pure rules: selectors, patches, names, protobuf decoding, tables, routing."""

from __future__ import annotations

import pytest

from actors.kube_emulator import patch, paths, protobuf, table, validation
from actors.kube_emulator.errors import ApiError
from actors.kube_emulator.resources import NAMESPACES
from actors.kube_emulator.selectors import parse_field_selector, parse_label_selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y),b", {"a": "y", "b": ""}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("!a", {"a": "1"}, False),
        ("a>3", {"a": "4"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors_match_like_the_api_server(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["a in (x", "=b", "a b", "a>x", "a,,"])
def test_malformed_label_selectors_are_400(selector: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(selector)
    assert info.value.code == 400
    assert info.value.message.startswith("unable to parse requirement")


def test_field_selectors_know_names_and_phases_only() -> None:
    sel = parse_field_selector("metadata.name=x,status.phase!=Terminating")
    assert sel.matches({"metadata": {"name": "x"}, "status": {"phase": "Active"}})
    assert not sel.matches({"metadata": {"name": "x"}, "status": {"phase": "Terminating"}})
    with pytest.raises(ApiError) as info:
        parse_field_selector("spec.foo=1")
    assert info.value.message == "field label not supported: spec.foo"


def test_merge_patch_follows_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert patch.merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3}, "l": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2]}


def test_strategic_merge_merges_finalizers_and_replaces_subjects() -> None:
    target = {"metadata": {"finalizers": ["a"]}, "subjects": [{"name": "x"}]}
    result = patch.strategic_merge(target, {
        "metadata": {"finalizers": ["b"], "$setElementOrder/finalizers": ["a", "b"]},
        "subjects": [{"name": "y"}],
    })
    assert result == {"metadata": {"finalizers": ["a", "b"]}, "subjects": [{"name": "y"}]}
    removed = patch.strategic_merge(result, {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


def test_json_patch_applies_rfc6902_operations() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}, "items": [1]}
    result = patch.json_patch(doc, [
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "/items/-", "value": 2},
        {"op": "test", "path": "/items/0", "value": 1},
        {"op": "move", "from": "/items", "path": "/moved"},
    ])
    assert result == {"metadata": {"labels": {"b/c": "2"}}, "moved": [1, 2]}
    with pytest.raises(patch.PatchError):
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])


@pytest.mark.parametrize(
    ("name", "errors"),
    [("ok-1", 0), ("-bad", 1), ("a" * 63, 0), ("A" * 64, 2), ("with.dot", 1)],
)
def test_namespace_names_must_be_dns1123_labels(name: str, errors: int) -> None:
    assert len(validation.check_name("label", name)) == errors


def test_empty_name_is_required_value() -> None:
    assert validation.check_name("subdomain", "") == [{
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name"}]


def test_bad_label_values_are_invalid() -> None:
    causes = validation.check_metadata({"labels": {"ok": "fine", "bad": "no spaces"}})
    assert len(causes) == 1
    assert causes[0]["field"] == "metadata.labels"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_namespace_envelope_decodes_to_json() -> None:
    meta = _field(1, b"acct-9") + _field(11, _field(1, b"team") + _field(2, b"a"))
    namespace = _field(1, meta) + _field(2, _field(1, b"kubernetes"))
    envelope = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(
        2, namespace)
    assert protobuf.decode(envelope) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "acct-9", "labels": {"team": "a"}},
        "spec": {"finalizers": ["kubernetes"]},
    }


@pytest.mark.parametrize("body", [b"", b"k8s\x00\xff", b"{}", b"k8s\x00" + _field(1, b"\x0a")])
def test_garbage_protobuf_is_refused(body: bytes) -> None:
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(body)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
     (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (400 * 86400, "400d")],
)
def test_ages_render_like_kubectl(seconds: int, text: str) -> None:
    assert table.human_duration(seconds) == text


def test_table_accept_header_is_recognised() -> None:
    accept = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
              "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
    assert table.wants_table(accept) == "v1"
    assert table.wants_table("application/json") is None


def test_paths_route_namespaces_subresources_and_namespaced_kinds() -> None:
    assert paths.parse("/api/v1/namespaces/x") == paths.Target(NAMESPACES, None, "x")
    assert paths.parse("/api/v1/namespaces/x/finalize") == paths.Target(
        NAMESPACES, None, "x", "finalize")
    target = paths.parse("/apis/rbac.authorization.k8s.io/v1/namespaces/x/rolebindings/rb")
    assert target is not None
    assert (target.rtype.kind, target.namespace, target.name) == ("RoleBinding", "x", "rb")
    all_quotas = paths.parse("/api/v1/resourcequotas")
    assert all_quotas is not None
    assert all_quotas.namespace is None
    assert paths.parse("/api/v1/pods") is None
    assert paths.parse("/api/v1/namespaces/x/networkpolicies") is None
