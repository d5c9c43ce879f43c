"""What `fabric up` shows people on stdout: progress lines while starting, a status table.

Pure formatting: the conductor decides when to print.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.up.child import ChildStatus


def status_table(statuses: Sequence[ChildStatus]) -> str:
    rows = [("CHILD", "STATE", "PID", "RESTARTS", "DETAIL")]
    for s in statuses:
        rows.append((s.name, s.state, str(s.pid or "-"), str(s.restarts), s.detail[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def progress_line(statuses: Sequence[ChildStatus]) -> str:
    ready = sum(1 for s in statuses if s.state == "ready")
    waiting = [
        f"{s.name} ({s.detail})" if s.state == "restarting" else s.name
        for s in statuses
        if s.state != "ready"
    ]
    tail = f" - waiting for {', '.join(waiting)}" if waiting else ""
    return f"[{ready}/{len(statuses)} ready]{tail}"


def change_line(before: ChildStatus, after: ChildStatus) -> str:
    pid = f" pid {after.pid}" if after.pid else ""
    detail = f" ({after.detail})" if after.detail else ""
    return f"{after.name}: {before.state} -> {after.state}{pid}{detail}"
