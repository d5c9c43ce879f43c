"""Human output of the operator tool: accounts, plans and clusters as aligned text tables.

Pure formatting of the JSON-RPC results (CONTRACT section 4 shapes); anything
unexpected is shown as-is rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    all_rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in all_rows
    )


def _clusters_summary(clusters: Any) -> str:
    if not isinstance(clusters, Mapping) or not clusters:
        return "-"
    parts = []
    for name in sorted(clusters):
        info = clusters[name]
        state = info.get("state", "?") if isinstance(info, Mapping) else str(info)
        parts.append(f"{name}={state}")
    return ",".join(parts)


def accounts(items: Sequence[Any]) -> str:
    rows = []
    for a in items:
        if not isinstance(a, Mapping):
            rows.append([str(a), "", "", "", ""])
            continue
        rows.append([
            str(a.get("id", "")),
            str(a.get("slug", "")),
            str(a.get("status", "")),
            str(a.get("name", "")),
            _clusters_summary(a.get("clusters")),
        ])
    return table(["ID", "SLUG", "STATUS", "NAME", "CLUSTERS"], rows)


def account(a: Any) -> str:
    if not isinstance(a, Mapping):
        return str(a)
    lines = [
        f"{key + ':':<12} {a.get(key, '')}"
        for key in ("id", "slug", "name", "owner_email", "plan", "namespace", "status",
                    "generation", "created_at", "updated_at")
    ]
    clusters = a.get("clusters")
    if isinstance(clusters, Mapping) and clusters:
        rows = []
        for name in sorted(clusters):
            info = clusters[name] if isinstance(clusters[name], Mapping) else {}
            online = info.get("online")
            rows.append([
                name,
                str(info.get("state", "")),
                str(info.get("observed_generation", "-")),
                "yes" if online else f"no (last seen {info.get('last_seen') or '-'})"
                if online is not None else "-",
                str(info.get("updated_at") or "-"),
                str(info.get("attempts", "") or ""),
                str(info.get("error", "") or ""),
            ])
        lines.append("")
        lines.append(table(
            ["CLUSTER", "STATE", "OBSERVED", "ONLINE", "UPDATED", "ATTEMPTS", "ERROR"], rows
        ))
    return "\n".join(lines)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def progress(a: Any) -> str:
    """One line of an account converging: status, generation and each cluster's state."""
    if not isinstance(a, Mapping):
        return str(a)
    cells = []
    clusters = _mapping(a.get("clusters"))
    for name in sorted(clusters):
        info = _mapping(clusters[name])
        cell = f"{name}={info.get('state', '?')}@{info.get('observed_generation', '?')}"
        if info.get("online") is False:
            cell += "(offline)"
        cells.append(cell)
    return f"{a.get('status', '?')} generation {a.get('generation', '?')}: " + (
        " ".join(cells) or "no clusters"
    )


def plans(items: Sequence[Any]) -> str:
    rows = []
    for p in items:
        if not isinstance(p, Mapping):
            rows.append([str(p), "", ""])
            continue
        quota = _mapping(p.get("quota"))
        default = _mapping(_mapping(p.get("limits")).get("default"))
        rows.append([
            str(p.get("name", "")),
            ",".join(f"{k}={v}" for k, v in sorted(quota.items())),
            ",".join(f"{k}={v}" for k, v in sorted(default.items())),
        ])
    return table(["NAME", "QUOTA", "CONTAINER DEFAULTS"], rows)


def clusters(items: Sequence[Any]) -> str:
    rows = []
    for c in items:
        if not isinstance(c, Mapping):
            rows.append([str(c), "", "", "", ""])
            continue
        rows.append([
            str(c.get("name", "")),
            str(c.get("status", "")),
            str(c.get("last_seen", "") or "-"),
            str(c.get("acked_seq", "")),
            str(c.get("lag", "")),
        ])
    return table(["NAME", "STATUS", "LAST SEEN", "ACKED", "LAG"], rows)
