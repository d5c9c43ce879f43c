"""The cleaner: one compaction round over the sealed segments (as Kafka's log cleaner does).

`clean(plan)` runs in the broker's cleaner thread. It reads every sealed
segment (mmap, one at a time), keeps each record that is still the newest of
its key, and streams the survivors into new segments, merging small
neighbours: consecutive inputs whose sizes add up to at most `segment_bytes`
become one `<base>.cleaned` file (a group of one input that loses nothing is
left as it is, never written). Runs of kept records are copied straight from
the map, so a round holds no record in memory. A record goes when:

- a newer record of its key exists and was durable when the round began (so a
  power loss can never leave a key without its newest durable record);
- it is a tombstone that is still its key's newest, was stored more than the
  tombstone retention ago, and every consumer's position is at or past it.

A dropped record whose event id is still inside the dedup window leaves a stub
(event id only), so a restart rebuilds the same window; stubs that fall out of
the window go too. Records are copied byte for byte (CRC included) after the
scan validated them.

Publishing the result is the broker actor's job (`EventLog.apply_cleaning`, on
its own thread: the in-memory swap, and a last check that no consumer is
behind a dropped tombstone), then `commit` runs here again:

1. rename each `<base>.cleaned` to `<base>-<end>.swap`, fsync the directory:
   the group's commit point, in seq order, so an older group is never
   uncommitted while a newer one (maybe holding the tombstone that superseded
   its records) is;
2. delete the inputs (`segments.finish_swap`), fsync the directory, rename the
   swap to `<base>.seg`, fsync the directory.

A crash before 1 leaves `.cleaned` files, which recovery deletes (the inputs
are intact); after 1 it leaves `.swap` files, which recovery completes. Either
way the log recovers to the same newest record per key. `step` is called at
each point a crash test stops at.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from actors.broker.index import WindowFloor
from actors.broker.records import STUB, TOMBSTONE, Record, Scanner, encode_stub
from actors.broker.segments import CorruptLog, cleaned_name, finish_swap, swap_name
from actors.runtime.files import fsync_dir

Step = Callable[[str], None]

WRITE_BUFFER = 256 * 1024


def no_step(_name: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Input:
    base: int
    path: Path
    size: int


@dataclass(frozen=True)
class CleanPlan:
    directory: Path
    inputs: tuple[Input, ...]
    end: int  # the base of the segment after the last input (the active one)
    newest: Mapping[bytes, int]  # the key index as the round began
    durable: int  # the durable head as the round began
    floor: int  # the lowest consumer position; a tombstone above it stays
    tombstone_before: int  # a tombstone stored before this (ms) has outlived its retention
    window: WindowFloor
    segment_bytes: int


@dataclass
class Output:
    base: int
    end: int
    inputs: tuple[int, ...]  # the bases of the segments it replaces
    path: Path | None  # the `.cleaned` file; None when the group was left as it is
    size: int = 0
    records: int = 0
    last_seq: int = 0
    seqs: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    dropped_tombstones: list[tuple[bytes, int]] = field(default_factory=list)


@dataclass
class CleanResult:
    outputs: list[Output]
    dropped: int = 0
    stubs: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def max_dropped_tombstone(self) -> int:
        return max((seq for o in self.outputs for _k, seq in o.dropped_tombstones), default=0)


class _Group:
    """One output being written: its file is opened only once it must differ from its
    first input (a second input joins, or the first loses a record)."""

    def __init__(self, plan: CleanPlan, first: Input) -> None:
        self.plan = plan
        self.inputs = [first]
        self.out = Output(first.base, plan.end, (), None)
        self.file: BinaryIO | None = None

    def materialize(self) -> None:
        """Open the output; what the first input kept so far is the caller's to write."""
        if self.file is None:
            self.out.path = self.plan.directory / cleaned_name(self.out.base)
            # Buffered: most of what a round writes is small (a stub, a short run of kept
            # records between two dropped ones), and one write() per WRITE_BUFFER bytes
            # replaces a syscall each; a piece larger than the buffer goes straight through.
            self.file = open(  # noqa: SIM115 - a group outlives any one block: close() or abandon()
                self.out.path, "wb", buffering=WRITE_BUFFER,
                opener=lambda path, flags: os.open(path, flags, 0o644),
            )

    def write(self, data: bytes | memoryview | mmap.mmap) -> None:
        assert self.file is not None
        self.file.write(data)

    def join(self, item: Input) -> None:
        """A further input: the output must be written, the first input in full if unchanged."""
        if self.file is None:
            self.materialize()
            first = self.inputs[0]
            assert self.out.size == first.size, "an unwritten first input kept everything"
            if first.size:
                with first.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    self.write(m)
        self.inputs.append(item)

    def close(self, end: int, result: CleanResult, step: Step) -> None:
        out = self.out
        out.end = end
        out.inputs = tuple(i.base for i in self.inputs)
        if out.last_seq == 0:
            out.last_seq = out.base - 1
        result.outputs.append(out)
        result.bytes_after += out.size
        if self.file is None:
            return  # one input that lost nothing: left as it is
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        finally:
            self.file.close()
            self.file = None
        step("cleaned_written")

    def abandon(self) -> None:
        if self.file is not None:
            # Its output is deleted: what the buffer still holds need not reach the disk, and
            # a failed flush (the disk that failed the round) must not hide the round's error.
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None


