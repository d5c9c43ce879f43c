"""The store's durable form: one JSON snapshot file, replaced atomically after each mutation.

Write to a temp file in the same directory, fsync it, rename over the old file, fsync the
directory: a SIGKILL at any instant leaves either the old or the new snapshot, never half of
one (etcd's promise, at emulator scale). The snapshot holds the resourceVersion counter too,
so versions keep increasing across restarts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

FORMAT = 1
FILENAME = "objects.json"


@dataclass(frozen=True, slots=True)
class Snapshot:
    resource_version: int
    objects: list[JSON]


class CorruptStore(RuntimeError):
    """The snapshot file exists but cannot be read: refuse to start rather than lose it."""


def load(data_dir: Path) -> Snapshot:
    path = data_dir / FILENAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Snapshot(0, [])
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        return Snapshot(int(doc["resourceVersion"]), list(doc["objects"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptStore(f"cannot read {path}: {exc}") from exc


def save(data_dir: Path, snapshot: Snapshot) -> None:
    """Replace the snapshot atomically and durably (blocking: run it in a thread)."""
    path = data_dir / FILENAME
    tmp = data_dir / f".{FILENAME}.tmp"
    body = json.dumps(
        {"format": FORMAT, "resourceVersion": snapshot.resource_version,
         "objects": snapshot.objects},
        separators=(",", ":"),
    ).encode()
    with tmp.open("wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
