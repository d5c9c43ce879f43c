"""Durable file writes: the one helper every process uses for a file replaced by rename.

`write_atomic` writes a temp file next to the target, fsyncs it, renames it
over the target and fsyncs the directory, so after it returns the new content
survives a power loss and a reader never sees half a file. Each file has one
writer, which reuses one temp name (a crash leaves nothing new behind). With
`exclusive` it only creates, and several processes may race to: each writes a
temp file of its own and links it into place; the first wins, the others get
`FileExistsError` and the file is kept. `fsync_dir` makes a
created, renamed or removed name durable; `fsync_path` what was written to a
file through another descriptor (Linux flushes a file's pages whichever
descriptor asks).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fsync_path(directory)


def fsync_path(path: Path) -> bool:
    """fsync what is at `path`; False when nothing is there."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = 0o644, exclusive: bool = False
) -> None:
    body = data.encode() if isinstance(data, str) else data
    own = f".{os.getpid()}.{secrets.token_hex(4)}" if exclusive else ""
    tmp = path.with_name(f".{path.name}{own}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # FileExistsError: another writer created it first
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
