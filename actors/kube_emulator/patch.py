"""The four PATCH flavours, applied to plain JSON values (pure functions).

- `merge_patch`: RFC 7386 (`application/merge-patch+json`).
- `strategic_merge`: like a merge patch, plus merge-by-key for the few lists that have a
  patch merge key in the kinds we serve (`metadata.finalizers` merges as a set,
  `metadata.ownerReferences` by `uid`), and the `$patch`, `$retainKeys`,
  `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives kubectl may send.
  Other lists (RoleBinding `subjects`, NetworkPolicy rules) are replaced, as in the real
  strategy.
- `json_patch`: RFC 6902 (`application/json-patch+json`).
- server-side apply (`application/apply-patch+yaml`) is applied as a strategic merge of the
  configuration; field ownership is recorded but not enforced.

Problems raise `PatchError` (the server answers 422 or 400 with its text).
"""

from __future__ import annotations

from typing import Any

from actors.kube_emulator import jsonvalue

_MERGE_KEYS: dict[tuple[str, ...], str | None] = {
    ("metadata", "finalizers"): None,  # a list of primitives merged as a set
    ("metadata", "ownerReferences"): "uid",
}


class PatchError(ValueError):
    """The patch cannot be applied; the message says why."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return jsonvalue.copy(patch)
    result = jsonvalue.copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return jsonvalue.copy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: jsonvalue.copy(v) for k, v in patch.items() if not k.startswith("$")}
    result = jsonvalue.copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue  # $setElementOrder, $retainKeys: ordering and pruning hints
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and sub in _MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, _MERGE_KEYS[sub])
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = jsonvalue.copy(value)
    return result


def _merge_list(current: Any, patch: list[Any], merge_key: str | None) -> list[Any]:
    items = list(current) if isinstance(current, list) else []
    if merge_key is None:
        return items + [v for v in patch if v not in items]
    for entry in patch:
        if not isinstance(entry, dict) or merge_key not in entry:
            raise PatchError(f"map: {entry} does not contain declared merge key: {merge_key}")
        same = [i for i, old in enumerate(items)
                if isinstance(old, dict) and old.get(merge_key) == entry[merge_key]]
        if entry.get("$patch") == "delete":
            items = [old for i, old in enumerate(items) if i not in same]
        elif same:
            items[same[0]] = strategic_merge(items[same[0]], entry)
        else:
            items.append({k: v for k, v in entry.items() if not k.startswith("$")})
    return items


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts), parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"doc is missing path: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str]) -> Any:
    value = _get(doc, parts)
    parent, last = _parent(doc, parts), parts[-1]
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return value


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts), parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"unable to add at index {last}")
    else:
        raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = jsonvalue.copy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        parts = _pointer(op.get("path"))
        match op["op"]:
            case "add":
                doc = _add(doc, parts, jsonvalue.copy(op.get("value")))
            case "remove":
                _remove(doc, parts)
            case "replace":
                _get(doc, parts)
                if parts:
                    _remove(doc, parts)
                doc = _add(doc, parts, jsonvalue.copy(op.get("value")))
            case "move":
                value = _remove(doc, _pointer(op.get("from")))
                doc = _add(doc, parts, value)
            case "copy":
                doc = _add(doc, parts, jsonvalue.copy(_get(doc, _pointer(op.get("from")))))
            case "test":
                if _get(doc, parts) != op.get("value"):
                    raise PatchError(f"testing value /{'/'.join(parts)} failed")
            case other:
                raise PatchError(f"Unexpected kind: {other}")
    return doc
