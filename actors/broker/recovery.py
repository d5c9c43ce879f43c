"""Opening a log directory: what a restart reads, checks and repairs before the broker serves.

In order:

1. complete or discard an interrupted cleaning round (`segments`);
2. refuse a log written by another record format (`IncompatibleLog`, with one
   line saying to start from an empty data dir), before anything is cut;
3. scan every segment through mmap (nothing is read into memory as a whole):
   seqs must grow strictly across the log, gaps allowed; any invalid record in
   a sealed segment is `CorruptLog` (the broker refuses to start); in the newest
   segment, zeros from its first invalid record to the end of the file are the
   space the log preallocated (`actors.broker.log`) and stay; anything else
   there is a torn tail: the file is truncated at that record and fsynced.

It keeps only what the live log needs: the key index, the dedup window (bounded
by the window while scanning, too) and 16 bytes per retained record. After
cleaning that is per live key plus the active segment, which is what the number
of records scanned (`Recovery.records`) then follows.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from actors.broker.index import DedupWindow, KeyIndex
from actors.broker.records import Scanner
from actors.broker.segments import (
    SEGMENT,
    CorruptLog,
    Segment,
    complete_interrupted_cleaning,
    parse_base,
)


class IncompatibleLog(CorruptLog):
    """The log was written by another record format."""


@dataclass(frozen=True, slots=True)
class Recovery:
    head: int
    segments: int
    records: int  # records scanned, stubs included
    keys: int
    truncated_bytes: int
    problem: str | None
    completed: tuple[str, ...]  # what recovery did about an interrupted cleaning round


@dataclass
class Recovered:
    segments: list[Segment]  # the newest with its fd open for appending
    active_dead: int  # records of the newest segment a newer record supersedes
    recovery: Recovery


def recover(directory: Path, index: KeyIndex, dedup: DedupWindow, now_ms: int) -> Recovered:
    """Fill `index` and `dedup` from the segments in `directory` and return them."""
    completed = complete_interrupted_cleaning(directory)
    paths = sorted(directory.iterdir())
    for path in paths:
        if not path.name.endswith(SEGMENT):
            raise CorruptLog(f"unexpected file {path.name} in the log directory")
    bases = [parse_base(p.name) for p in paths]
    segments: list[Segment] = []
    truncated, problem, scanned, previous, dead = 0, None, 0, 0, 0
    for i, (base, path) in enumerate(zip(bases, paths, strict=True)):
        newest = i == len(paths) - 1
        if base <= previous:
            raise CorruptLog(f"segment {path.name} starts at or below seq {previous}, already stored")
        segment = Segment(base, path, last_seq=base - 1)
        scan, dead = _scan_into(segment, previous, None if newest else bases[i + 1], index, dedup, now_ms)
        scanned += segment.records
        if scan.foreign_version is not None and scan.valid_end == 0:
            raise IncompatibleLog(
                f"the log in {directory} was written by record format {scan.foreign_version}; "
                "this broker reads format 2: start from an empty data dir"
            )
        if scan.problem is not None and not newest:
            raise CorruptLog(f"sealed segment {path.name} is corrupt: {scan.problem}")
        if scan.problem is not None:
            torn = _torn_bytes(path, scan.valid_end)
            if torn:
                truncated, problem = torn, scan.problem
                _truncate(path, scan.valid_end)
            segment.size = scan.valid_end
        segments.append(segment)
        previous = segment.last_seq
    head = max(previous, segments[-1].base - 1) if segments else 0
    if segments:
        segments[-1].fd = os.open(segments[-1].path, os.O_RDWR)
    dedup.evict(head, now_ms)
    recovery = Recovery(head, len(segments), scanned, index.keys, truncated, problem, tuple(completed))
    return Recovered(segments, dead, recovery)


def _scan_into(
    segment: Segment,
    previous: int,
    below: int | None,
    index: KeyIndex,
    dedup: DedupWindow,
    now_ms: int,
) -> tuple[Scanner, int]:
    """Scan one segment into `segment`, `index` and `dedup`; also how many of its records a
    later one in it supersedes."""
    segment.size = segment.path.stat().st_size
    dead = 0
    if not segment.size:
        return Scanner(b"", after=previous, below=below), dead
    with (
        segment.path.open("rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
        Scanner(data, after=previous, below=below) as scan,
    ):
        for record in scan:
            segment.records += 1
            segment.last_seq = record.seq
            dedup.add(record.event_id, record.seq, record.stored_at)
            dedup.evict(record.seq, now_ms)
            if record.stub:
                continue
            segment.seqs.append(record.seq)
            segment.offsets.append(record.offset)
            superseded = index.put(
                record.key, record.seq, tombstone=record.tombstone, stored_at=record.stored_at
            )
            if superseded is not None and superseded >= segment.base:
                dead += 1
    return scan, dead


def _torn_bytes(path: Path, end: int) -> int:
    """How many bytes after `end` are not zeros, up to the last one that is not (0: all of
    them are preallocated space)."""
    torn = 0
    with path.open("rb") as f:
        f.seek(end)
        offset = end
        while chunk := f.read(1 << 20):
            kept = len(chunk.rstrip(b"\0"))
            if kept:
                torn = offset + kept - end
            offset += len(chunk)
    return torn


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
