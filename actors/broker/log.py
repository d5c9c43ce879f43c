"""The broker's log: a compacted, keyed, append-only log in segment files; recovery and reads.

Contract (single owner; every method runs on the owner's thread except
`sync_fds` and the cleaner's functions, which the owner hands to its threads):

- `append` writes records (page cache only) and returns their seqs; they are
  durable once a `sync_fds` on fds taken (`take_dirty`) after the append has
  returned. Nothing here retries a failed fdatasync: the error propagates and
  the process must die. The active segment rolls past `segment_bytes`, or
  past an eighth of it once three quarters of its records are superseded (so
  the uncleaned tail stays small when few keys change often); the old one is
  cut to its records and fdatasynced first and the new one's name made durable
  (directory fsync).
- The active segment's file is preallocated to `segment_bytes` (zeros) and
  written in place at its logical end, as PostgreSQL does with its WAL: an
  fdatasync after an append that grows the file must also commit the new size
  through the filesystem's journal, one after a write inside the file does not
  (measured on ext4: 122-167 -> 82-86 us per 400-byte write and fdatasync).
  Recovery tells those zeros from a torn tail (`actors.broker.recovery`).
- Seqs grow strictly; after cleaning they have gaps. `read(after, limit,
  upto)` returns (seq, key, envelope) of retained records in seq order.
- `seq_of(event_id)` answers within the dedup window (`index.DedupWindow`).
- Compaction: `cleaning_due` says when a round is worth it (the sealed bytes
  written since the last round reach half of all sealed bytes, a tombstone is
  due, or the log is at rest with anything left to clean); `plan_cleaning` hands the cleaner
  (`actors.broker.cleaner`) what it needs; `apply_cleaning` swaps its outputs
  in, and `cleaning_committed` ends the round once its files are final.
- `open` recovers (`actors.broker.recovery`).
"""

from __future__ import annotations

import bisect
import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.broker.cleaner import CleanPlan, CleanResult, Input
from actors.broker.index import DedupWindow, KeyIndex
from actors.broker.records import encode_record, parse_events
from actors.broker.recovery import Recovery, recover
from actors.broker.segments import FdCache, Segment, segment_name
from actors.runtime.files import fsync_dir

SEGMENT_BYTES = 4 * 1024 * 1024
DIRTY_RATIO = 0.5
IDLE_MS = 3000  # no append for this long: the log is at rest
IOV_MAX = 1024


@dataclass(frozen=True, slots=True)
class Append:
    event_id: bytes
    key: bytes
    tombstone: bool
    envelope: bytes


def now_millis() -> int:
    return int(time.time() * 1000)


