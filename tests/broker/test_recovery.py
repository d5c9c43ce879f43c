"""Log recovery: a torn or garbage tail is cut at the first bad record; sealed segments must be clean."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest

from actors.broker.log import CorruptLog, EventLog
from actors.broker.records import encode_record, scan

RECORDS = 40


def _payload(seq: int) -> bytes:
    return f"envelope-{seq}-".encode() * (seq % 5 + 1)


def _records() -> tuple[bytes, list[int]]:
    """A segment of RECORDS records and the offset where each record ends."""
    data = b""
    ends = []
    for seq in range(1, RECORDS + 1):
        data += encode_record(seq, uuid.UUID(int=seq).bytes, _payload(seq))
        ends.append(len(data))
    return data, ends


def _whole_records_in(size: int, ends: list[int]) -> int:
    return sum(1 for end in ends if end <= size)


def test_scan_recovers_exactly_the_whole_record_prefix_at_every_truncation_offset() -> None:
    data, ends = _records()
    # Every byte offset of the last ten records (and the rest of the file, which is cheap).
    for size in range(len(data) + 1):
        found = scan(data[:size], 1)
        whole = _whole_records_in(size, ends)
        assert len(found.records) == whole, size
        assert found.valid_end == (ends[whole - 1] if whole else 0)
        assert (found.problem is None) == (size == found.valid_end)


@pytest.mark.parametrize("kind", ["zeros", "random", "copy"])
def test_scan_ignores_garbage_appended_after_a_truncated_tail(kind: str) -> None:
    data, ends = _records()
    rng = random.Random(kind)
    for _ in range(400):
        size = rng.randrange(ends[-10], len(data) + 1)
        n = rng.randrange(1, 300)
        if kind == "zeros":
            garbage = bytes(n)
        elif kind == "random":
            garbage = rng.randbytes(n)
        else:  # a whole, valid-looking record from elsewhere: wrong seq
            garbage = data[: ends[0]]
        found = scan(data[:size] + garbage, 1)
        whole = _whole_records_in(size, ends)
        assert len(found.records) == whole
        assert [seq for seq, _eid, _off in found.records] == list(range(1, whole + 1))


def _write_log(directory: Path, count: int, segment_bytes: int = 1 << 30) -> list[bytes]:
    log = EventLog.open(directory, segment_bytes=segment_bytes)
    items = [(uuid.UUID(int=i).bytes, _payload(i)) for i in range(1, count + 1)]
    for i in range(0, count, 7):
        log.append(items[i : i + 7])
    EventLog.sync_fds(log.take_dirty())
    log.close()
    return [eid for eid, _ in items]


def test_reopened_log_truncates_a_torn_tail_and_keeps_appending(tmp_path: Path) -> None:
    ids = _write_log(tmp_path, 30)
    (segment,) = sorted(tmp_path.iterdir())
    size = segment.stat().st_size
    os.truncate(segment, size - 5)
    with segment.open("ab") as f:
        f.write(b"\x00" * 100 + os.urandom(50))
    log = EventLog.open(tmp_path)
    try:
        assert log.head == 29
        assert log.recovery.truncated_bytes > 0
        assert log.seq_of(ids[28]) == 29
        assert log.seq_of(ids[29]) is None
        assert log.append([(ids[29], b"again")]) == [30]
        assert [seq for seq, _ in log.read(0, 100, 30)] == list(range(1, 31))
        assert log.read(29, 10, 30) == [(30, b"again")]
    finally:
        log.close()


def test_reads_span_segments_and_recovery_checks_each_one(tmp_path: Path) -> None:
    _write_log(tmp_path, 60, segment_bytes=400)
    segments = sorted(tmp_path.iterdir())
    assert len(segments) > 3
    log = EventLog.open(tmp_path, segment_bytes=400)
    try:
        assert log.head == 60
        got: list[int] = []
        while len(got) < 60:
            got += [seq for seq, _ in log.read(len(got), 1000, 60)]
        assert got == list(range(1, 61))
        assert log.read(59, 10, 60) == [(60, _payload(60))]
    finally:
        log.close()


def test_a_corrupt_sealed_segment_stops_recovery_with_a_clear_error(tmp_path: Path) -> None:
    _write_log(tmp_path, 60, segment_bytes=400)
    sealed = sorted(tmp_path.iterdir())[1]
    data = bytearray(sealed.read_bytes())
    data[20] ^= 0xFF
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptLog, match=sealed.name):
        EventLog.open(tmp_path, segment_bytes=400)


def test_a_missing_segment_stops_recovery(tmp_path: Path) -> None:
    _write_log(tmp_path, 60, segment_bytes=400)
    sorted(tmp_path.iterdir())[1].unlink()
    with pytest.raises(CorruptLog, match="expected"):
        EventLog.open(tmp_path, segment_bytes=400)


def test_reopening_at_every_byte_offset_of_the_last_records_recovers_the_prefix(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    _write_log(source, 12)
    (segment,) = sorted(source.iterdir())
    data = segment.read_bytes()
    found = scan(data, 1)
    start = found.records[-3][2]  # every offset within the last three records
    work = tmp_path / "work"
    work.mkdir()
    target = work / segment.name
    for size in range(start, len(data) + 1):
        target.write_bytes(data[:size] + b"\xff" * (size % 3))
        log = EventLog.open(work)
        try:
            whole = sum(1 for _s, _e, off in found.records if off < size) - (
                0 if size == len(data) or any(off == size for _s, _e, off in found.records) else 1
            )
            assert log.head == whole, size
            assert target.stat().st_size == (
                found.records[whole][2] if whole < len(found.records) else len(data)
            )
        finally:
            log.close()
