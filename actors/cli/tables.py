"""Human output of the operator tool: accounts and clusters as aligned text tables.

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
        for key in ("id", "slug", "name", "owner_email", "namespace", "status", "created_at")
    ]
    clusters = a.get("clusters")
    if isinstance(clusters, Mapping) and clusters:
        rows = []
        for name in sorted(clusters):
            info = clusters[name] if isinstance(clusters[name], Mapping) else {}
            rows.append([
                name,
                str(info.get("state", "")),
                str(info.get("updated_at") or "-"),
                str(info.get("error", "") or ""),
            ])
        lines.append("")
        lines.append(table(["CLUSTER", "STATE", "UPDATED", "ERROR"], rows))
    return "\n".join(lines)


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
