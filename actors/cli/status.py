"""`fabric status`: what a `fabric up` on this state dir runs, read from its files alone.

Prints each child's pid (DIR/run/NAME.pid) and whether that process is alive, the
addresses from DIR/endpoints.json and whether DIR/ready is there. Exit 0 when the
system is up and ready, 3 when it is not (no `up` running, or still starting).
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from actors.cli.tables import table
from actors.up.layout import Layout, read_endpoints, read_pid

EXIT_OK = 0
EXIT_NOT_RUNNING = 3


def status(layout: Layout, as_json: bool, out: TextIO) -> int:
    children: dict[str, dict[str, Any]] = {}
    for pid_file in sorted(layout.run_dir.glob("*.pid")):
        pid = read_pid(pid_file)
        children[pid_file.stem] = {"pid": pid, "alive": pid is not None and _alive(pid)}
    ready = layout.ready_file.exists()
    endpoints = read_endpoints(layout)
    if as_json:
        doc = {"ready": ready, "children": children, "endpoints": endpoints}
        print(json.dumps(doc, indent=2, sort_keys=True), file=out)
    else:
        rows = [
            [name, str(c["pid"] or "-"), "running" if c["alive"] else "gone"]
            for name, c in children.items()
        ]
        print(table(["CHILD", "PID", "PROCESS"], rows) if rows else "no children running", file=out)
        api = endpoints.get("api") if endpoints else None
        print(f"ready: {'yes' if ready else 'no'}   api: {api or '-'}   state: {layout.root}", file=out)
    return EXIT_OK if ready else EXIT_NOT_RUNNING


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
