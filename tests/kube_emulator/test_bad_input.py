"""Bad input of any shape gets a clear error, never a crash (property tests on the pure rules)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.kube_emulator import objects, patch, protobuf, validation
from actors.kube_emulator.errors import ApiError
from actors.kube_emulator.resources import RESOURCES
from actors.kube_emulator.selectors import parse_field_selector, parse_label_selector

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_any_selector_text_parses_or_is_a_400(text: str) -> None:
    codes = set()
    for parse in (parse_label_selector, parse_field_selector):
        try:
            parse(text)
        except ApiError as exc:
            codes.add(exc.code)
    assert codes <= {400}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_any_protobuf_body_decodes_or_is_refused(body: bytes) -> None:
    with contextlib.suppress(protobuf.ProtobufError):
        protobuf.decode(b"k8s\x00" + body)


@settings(max_examples=150, deadline=None)
@given(json_values, json_values)
def test_any_patch_applies_or_is_a_patch_error(target: Any, ops: Any) -> None:
    with contextlib.suppress(patch.PatchError):
        patch.json_patch(target, ops)
    patch.merge_patch(target, ops)
    patch.strategic_merge(target, ops)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(RESOURCES), st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       json_values)
def test_any_body_is_created_or_refused_with_a_status(
    rtype: Any, body: dict[str, Any], meta: Any
) -> None:
    body = {**body, "metadata": meta}
    try:
        objects.check_kind(rtype, body)
        pruned = objects.prune_unknown(rtype, body, strict=False)
        created = objects.prepare_create(rtype, pruned, "ns" if rtype.namespaced else None, 1,
                                         "test")
    except ApiError as exc:
        refused = exc.code
    else:
        refused = 0
    if refused:
        assert refused in (400, 422)
        return
    assert created["metadata"]["resourceVersion"] == "1"
    validation.check_metadata(created["metadata"])
