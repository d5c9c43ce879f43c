"""The broker's append-only log: segment files under a directory, recovery, reads, dedup index.

Contract (single owner; every method runs on the owner's thread except
`sync_fds`, which a worker thread may run while the owner keeps appending):

- Segments are `<base seq, 20 digits>.seg`; all but the newest are sealed. A new
  segment starts once the current one passes `segment_bytes`: the old one is
  fdatasynced first, and creating the new one fsyncs the directory so the
  file's name survives a power loss.
- `open` recovers: every sealed segment must scan clean (else `CorruptLog`, the
  broker refuses to start); the newest is truncated at its first invalid record
  and fsynced, and what was cut is reported in `recovery`.
- `append` writes records (page cache only) and returns their seqs; they are
  durable once a `sync_fds` started after the append has returned. Nothing here
  retries a failed fdatasync: the error propagates and the process must die.
- `seq_of(event_id)` answers for every record ever stored (dedup for the whole
  retention); `read(after, limit, upto)` returns (seq, envelope) in seq order.
- Retention: every record is kept (no compaction yet).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from actors.broker.records import encode_record, scan, split_records

SEGMENT_BYTES = 64 * 1024 * 1024
_SUFFIX = ".seg"


class CorruptLog(RuntimeError):
    """A sealed segment failed validation: the broker must not start on it."""


@dataclass
class _Segment:
    base: int
    path: Path
    fd: int
    size: int
    offsets: array[int] = field(default_factory=lambda: array("Q"))

    @property
    def last(self) -> int:
        return self.base + len(self.offsets) - 1


@dataclass(frozen=True, slots=True)
class Recovery:
    head: int
    segments: int
    truncated_bytes: int
    problem: str | None


def _segment_name(base: int) -> str:
    return f"{base:020d}{_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._index: dict[bytes, int] = {}
        self._dirty: set[int] = set()
        self.head = 0
        self.recovery = Recovery(0, 0, 0, None)

    @classmethod
    def open(cls, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> EventLog:
        directory.mkdir(parents=True, exist_ok=True)
        log = cls(directory, segment_bytes)
        log._recover()
        return log

    # ---- recovery -----------------------------------------------------------------

    def _recover(self) -> None:
        paths = sorted(p for p in self._dir.iterdir() if p.name.endswith(_SUFFIX))
        truncated = 0
        problem: str | None = None
        expected = 1
        for i, path in enumerate(paths):
            try:
                base = int(path.name[: -len(_SUFFIX)])
            except ValueError:
                raise CorruptLog(f"unexpected file {path.name} in the log directory") from None
            if base != expected:
                raise CorruptLog(f"segment {path.name} starts at {base}, expected {expected}")
            newest = i == len(paths) - 1
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            data = path.read_bytes()
            found = scan(data, base)
            if found.problem is not None and not newest:
                os.close(fd)
                raise CorruptLog(f"sealed segment {path.name} is corrupt: {found.problem}")
            size = len(data)
            if found.problem is not None:
                truncated = size - found.valid_end
                problem = found.problem
                os.ftruncate(fd, found.valid_end)
                os.fsync(fd)
                size = found.valid_end
            segment = _Segment(base, path, fd, size)
            for seq, event_id, offset in found.records:
                segment.offsets.append(offset)
                self._index[event_id] = seq
            self._segments.append(segment)
            expected = base + len(found.records)
        self.head = expected - 1
        if not self._segments:
            self._new_segment(1)
        self.recovery = Recovery(self.head, len(self._segments), truncated, problem)

    def _new_segment(self, base: int) -> None:
        path = self._dir / _segment_name(base)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        os.fsync(fd)
        _fsync_dir(self._dir)
        self._segments.append(_Segment(base, path, fd, 0))

    # ---- writing ------------------------------------------------------------------

    def seq_of(self, event_id: bytes) -> int | None:
        return self._index.get(event_id)

    def append(self, items: list[tuple[bytes, bytes]]) -> list[int]:
        """Write (event_id, envelope) records after the head; one write per segment touched."""
        seqs: list[int] = []
        chunk: list[bytes] = []
        segment = self._segments[-1]
        size = segment.size
        for event_id, envelope in items:
            if size >= self._segment_bytes and segment.offsets:
                self._write(segment, chunk)
                chunk = []
                # A sealed segment must be whole on disk before its successor exists, or a power
                # loss could leave a short sealed segment that recovery must refuse.
                os.fdatasync(segment.fd)
                self._new_segment(self.head + 1)
                segment = self._segments[-1]
                size = 0
            self.head += 1
            record = encode_record(self.head, event_id, envelope)
            segment.offsets.append(size)
            size += len(record)
            chunk.append(record)
            self._index[event_id] = self.head
            seqs.append(self.head)
        self._write(segment, chunk)
        return seqs

    def _write(self, segment: _Segment, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        written = os.write(segment.fd, data)
        while written < len(data):
            written += os.write(segment.fd, data[written:])
        segment.size += len(data)
        self._dirty.add(segment.fd)

    def take_dirty(self) -> list[int]:
        """The fds written since the last call; pass them to `sync_fds` (maybe in a thread)."""
        fds = sorted(self._dirty)
        self._dirty.clear()
        return fds

    @staticmethod
    def sync_fds(fds: list[int]) -> None:
        for fd in fds:
            os.fdatasync(fd)

    # ---- reading ------------------------------------------------------------------

    def read(self, after: int, limit: int, upto: int) -> list[tuple[int, bytes]]:
        """Up to `limit` records with after < seq <= upto, from one segment per call at most."""
        first = after + 1
        last = min(upto, after + limit)
        if first > last:
            return []
        segment = self._segment_for(first)
        last = min(last, segment.last)
        start = segment.offsets[first - segment.base]
        end = segment.offsets[last + 1 - segment.base] if last < segment.last else segment.size
        return split_records(os.pread(segment.fd, end - start, start))

    def _segment_for(self, seq: int) -> _Segment:
        lo, hi = 0, len(self._segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._segments[mid].base <= seq:
                lo = mid
            else:
                hi = mid - 1
        return self._segments[lo]

    def close(self) -> None:
        for segment in self._segments:
            os.close(segment.fd)
        self._segments.clear()
