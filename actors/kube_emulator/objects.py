"""Server-side object rules (pure): what the API server fills in, keeps, prunes and checks.

- `prepare_create`: apiVersion/kind, uid, resourceVersion, creationTimestamp, generateName,
  the namespace's `kubernetes.io/metadata.name` label, `spec.finalizers: [kubernetes]` and
  `status.phase: Active`, a managedFields entry.
- `prepare_update`: identity fields (uid, creationTimestamp, deletionTimestamp, namespace) are
  kept from the stored object, and so is `status` (and a namespace's `spec.finalizers`): only
  subresources change them.
- `prune_unknown`: unknown fields are dropped, or rejected with fieldValidation=Strict, as
  the real decoder does.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, assert_never

from actors.kube_emulator import jsonvalue, ownership, patch, validation
from actors.kube_emulator.errors import ApiError, bad_request, invalid, stale
from actors.kube_emulator.resources import NAMESPACES, ResourceType

JSON = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]

NAME_LABEL = "kubernetes.io/metadata.name"

_METADATA_FIELDS = {
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields", "selfLink",
}
_TOP_FIELDS: dict[str, set[str]] = {
    "Namespace": {"spec", "status"},
    "ResourceQuota": {"spec", "status"},
    "LimitRange": {"spec"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "NetworkPolicy": {"spec"},
    "Role": {"rules"},
    "RoleBinding": {"subjects", "roleRef"},
}
_SPEC_FIELDS: dict[str, set[str]] = {
    "Namespace": {"finalizers"},
    "ResourceQuota": {"hard", "scopes", "scopeSelector"},
    "LimitRange": {"limits"},
    "NetworkPolicy": {"podSelector", "ingress", "egress", "policyTypes"},
}
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prune_unknown(rtype: ResourceType, body: JSON, strict: bool) -> JSON:
    """Drop fields the kind does not have; with `strict`, refuse them (400) instead."""
    unknown: list[str] = []
    known_top = {"apiVersion", "kind", "metadata"} | _TOP_FIELDS.get(rtype.kind, set())
    out = {}
    for key, value in body.items():
        if key in known_top:
            out[key] = value
        else:
            unknown.append(key)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        unknown.extend(f"metadata.{k}" for k in meta if k not in _METADATA_FIELDS)
        out["metadata"] = {k: v for k, v in meta.items() if k in _METADATA_FIELDS}
    spec = out.get("spec")
    spec_fields = _SPEC_FIELDS.get(rtype.kind)
    if isinstance(spec, dict) and spec_fields is not None:
        unknown.extend(f"spec.{k}" for k in spec if k not in spec_fields)
        out["spec"] = {k: v for k, v in spec.items() if k in spec_fields}
    if unknown and strict:
        fields = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise bad_request(f"strict decoding error: {fields}")
    return out


def check_kind(rtype: ResourceType, body: JSON) -> None:
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if (api_version not in (None, "", rtype.api_version)) or (kind not in (None, "", rtype.kind)):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rtype.api_version})" if api_version not in (None, "", rtype.api_version)
            else f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
        )


def decode_quantities(rtype: ResourceType, obj: JSON) -> None:
    """Quantities decode as the real server's JSON decoder does (400 if malformed)."""
    problem = validation.normalize_quantities(rtype.kind, obj)
    if problem is not None:
        raise bad_request(f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                          f"{rtype.kind}: {problem}")


def validate(rtype: ResourceType, obj: JSON) -> None:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    causes = validation.check_name(rtype.name_rule, name)
    causes += validation.check_metadata(meta)
    if causes:
        raise invalid(rtype, name if isinstance(name, str) else "", causes)




def _namespace_rules(obj: JSON) -> None:
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    labels[NAME_LABEL] = meta["name"]
    meta["labels"] = labels


def prepare_create(
    rtype: ResourceType, body: JSON, namespace: str | None, rv: int, manager: str,
    operation: str = "Update", applied: set[ownership.Path] | None = None,
) -> JSON:
    obj = jsonvalue.copy(body)
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    if not meta.get("name") and isinstance(meta.get("generateName"), str):
        suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
        meta["name"] = meta["generateName"] + suffix
    if rtype.namespaced:
        body_ns = meta.get("namespace")
        if body_ns not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    decode_quantities(rtype, obj)
    validate(rtype, obj)
    stamp = now()
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(key, None)
    meta.update(uid=str(uuid.uuid4()), resourceVersion=str(rv), creationTimestamp=stamp)
    meta["managedFields"] = ownership.managed_entries(
        [], manager, operation, rtype.api_version, stamp,
        applied if applied is not None else set(ownership.leaves(body)), set())
    if rtype is NAMESPACES:
        _namespace_rules(obj)
        raw_spec = obj.get("spec")
        spec: JSON = raw_spec if isinstance(raw_spec, dict) else {}
        finalizers = list(spec.get("finalizers") or [])
        if "kubernetes" not in finalizers:
            finalizers.append("kubernetes")
        obj["spec"] = {**spec, "finalizers": finalizers}
        obj["status"] = {"phase": "Active"}
    elif rtype.kind == "ResourceQuota":
        _quota_status(obj)
    return obj


