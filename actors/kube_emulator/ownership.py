"""Field ownership, recorded in `metadata.managedFields` as server-side apply needs it (pure).

Every write records its manager: a create owns the fields of its body, an update (PUT or
PATCH) the fields it changed, an apply exactly the fields of its configuration (maps are
walked, lists are atomic leaves). A field that a write changes is taken from every other
manager. Applying again without a field the applier owned removes that field unless another
manager owns it too; applying a value another manager owns with a different value is a 409
Conflict (`FieldManagerConflict` causes) unless `force=true`, which takes the field over.
"""

from __future__ import annotations

from typing import Any

from actors.kube_emulator import jsonvalue
from actors.kube_emulator.errors import ApiError
from actors.kube_emulator.resources import ResourceType

JSON = dict[str, Any]
Path = tuple[str, ...]

_NOT_OWNED: tuple[Path, ...] = (("apiVersion",), ("kind",), ("metadata", "name"),
                                ("metadata", "namespace"), ("metadata", "managedFields"),
                                ("metadata", "resourceVersion"), ("metadata", "uid"),
                                ("metadata", "creationTimestamp"), ("status",))
_MISSING = object()


_NOT_OWNED_SET = frozenset(_NOT_OWNED)
assert all(len(p) <= 2 for p in _NOT_OWNED)  # `_skipped` looks at a path's first two parts


def _skipped(path: Path) -> bool:
    return path[:1] in _NOT_OWNED_SET or path[:2] in _NOT_OWNED_SET


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    out: dict[Path, Any] = {}
    _walk(value, prefix, out)
    return out


def _walk(value: Any, prefix: Path, out: dict[Path, Any]) -> None:
    # A map nobody owns (status, metadata.managedFields) is not walked at all: every write
    # passes here, and those were most of an object's leaves.
    if prefix and _skipped(prefix):
        return
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _walk(sub, (*prefix, str(key)), out)
    elif prefix:
        out[prefix] = value


def encode(paths: set[Path]) -> JSON:
    root: JSON = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def decode(fields: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(fields, dict) or not fields:
        return {prefix} if prefix else set()
    out: set[Path] = set()
    for key, sub in fields.items():
        if isinstance(key, str) and key.startswith("f:"):
            out |= decode(sub, (*prefix, key[2:]))
    return out


def _overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def changed_paths(old: JSON, new: JSON) -> set[Path]:
    before, after = leaves(old), leaves(new)
    return {p for p in before.keys() | after.keys()
            if before.get(p, _MISSING) != after.get(p, _MISSING)}


def _entries(obj: JSON) -> list[JSON]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _others(obj: JSON, manager: str, operation: str) -> dict[str, set[Path]]:
    """Fields owned by every manager entry except (`manager`, `operation`)."""
    out: dict[str, set[Path]] = {}
    for entry in _entries(obj):
        if (entry.get("manager"), entry.get("operation")) != (manager, operation):
            out.setdefault(str(entry.get("manager")), set()).update(decode(entry.get("fieldsV1")))
    return out


def owned_by(obj: JSON, manager: str, operation: str) -> set[Path]:
    for entry in _entries(obj):
        if (entry.get("manager"), entry.get("operation")) == (manager, operation):
            return decode(entry.get("fieldsV1"))
    return set()


def check_conflicts(
    rtype: ResourceType, current: JSON, config: JSON, manager: str
) -> None:
    wanted = leaves(config)
    have = leaves(current)
    causes = []
    for other, fields in sorted(_others(current, manager, "Apply").items()):
        for path, value in sorted(wanted.items()):
            if have.get(path, _MISSING) == value:
                continue
            if any(_overlaps(path, owned) for owned in fields):
                causes.append({
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{other}" using {rtype.api_version}',
                    "field": "." + ".".join(path),
                })
    if causes:
        groups: dict[str, list[str]] = {}
        for c in causes:
            groups.setdefault(c["message"], []).append(c["field"])
        texts = "\n".join(
            f"{m}: {fs[0]}" if len(fs) == 1
            else m.replace("conflict with", "conflicts with", 1) + ":" + "".join(
                f"\n- {f}" for f in fs)
            for m, fs in groups.items())
        details = {"name": (current.get("metadata") or {}).get("name", ""),
                   "kind": rtype.plural, "causes": causes}
        if rtype.group:
            details["group"] = rtype.group
        raise ApiError(409, "Conflict", f"Apply failed with {len(causes)} conflict"
                       f"{'s' if len(causes) > 1 else ''}: {texts}", details)


def _remove(obj: JSON, path: Path) -> None:
    parents: list[tuple[JSON, str]] = []
    node: JSON = obj
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        parents.append((node, part))
        node = child
    node.pop(path[-1], None)
    while len(parents) > 1:  # drop maps the removal emptied, but keep metadata, spec, ...
        parent, key = parents.pop()
        if parent[key]:
            break
        del parent[key]


def prune(merged: JSON, current: JSON, config: JSON, manager: str) -> JSON:
    """Remove the fields `manager` owned before and no longer applies (no other applier owns)."""
    stale = owned_by(current, manager, "Apply") - set(leaves(config))
    others = set().union(*_others(current, manager, "Apply").values()) if stale else set()
    result = jsonvalue.copy(merged)
    for path in sorted(stale, key=len, reverse=True):
        if not any(_overlaps(path, o) for o in others):
            _remove(result, path)
    return result


def managed_entries(
    entries: list[JSON], manager: str, operation: str, api_version: str, time: str,
    fields: set[Path], changed: set[Path],
) -> list[JSON]:
    """The new managedFields: `manager` owns `fields`; changed fields leave other managers."""
    out: list[JSON] = []
    for entry in entries:
        if (entry.get("manager"), entry.get("operation")) == (manager, operation):
            continue
        if changed:
            kept = {p for p in decode(entry.get("fieldsV1"))
                    if not any(_overlaps(p, c) for c in changed)}
            if not kept:
                continue
            entry = {**entry, "fieldsV1": encode(kept)}
        out.append(entry)
    out.append({"manager": manager, "operation": operation, "apiVersion": api_version,
                "time": time, "fieldsType": "FieldsV1", "fieldsV1": encode(fields)})
    return out
