"""`fabric keys`: the API keys of a state dir, managed on its files (the API need not run).

- `show` / `rotate`: the admin key in STATE_DIR/admin.key (mode 0600).
  `rotate` writes a fresh key and, when a `fabric up` runs on that state dir,
  asks its api to restart (SIGTERM to the pid in run/api.pid): the supervisor
  starts it again with the new key. `FABRIC_ADMIN_KEY`, when set, overrides
  the file for `fabric up`, so rotating then warns.
- `create --scope admin|write|read [--name N]`, `list`, `revoke ID`: the other
  keys, in the key file (`--keys-file`, else FABRIC_API_KEYS_FILE, else
  STATE_DIR/api/keys.json, where `fabric up`'s api reads them). `create`
  prints the secret once (`--json`: `{"id", "name", "scope", "key"}`); the
  file keeps only its hash. A running API notices a change within a second,
  so a revoked key is refused without a restart.

Each returns the exit code: 0 done, 1 it could not be done (unknown key id,
unreadable key file; the reason on stderr).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from actors.api.keystore import ADMIN_KEY_ID, KeyFileError, UnknownKey, create_key, read_keys, revoke_key
from actors.api.scopes import Scope
from actors.cli import tables
from actors.up.layout import Layout, from_caller, read_admin_key, read_pid, rotate_admin_key

KEYS_FILE_ENV = "FABRIC_API_KEYS_FILE"


def keys_file(flag: str | None, layout: Layout, env: Mapping[str, str] = os.environ) -> Path:
    given = flag or env.get(KEYS_FILE_ENV)
    return from_caller(given, env) if given else layout.keys_file


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


def create(
    path: Path, scope: Scope, name: str | None, as_json: bool, out: TextIO, err: TextIO
) -> int:
    try:
        issued = create_key(path, scope, name)
    except (KeyFileError, ValueError) as exc:
        print(f"fabric keys: {exc}", file=err)
        return 1
    key = issued.stored
    if as_json:
        print(json.dumps({"id": key.id, "name": key.name, "scope": key.scope, "key": issued.secret}),
              file=out)
    else:
        print(issued.secret, file=out)
        print(f"fabric keys: created key {key.id} ({key.name}, scope {key.scope}); "
              "the key is shown only now", file=err)
    return 0


def list_(path: Path, as_json: bool, out: TextIO, err: TextIO) -> int:
    try:
        keys = read_keys(path)
    except KeyFileError as exc:
        print(f"fabric keys: {exc}", file=err)
        return 1
    if as_json:
        print(json.dumps([k.public() for k in keys], indent=2), file=out)
        return 0
    rows = [[ADMIN_KEY_ID, "admin", "admin", "(admin.key)", "-"]]
    rows += [[k.id, k.name, k.scope, k.created_at, k.revoked_at or "-"] for k in keys]
    print(tables.table(["ID", "NAME", "SCOPE", "CREATED", "REVOKED"], rows), file=out)
    return 0


def revoke(path: Path, key_id: str, out: TextIO, err: TextIO) -> int:
    if key_id == ADMIN_KEY_ID:
        print("fabric keys: the admin key cannot be revoked; `fabric keys rotate` replaces it",
              file=err)
        return 1
    try:
        key = revoke_key(path, key_id)
    except (KeyFileError, UnknownKey) as exc:
        print(f"fabric keys: {exc}", file=err)
        return 1
    print(f"revoked {key.id} ({key.name}) at {key.revoked_at}", file=out)
    return 0


def _runs_here(pid: int, layout: Layout) -> bool:
    try:
        return str(layout.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