class EventLog:
    def __init__(self, directory: Path, segment_bytes: int, dedup: DedupWindow) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._segments: list[Segment] = []
        self._fds = FdCache()
        self._dirty: set[int] = set()
        self._active_dead = 0  # records of the active segment a newer record superseded
        self._round: CleanResult | None = None
        self._last_append = 0  # ms
        self.index = KeyIndex()
        self.dedup = dedup
        self.head = 0
        self.recovery = Recovery(0, 0, 0, 0, 0, None, ())

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        dedup: DedupWindow | None = None,
        now_ms: int | None = None,
    ) -> EventLog:
        directory.mkdir(parents=True, exist_ok=True)
        log = cls(directory, segment_bytes, dedup if dedup is not None else DedupWindow(count=100_000))
        found = recover(directory, log.index, log.dedup, now_millis() if now_ms is None else now_ms)
        log._segments = found.segments
        log._active_dead = found.active_dead
        log.recovery = found.recovery
        if log._segments:
            log.head = found.recovery.head
            active = log._segments[-1]
            assert active.fd is not None
            if log._preallocate(active.fd):
                os.fsync(active.fd)
        else:
            log._new_segment(1)
        return log

    def _new_segment(self, base: int) -> None:
        path = self.directory / segment_name(base)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        _ = self._preallocate(fd)
        os.fsync(fd)
        fsync_dir(self.directory)
        self._segments.append(Segment(base, path, last_seq=base - 1, fd=fd))
        self._active_dead = 0

    def _preallocate(self, fd: int) -> bool:
        """Extend the active segment's file with zeros to `segment_bytes`; False when it is
        that long already or the filesystem cannot (then appends grow the file: slower syncs)."""
        if os.fstat(fd).st_size >= self._segment_bytes:
            return False
        try:
            os.posix_fallocate(fd, 0, self._segment_bytes)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return False
            raise
        return True

    # ---- writing ------------------------------------------------------------------

    def seq_of(self, event_id: bytes) -> int | None:
        return self.dedup.get(event_id)

    def append(self, items: Sequence[Append], now_ms: int) -> list[int]:
        """Write records after the head; one write per segment touched."""
        seqs: list[int] = []
        chunk: list[bytes] = []
        segment = self._segments[-1]
        size = segment.size
        for item in items:
            if self._roll_due(segment, size):
                self._write(segment, chunk)
                chunk = []
                self._seal(segment)
                self._new_segment(self.head + 1)
                segment = self._segments[-1]
                size = 0
            self.head += 1
            record = encode_record(
                self.head, now_ms, item.event_id, item.key, item.envelope, tombstone=item.tombstone
            )
            segment.seqs.append(self.head)
            segment.offsets.append(size)
            segment.records += 1
            segment.last_seq = self.head
            size += len(record)
            chunk.append(record)
            superseded = self.index.put(item.key, self.head, tombstone=item.tombstone, stored_at=now_ms)
            if superseded is not None and superseded >= segment.base:
                self._active_dead += 1
            self.dedup.add(item.event_id, self.head, now_ms)
            seqs.append(self.head)
        self._write(segment, chunk)
        self.dedup.evict(self.head, now_ms)
        self._last_append = now_ms
        return seqs

    def _roll_due(self, segment: Segment, size: int) -> bool:
        if not segment.records:
            return False
        if size >= self._segment_bytes:
            return True
        return size >= self._segment_bytes // 8 and self._active_dead * 4 >= segment.records * 3

    def roll(self) -> bool:
        """Seal the active segment now, if it holds any record (so the cleaner may take it)."""
        active = self._segments[-1]
        if not active.records:
            return False
        self._seal(active)
        self._new_segment(self.head + 1)
        return True

    def _seal(self, segment: Segment) -> None:
        # A sealed segment must be whole on disk, and end at its last record (no preallocated
        # zeros), before its successor exists: recovery refuses a sealed segment with anything
        # else in it.
        assert segment.fd is not None
        os.ftruncate(segment.fd, segment.size)
        os.fdatasync(segment.fd)
        self._dirty.discard(segment.fd)
        os.close(segment.fd)
        segment.fd = None

    def _write(self, segment: Segment, chunk: list[bytes]) -> None:
        # pwritev at the logical end (the file is preallocated past it), not a join: no
        # transient copy of a whole batch (a long-running process keeps the heap such copies
        # grow).
        if not chunk:
            return
        fd = segment.fd
        assert fd is not None
        for start in range(0, len(chunk), IOV_MAX):
            part = chunk[start : start + IOV_MAX]
            written = os.pwritev(fd, part, segment.size)
            segment.size += written
            rest = sum(len(b) for b in part) - written
            if rest:  # a short write (rare on a file): the remainder one buffer at a time
                tail = memoryview(b"".join(part))[written:]
                while tail:
                    n = os.pwrite(fd, tail, segment.size)
                    segment.size += n
                    tail = tail[n:]
        self._dirty.add(fd)

    def take_dirty(self) -> list[int]:
        """Fds to fdatasync for what was written since the last call: duplicates, so a segment
        rolled meanwhile cannot close them under the syncing thread; `sync_fds` closes them."""
        fds = [os.dup(fd) for fd in sorted(self._dirty)]
        self._dirty.clear()
        return fds

    @staticmethod
    def sync_fds(fds: list[int]) -> None:
        try:
            for fd in fds:
                os.fdatasync(fd)
        finally:
            for fd in fds:
                os.close(fd)

    # ---- reading ------------------------------------------------------------------

    def read(self, after: int, limit: int, upto: int) -> list[tuple[int, bytes, bytes]]:
        """Up to `limit` event records with after < seq <= upto, from one segment per call."""
        segments = self._segments
        i = max(0, bisect.bisect_right(segments, after + 1, key=lambda s: s.base) - 1)
        while i < len(segments):
            segment = segments[i]
            j = bisect.bisect_right(segment.seqs, after)
            if j < len(segment.seqs):
                break
            i += 1
        else:
            return []
        n = len(segment.seqs)
        k = bisect.bisect_right(segment.seqs, upto, lo=j, hi=min(n, j + limit))
        if k == j:
            return []
        start = segment.offsets[j]
        end = segment.offsets[k] if k < n else segment.size
        fd = self._fds.fd(segment)
        return parse_events(os.pread(fd, end - start, start))

    def page(
        self, after: int, upto: int, *, prefix: bytes, limit: int, max_bytes: int, max_scan: int
    ) -> tuple[list[tuple[int, bytes]], int]:
        """(seq, envelope) of up to `limit` records with after < seq <= upto whose key starts
        with `prefix`, and the seq the page covers: past every record it looked at (at most
        `max_scan`, filtered ones included), and `upto` once nothing more is retained."""
        events: list[tuple[int, bytes]] = []
        size = scanned = 0
        pos = min(after, upto)
        while len(events) < limit and size < max_bytes and scanned < max_scan:
            chunk = self.read(pos, limit - len(events), upto)
            if not chunk:
                return events, upto  # nothing retained up to `upto`: the gap is passed too
            for seq, key, env in chunk:
                pos = seq
                scanned += 1
                if key.startswith(prefix):
                    events.append((seq, env))
                    size += len(env)
                    if size >= max_bytes:
                        break
        return events, pos

    # ---- compaction ---------------------------------------------------------------

    def cleaning_due(self, *, now_ms: int, floor: int, retention_ms: int) -> str | None:
        """Why a cleaning round should run now, or None. Rolls the active segment when it
        holds the oldest tombstone and that one is due, so a quiet log still forgets it."""
        if self._round is not None:
            return None
        active = self._segments[-1]
        oldest = self.index.oldest_tombstone()
        if oldest is not None and oldest[1] < now_ms - retention_ms and oldest[0] <= floor:
            if oldest[0] < active.base:
                return "tombstone_due"
            if self.roll():
                return "tombstone_due"
        sealed = self._segments[:-1]
        dirty = sum(s.size for s in sealed if not s.cleaned)
        if dirty and dirty >= DIRTY_RATIO * sum(s.size for s in sealed):
            return "dirty"
        if now_ms - self._last_append >= IDLE_MS and (dirty or self._active_dead):
            # Quiet now: clean what is left (superseded records in the active segment too), so
            # a log at rest holds its live keys only.
            if self._active_dead:
                self.roll()
            return "idle"
        return None

    def plan_cleaning(self, *, now_ms: int, floor: int, retention_ms: int, durable: int) -> CleanPlan:
        assert self._round is None
        sealed = self._segments[:-1]
        return CleanPlan(
            directory=self.directory,
            inputs=tuple(Input(s.base, s.path, s.size) for s in sealed),
            end=self._segments[-1].base,
            # A copy: the live index runs ahead of `durable` under load, and the rule below
            # would then keep nearly every superseded record of a busy key.
            newest=dict(self.index.newest),
            durable=durable,
            floor=floor,
            tombstone_before=now_ms - retention_ms,
            # From the durable head: should a power loss cut the tail, the window then
            # reaches back further, and must still find those records' stubs.
            window=self.dedup.floor(durable, now_ms),
            segment_bytes=self._segment_bytes,
        )

    def apply_cleaning(self, result: CleanResult, floor: int) -> bool:
        """Swap a round's outputs in, unless a consumer is now behind a tombstone it drops
        (then the caller discards the round). Until `cleaning_committed`, an output is read
        through its own fd, whatever its file is called meanwhile."""
        assert self._round is None
        if result.max_dropped_tombstone > floor:
            return False
        for out in result.outputs:
            i = next(n for n, s in enumerate(self._segments) if s.base == out.inputs[0])
            replaced = self._segments[i : i + len(out.inputs)]
            assert tuple(s.base for s in replaced) == out.inputs
            assert i + len(replaced) < len(self._segments), "the active segment is never cleaned"
            if out.path is None:
                replaced[0].cleaned = True
                continue
            for segment in replaced:
                self._fds.forget(segment.path)
            new: list[Segment] = []
            if out.records:
                fd = os.open(out.path, os.O_RDONLY)
                new.append(
                    Segment(
                        out.base, self.directory / segment_name(out.base), out.size, out.records,
                        out.last_seq, True, out.seqs, out.offsets, fd,
                    )
                )
            self._segments[i : i + len(replaced)] = new
            for key, seq in out.dropped_tombstones:
                self.index.drop_tombstone(key, seq)
        self._round = result
        return True

    def cleaning_committed(self) -> None:
        """The round's files have their final names: outputs are read by path from now on."""
        self._round = None
        for segment in self._segments[:-1]:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None

    # ---- state --------------------------------------------------------------------

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def active_end(self) -> int:
        """Where the active segment's records end in its file (preallocated zeros follow)."""
        return self._segments[-1].size

    @property
    def active_records(self) -> int:
        return self._segments[-1].records

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def open_fds(self) -> int:
        return len(self._fds) + sum(1 for s in self._segments if s.fd is not None)

    def close(self) -> None:
        for segment in self._segments:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
        self._fds.close()
