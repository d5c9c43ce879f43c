"""Segment files: names, what the log keeps in memory per segment, the fd cache, and the
completion of a cleaning round that a crash interrupted.

Files in the log directory:

- `<base>.seg`: a segment (base = 20-digit seq). It holds records with
  base <= seq < the next segment's base, in seq order; the newest is the active
  one (appended to), all others are sealed (immutable until cleaned).
- `<base>.cleaned`: a cleaning round's output while being written; not yet
  part of the log (recovery deletes it).
- `<base>-<end>.swap`: a finished output, fsynced, that replaces every
  segment with base in [base, end). Its rename from `.cleaned` is the commit
  point of a cleaning group: recovery completes it (deletes those segments,
  then renames it to `<base>.seg`, or deletes it when it is empty), exactly
  as the broker does after committing.

Only the active segment keeps an fd open for good; sealed ones are opened for a
read through `FdCache` (a small LRU), so a log of many segments does not hold
many fds. A freshly swapped-in output is `pinned` (its own fd) until its file
has its final name.
"""

from __future__ import annotations

import os
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actors.runtime.files import fsync_dir

SEGMENT = ".seg"
CLEANED = ".cleaned"
SWAP = ".swap"
FD_CACHE = 8


class CorruptLog(RuntimeError):
    """The log directory cannot be trusted: the broker must not start on it."""


def segment_name(base: int) -> str:
    return f"{base:020d}{SEGMENT}"


def cleaned_name(base: int) -> str:
    return f"{base:020d}{CLEANED}"


def swap_name(base: int, end: int) -> str:
    return f"{base:020d}-{end:020d}{SWAP}"


def parse_base(name: str) -> int:
    try:
        return int(name[: -len(SEGMENT)])
    except ValueError:
        raise CorruptLog(f"unexpected file {name} in the log directory") from None


@dataclass(eq=False)
class Segment:
    """One segment as the log tracks it. `seqs`/`offsets` list its event records (not stubs):
    16 bytes per retained record, which after cleaning means per live key."""

    base: int
    path: Path
    size: int = 0
    records: int = 0  # every record, stubs included
    last_seq: int = 0  # the highest seq of any record in it (base - 1 when empty)
    cleaned: bool = False  # written by a cleaning round since the broker started
    seqs: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    fd: int | None = None  # the active segment's, or a pinned output's


class FdCache:
    """Read-only fds of sealed segments, the least recently used closed past `capacity`."""

    def __init__(self, capacity: int = FD_CACHE) -> None:
        self._capacity = capacity
        self._fds: OrderedDict[Path, int] = OrderedDict()

    def fd(self, segment: Segment) -> int:
        if segment.fd is not None:
            return segment.fd
        fd = self._fds.get(segment.path)
        if fd is not None:
            self._fds.move_to_end(segment.path)
            return fd
        fd = os.open(segment.path, os.O_RDONLY)
        self._fds[segment.path] = fd
        while len(self._fds) > self._capacity:
            _path, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, path: Path) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def complete_interrupted_cleaning(directory: Path) -> list[str]:
    """Delete unfinished outputs and complete committed swaps, before the log is scanned.
    Returns what was done, one line per file, for the recovery log line."""
    done: list[str] = []
    names = sorted(p.name for p in directory.iterdir())
    for name in names:
        if name.endswith(CLEANED):
            (directory / name).unlink()
            done.append(f"discarded {name}")
    if done:
        fsync_dir(directory)
    for name in (n for n in names if n.endswith(SWAP)):
        finish_swap(directory, name)
        done.append(f"completed {name}")
    return done


def finish_swap(directory: Path, name: str, between: Callable[[], None] | None = None) -> None:
    """Replace the segments a committed `<base>-<end>.swap` covers by it: delete them, make
    that durable, then give the swap its final name (or delete it when it is empty)."""
    try:
        base_text, end_text = name[: -len(SWAP)].split("-")
        base, end = int(base_text), int(end_text)
    except ValueError:
        raise CorruptLog(f"unexpected file {name} in the log directory") from None
    for seg in sorted(directory.glob(f"*{SEGMENT}")):
        if base <= parse_base(seg.name) < end:
            seg.unlink()
    fsync_dir(directory)
    if between is not None:
        between()
    swap = directory / name
    if swap.stat().st_size:
        os.replace(swap, directory / segment_name(base))
    else:
        swap.unlink()
    fsync_dir(directory)
