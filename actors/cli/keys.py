"""`fabric keys show|rotate`: the admin API key kept in STATE_DIR/admin.key (mode 0600).

`rotate` (alias `create`) writes a fresh key and, when a `fabric up` runs on
that state dir, asks its api to restart (SIGTERM to the pid in run/api.pid):
the supervisor starts it again with the new key. `FABRIC_ADMIN_KEY`, when
set, overrides the file for `fabric up`, so rotating then warns.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import TextIO

from actors.up.layout import Layout, read_admin_key, read_pid, rotate_admin_key


def show(layout: Layout, out: TextIO, err: TextIO) -> int:
    key = os.environ.get("FABRIC_ADMIN_KEY") or read_admin_key(layout)
    if not key:
        print(f"fabric keys: no admin key in {layout.admin_key_file} (run `fabric up` or "
              "`fabric keys rotate`)", file=err)
        return 1
    print(key, file=out)
    return 0


def rotate(layout: Layout, out: TextIO, err: TextIO) -> int:
    layout.root.mkdir(parents=True, exist_ok=True)
    key = rotate_admin_key(layout)
    print(key, file=out)
    if os.environ.get("FABRIC_ADMIN_KEY"):
        print("fabric keys: FABRIC_ADMIN_KEY is set and wins over the new key file", file=err)
    pid = read_pid(layout.pid_file("api"))
    if pid is not None and _runs_here(pid, layout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            print("fabric keys: the api restarts with the new key", file=err)
    return 0


def _runs_here(pid: int, layout: Layout) -> bool:
    try:
        return str(layout.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