def clean(plan: CleanPlan, step: Step = no_step) -> CleanResult:
    """Write the round's outputs as `.cleaned` files (fsynced); nothing is committed yet."""
    result = CleanResult([])
    group: _Group | None = None
    previous = plan.inputs[0].base - 1 if plan.inputs else 0
    try:
        for i, item in enumerate(plan.inputs):
            if group is not None and group.out.size + item.size > plan.segment_bytes:
                group.close(item.base, result, step)
                group = None
            if group is None:
                group = _Group(plan, item)
            else:
                group.join(item)
            below = plan.inputs[i + 1].base if i + 1 < len(plan.inputs) else plan.end
            previous = _copy_survivors(plan, item, previous, below, group, result)
        if group is not None:
            group.close(plan.end, result, step)
    except Exception:
        if group is not None:
            group.abandon()
        discard(result)
        if group is not None and group.out.path is not None:
            group.out.path.unlink(missing_ok=True)
        raise
    return result


def _copy_survivors(
    plan: CleanPlan, item: Input, previous: int, below: int, group: _Group, result: CleanResult
) -> int:
    """Append what stays of `item` to the group's output (stubs made, expired tombstones
    noted); returns the input's last seq."""
    result.bytes_before += item.size
    if not item.size:
        group.materialize()  # an empty segment goes
        return previous
    out = group.out
    with (
        item.path.open("rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
        memoryview(data) as view,
        Scanner(data, after=previous, below=below) as scan,
    ):
        run = -1  # where the current run of kept records starts in the input (-1: none)
        run_end = 0
        for record in scan:
            fate, expires = _fate(plan, record)
            if expires:
                out.dropped_tombstones.append((record.key, record.seq))
            if fate == "keep":
                if run < 0:
                    run = record.offset
                if not record.flags & STUB:
                    out.seqs.append(record.seq)
                    out.offsets.append(out.size)
                out.size += record.end - record.offset
                run_end = record.end
            else:
                group.materialize()  # the first input loses a record: written from here on
                if run >= 0:
                    group.write(view[run:run_end])
                    run = -1
                if fate == "drop":
                    result.dropped += 1
                    continue
                stub = encode_stub(record.seq, record.stored_at, record.event_id)
                group.write(stub)
                out.size += len(stub)
                result.stubs += 1
            out.records += 1
            out.last_seq = record.seq
        if run >= 0 and group.file is not None:
            group.write(view[run:run_end])
        if scan.problem is not None:
            raise CorruptLog(f"sealed segment {item.path.name} is corrupt: {scan.problem}")
        return scan.last_seq


_KEEP = ("keep", False)


def _fate(plan: CleanPlan, record: Record) -> tuple[str, bool]:
    """keep, stub or drop; and whether it is an expired tombstone (its key leaves the index)."""
    seq = record.seq
    if record.flags & STUB:
        return ("keep" if plan.window.holds(seq, record.stored_at) else "drop"), False
    newest = plan.newest.get(record.key)
    if newest is None or newest < seq:
        return _KEEP  # not what the index knows: never expected, so never dropped
    if newest != seq:
        return _KEEP if newest > plan.durable else (_gone(plan, record), False)
    if record.flags & TOMBSTONE and record.stored_at < plan.tombstone_before and seq <= plan.floor:
        return _gone(plan, record), True
    return _KEEP


def _gone(plan: CleanPlan, record: Record) -> str:
    """What a record that goes leaves behind: a stub while its event id is inside the window."""
    return "stub" if plan.window.holds(record.seq, record.stored_at) else "drop"


def commit(result: CleanResult, directory: Path, step: Step = no_step) -> None:
    """Make an applied round durable and final (see the module docstring)."""
    written = [o for o in result.outputs if o.path is not None]
    for out in written:
        assert out.path is not None
        swap = directory / swap_name(out.base, out.end)
        os.replace(out.path, swap)
        fsync_dir(directory)
        out.path = swap
        step("committed")
    for out in written:
        finish_swap(directory, swap_name(out.base, out.end), between=lambda: step("inputs_deleted"))
        step("renamed")


def discard(result: CleanResult) -> None:
    """Remove the `.cleaned` files of a round that will not be applied."""
    for out in result.outputs:
        if out.path is not None:
            out.path.unlink(missing_ok=True)
            out.path = None
