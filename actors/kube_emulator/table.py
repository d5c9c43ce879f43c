"""Server-side printing: `meta.k8s.io` Table responses, as `kubectl get` asks for them.

Columns follow the real API server's printers (Namespace: Name, Status, Age; ...); Age is
rendered server-side with apimachinery's HumanDuration. Rows carry the object as
PartialObjectMetadata (or the full object with includeObject=Object, none with None).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors.kube_emulator.resources import ResourceType

JSON = dict[str, Any]

_DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace.",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object "
           "was created.",
}


def wants_table(accept: str) -> str | None:
    """The Table apiVersion the client accepts first (`v1` or `v1beta1`), or None."""
    for part in accept.split(","):
        params = {k.strip(): v.strip() for k, _, v in
                  (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(obj: JSON) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - created).total_seconds())


def _selector(sel: object) -> str:
    if not isinstance(sel, dict) or not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        parts.append(f"{expr.get('key')} {expr.get('operator', '').lower()} ({values})")
    return ",".join(parts) or "<none>"


def _quota(obj: JSON, limits: bool) -> str:
    status = obj.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    keys = sorted(k for k in hard if k.startswith("limits.") == limits)
    return ", ".join(f"{k}: {used.get(k, '0')}/{hard[k]}" for k in keys)


def _subjects(obj: JSON, kind: str) -> str:
    names = []
    for s in obj.get("subjects") or []:
        if s.get("kind") == kind:
            names.append(f"{s.get('namespace', '')}/{s.get('name')}" if kind == "ServiceAccount"
                         else str(s.get("name")))
    return ", ".join(names)


def columns(rtype: ResourceType) -> list[tuple[str, str, int]]:
    """(name, type, priority) per column."""
    match rtype.kind:
        case "Namespace":
            return [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)]
        case "ResourceQuota":
            return [("Name", "string", 0), ("Age", "string", 0), ("Request", "string", 0),
                    ("Limit", "string", 0)]
        case "LimitRange" | "Role":
            return [("Name", "string", 0), ("Created At", "date", 0)]
        case "NetworkPolicy":
            return [("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]
        case "ServiceAccount":
            return [("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)]
        case "RoleBinding":
            return [("Name", "string", 0), ("Role", "string", 0), ("Age", "string", 0),
                    ("Users", "string", 1), ("Groups", "string", 1),
                    ("ServiceAccounts", "string", 1)]
    return [("Name", "string", 0), ("Age", "string", 0)]


def _cells(rtype: ResourceType, obj: JSON) -> list[object]:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    match rtype.kind:
        case "Namespace":
            return [name, (obj.get("status") or {}).get("phase", ""), _age(obj)]
        case "ResourceQuota":
            return [name, _age(obj), _quota(obj, False), _quota(obj, True)]
        case "LimitRange" | "Role":
            return [name, meta.get("creationTimestamp", "")]
        case "NetworkPolicy":
            return [name, _selector((obj.get("spec") or {}).get("podSelector")), _age(obj)]
        case "ServiceAccount":
            return [name, len(obj.get("secrets") or []), _age(obj)]
        case "RoleBinding":
            ref = obj.get("roleRef") or {}
            return [name, f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj),
                    _subjects(obj, "User"), _subjects(obj, "Group"),
                    _subjects(obj, "ServiceAccount")]
    return [name, _age(obj)]


def _row_object(rtype: ResourceType, obj: JSON, include: str, version: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return {"apiVersion": rtype.api_version, "kind": rtype.kind, **obj}
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata") or {}}


def render(
    rtype: ResourceType, items: list[JSON], resource_version: int | None, version: str = "v1",
    include: str = "Metadata",
) -> JSON:
    rows = []
    for obj in items:
        row: JSON = {"cells": _cells(rtype, obj)}
        row_obj = _row_object(rtype, obj, include, version)
        if row_obj is not None:
            row["object"] = row_obj
        rows.append(row)
    meta: JSON = {} if resource_version is None else {"resourceVersion": str(resource_version)}
    return {
        "kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "priority": p,
             "description": _DESCRIPTIONS.get(n, n)}
            for n, t, p in columns(rtype)
        ],
        "rows": rows,
    }