def _quota_status(obj: JSON) -> None:
    """What the quota controller would report for an empty namespace: hard limits, nothing used."""
    spec = obj.get("spec")
    hard = spec.get("hard") if isinstance(spec, dict) else None
    if isinstance(hard, dict) and hard:
        obj["status"] = {"hard": dict(hard), "used": dict.fromkeys(hard, "0")}
    else:
        obj.pop("status", None)


def prepare_update(
    rtype: ResourceType, old: JSON, new: JSON, rv: int, manager: str, operation: str = "Update",
    applied: set[ownership.Path] | None = None,
) -> JSON:
    """The stored object after an update (PUT or PATCH), or `old` itself if nothing changed."""
    obj = jsonvalue.copy(new)
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    old_meta = old["metadata"]
    if meta.get("name") not in (None, old_meta["name"]):
        raise bad_request(f'the name of the object ({meta.get("name")}) does not match the name '
                          f'on the URL ({old_meta["name"]})')
    if rtype.namespaced and meta.get("namespace") not in (None, "", old_meta.get("namespace")):
        raise bad_request("the namespace of the provided object does not match the namespace "
                          "sent on the request")
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds", "generateName"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if "status" in old:
        obj["status"] = jsonvalue.copy(old["status"])
    else:
        obj.pop("status", None)
    if rtype is NAMESPACES:
        _namespace_rules(obj)
        obj["spec"] = jsonvalue.copy(old.get("spec") or {})
    decode_quantities(rtype, obj)
    if rtype.kind == "ResourceQuota":
        _quota_status(obj)
    validate(rtype, obj)
    changed = ownership.changed_paths(old, obj)
    if not changed and (applied is None or applied == ownership.owned_by(old, manager, "Apply")):
        return old
    if applied is None:  # an update owns what it changed, on top of what it owned
        present = set(ownership.leaves(obj))
        applied = (ownership.owned_by(old, manager, operation) | changed) & present
    meta["resourceVersion"] = str(rv)
    meta["managedFields"] = ownership.managed_entries(
        old_meta.get("managedFields") or [], manager, operation, rtype.api_version, now(),
        applied, changed)
    return obj


def apply_patch(old: JSON, patch_type: PatchType, body: Any) -> JSON:
    """The object a PATCH of `patch_type` makes of `old` (422 if it cannot be applied)."""
    try:
        match patch_type:
            case "merge":
                patched = patch.merge_patch(old, ensure_object(body))
            case "strategic" | "apply":
                patched = patch.strategic_merge(old, ensure_object(body))
            case "json":
                patched = patch.json_patch(old, body)
            case _:
                assert_never(patch_type)
    except patch.PatchError as exc:
        raise ApiError(422, "Invalid", str(exc), {})
    if not isinstance(patched, dict):
        raise bad_request("the patch must produce an object")
    return patched


def deleted_status(rtype: ResourceType, obj: JSON) -> JSON:
    """The Success Status a DELETE of an object without finalizers answers."""
    details: JSON = {"name": obj["metadata"]["name"], "kind": rtype.plural,
                     "uid": obj["metadata"]["uid"]}
    if rtype.group:
        details["group"] = rtype.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


_DELETION_CONDITIONS = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered",
     "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions",
     "All legacy kube types successfully parsed"),
    ("NamespaceDeletionContentFailure", "ContentDeleted",
     "All content successfully deleted, may be waiting on finalization"),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers",
     "All content-preserving finalizers finished"),
)


def with_deletion_conditions(ns: JSON) -> JSON:
    """A Terminating namespace as the namespace controller reports it before finalizing."""
    stamp = now()
    out = jsonvalue.copy(ns)
    out["status"] = {**(out.get("status") or {}), "conditions": [
        {"type": t, "status": "False", "lastTransitionTime": stamp, "reason": r, "message": m}
        for t, r, m in _DELETION_CONDITIONS
    ]}
    return out


def list_item(obj: JSON) -> JSON:
    """Items inside a List carry no kind/apiVersion, as the real server encodes them."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def check_precondition(rtype: ResourceType, current: JSON, body_rv: object) -> None:
    if body_rv not in (None, "") and body_rv != current["metadata"]["resourceVersion"]:
        raise stale(rtype, current["metadata"]["name"])


def ensure_object(body: object) -> JSON:
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
    return body
