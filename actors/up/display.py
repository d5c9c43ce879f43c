"""What `fabric up` shows people on stdout.

Not on a terminal (or TERM=dumb): progress lines while starting, a status table,
then one line per change (`progress_line`, `status_table`, `change_line`).
On a terminal: one block redrawn in place (`live_lines`): the children, then
the system as the API sees it (`SystemView`: each cluster online and its lag,
the accounts counted by status).

Pure formatting: the conductor and `status.LiveStatus` decide when to show what.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from actors.up.child import ChildStatus
from core.account import STATUSES


@dataclass(frozen=True, slots=True)
class ClusterLine:
    name: str
    online: bool
    lag: int | None


@dataclass(frozen=True, slots=True)
class SystemView:
    """One read of the system through the API, or why it could not be read."""

    clusters: tuple[ClusterLine, ...] = ()
    accounts: Mapping[str, int] = field(default_factory=dict)  # status -> how many
    complete: bool = True  # False: only the first accounts were counted
    error: str | None = None


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


def live_lines(
    statuses: Sequence[ChildStatus], system: SystemView | None, *, api_url: str, state: str,
    ready: bool,
) -> list[str]:
    """The block `fabric up` redraws on a terminal."""
    if ready:
        top = f"fabric up: API {api_url}   state {state}   (Ctrl-C stops everything)"
    else:
        top = f"fabric up: starting {progress_line(statuses)}"
    lines = [top, "", *status_table(statuses).splitlines()]
    if system is not None:
        lines += ["", *system_lines(system)]
    return lines


def system_lines(view: SystemView) -> list[str]:
    if view.error is not None:
        return [f"API: {view.error}"]
    cells = [
        f"{c.name} {'online' if c.online else 'OFFLINE'} lag {'-' if c.lag is None else c.lag}"
        for c in view.clusters
    ]
    total = sum(view.accounts.values())
    known = [s for s in STATUSES if view.accounts.get(s)]
    other = sorted(s for s in view.accounts if s not in STATUSES)
    counts = ", ".join(f"{view.accounts[s]} {s}" for s in [*known, *other])
    more = "+" if not view.complete else ""
    return [
        f"clusters: {'   '.join(cells) or 'none yet'}",
        f"accounts: {total}{more}" + (f" ({counts})" if counts else ""),
    ]
