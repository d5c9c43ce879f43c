"""The store's durable form: a snapshot plus an append-only journal, both fsynced.

- `objects.json`: `{"format", "resourceVersion", "objects"}`, replaced atomically (temp file,
  fsync, rename, fsync of the directory), so a SIGKILL leaves the old or the new one.
- `journal.jsonl`: one line per change since the snapshot, `{"rv", "put": object}` or
  `{"rv", "delete": {apiVersion, kind, namespace, name}}`, appended and fsynced before the
  store answers. Cost per write is the size of the change, not of the whole store.

Loading replays journal records newer than the snapshot's resourceVersion (so a crash
between writing a snapshot and truncating the journal is harmless) and cuts off a torn last
line (a write the SIGKILL interrupted, which was never acknowledged). Anything else
unreadable raises `CorruptStore`: refusing to start beats silently losing objects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.kube_emulator import jsonvalue
from actors.runtime.files import fsync_dir, write_atomic

JSON = dict[str, Any]

FORMAT = 1
SNAPSHOT = "objects.json"
JOURNAL = "journal.jsonl"


@dataclass(frozen=True, slots=True)
class Snapshot:
    resource_version: int
    objects: list[JSON]
    journal_records: int = 0


class CorruptStore(RuntimeError):
    """A store file exists but cannot be read: refuse to start rather than lose it."""


def identity(obj: JSON) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "",
            meta.get("name", ""))


def put_record(rv: int, obj: JSON) -> JSON:
    return {"rv": rv, "put": obj}


def delete_record(rv: int, obj: JSON) -> JSON:
    api_version, kind, namespace, name = identity(obj)
    return {"rv": rv, "delete": {"apiVersion": api_version, "kind": kind,
                                 "namespace": namespace, "name": name}}


def _read_snapshot(path: Path) -> tuple[int, list[JSON]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, []
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        return int(doc["resourceVersion"]), list(doc["objects"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptStore(f"cannot read {path}: {exc}") from exc


def load(data_dir: Path, *, repair: bool = True) -> Snapshot:
    """The stored state; with `repair`, a torn journal tail is cut off the file."""
    rv, objects = _read_snapshot(data_dir / SNAPSHOT)
    snapshot_rv = rv
    state = {identity(o): o for o in objects}
    path = data_dir / JOURNAL
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    complete = raw.rfind(b"\n") + 1
    records = 0
    for number, line in enumerate(raw[:complete].splitlines(), start=1):
        try:
            record = json.loads(line)
            record_rv = int(record["rv"])
            if record_rv <= snapshot_rv:
                continue  # already in the snapshot
            if "put" in record:
                state[identity(record["put"])] = record["put"]
            else:
                d = record["delete"]
                state.pop((d["apiVersion"], d["kind"], d["namespace"], d["name"]), None)
            rv = max(rv, record_rv)
            records += 1
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptStore(f"cannot read {path} line {number}: {exc}") from exc
    if repair and complete < len(raw):
        with path.open("r+b") as f:
            f.truncate(complete)
            os.fsync(f.fileno())
    return Snapshot(rv, list(state.values()), records)


def append(data_dir: Path, records: list[JSON]) -> None:
    """Append change records durably (blocking: run it in a thread)."""
    path = data_dir / JOURNAL
    created = not path.exists()
    body = b"".join(jsonvalue.dumps(r) + b"\n" for r in records)
    with path.open("ab") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    if created:
        fsync_dir(data_dir)


def compact(data_dir: Path, snapshot: Snapshot) -> None:
    """Write a new snapshot atomically, then empty the journal (blocking: run in a thread)."""
    body = jsonvalue.dumps(
        {"format": FORMAT, "resourceVersion": snapshot.resource_version,
         "objects": snapshot.objects},
    )
    write_atomic(data_dir / SNAPSHOT, body)
    journal = data_dir / JOURNAL
    if journal.exists():
        with journal.open("r+b") as f:
            f.truncate(0)
            os.fsync(f.fileno())
