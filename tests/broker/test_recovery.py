"""Log recovery: a torn or garbage tail is cut at the first bad record, gapped seqs are normal,
sealed segments must be clean, and a log of another record format is refused."""

from __future__ import annotations

import os
import random
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from actors.broker.log import Append, EventLog
from actors.broker.records import (
    HEADER,
    PREFIX,
    STUB,
    TOMBSTONE,
    VERSION,
    Scanner,
    encode_record,
    encode_stub,
)
from actors.broker.recovery import IncompatibleLog
from actors.broker.segments import CorruptLog, segment_name

RECORDS = 40


def _payload(seq: int) -> bytes:
    return f"envelope-{seq}-".encode() * (seq % 5 + 1)


def _eid(n: int) -> bytes:
    return uuid.UUID(int=n).bytes


def _records(gap: int = 1) -> tuple[bytes, list[int], list[int]]:
    """A segment of RECORDS records (seqs `gap` apart, every fifth a stub), their seqs and ends."""
    data = b""
    seqs, ends = [], []
    for i in range(1, RECORDS + 1):
        seq = i * gap
        if i % 5:
            key = b"account:%d" % (i % 7)
            data += encode_record(seq, 1000 + i, _eid(seq), key, _payload(seq), tombstone=i % 9 == 0)
        else:
            data += encode_stub(seq, 1000 + i, _eid(seq))
        seqs.append(seq)
        ends.append(len(data))
    return data, seqs, ends


def _scan(data: bytes, after: int = 0) -> tuple[list[int], Scanner]:
    scan = Scanner(data, after=after)
    return [r.seq for r in scan], scan


@pytest.mark.parametrize("gap", [1, 3])
def test_scan_recovers_exactly_the_whole_record_prefix_at_every_truncation_offset(gap: int) -> None:
    data, seqs, ends = _records(gap)
    for size in range(len(data) + 1):
        got, scan = _scan(data[:size])
        whole = sum(1 for end in ends if end <= size)
        assert got == seqs[:whole], size
        assert scan.valid_end == (ends[whole - 1] if whole else 0)
        assert (scan.problem is None) == (size == scan.valid_end)


@pytest.mark.parametrize("kind", ["zeros", "random", "copy"])
def test_scan_ignores_garbage_appended_after_a_truncated_tail(kind: str) -> None:
    data, seqs, ends = _records(gap=2)
    rng = random.Random(kind)
    for _ in range(400):
        size = rng.randrange(ends[-10], len(data) + 1)
        n = rng.randrange(1, 300)
        if kind == "zeros":
            garbage = bytes(n)
        elif kind == "random":
            garbage = rng.randbytes(n)
        else:  # a whole, valid-looking record from elsewhere: its seq is not above the last one
            garbage = data[: ends[0]]
        got = _scan(data[:size] + garbage)[0]
        assert got == seqs[: sum(1 for end in ends if end <= size)]


def test_scan_refuses_seqs_that_do_not_grow_or_cross_the_next_segment() -> None:
    one = encode_record(5, 1, _eid(1), b"account:a", b"x", tombstone=False)
    same = encode_record(5, 1, _eid(2), b"account:a", b"y", tombstone=False)
    assert _scan(one + same)[0] == [5]
    assert _scan(one, after=5)[0] == []
    scan = Scanner(one, below=5)
    assert [r.seq for r in scan] == []
    assert scan.problem is not None
    assert "next segment" in scan.problem


@pytest.mark.parametrize("flags", range(8))
@pytest.mark.parametrize(
    ("key", "envelope"), [(b"", b""), (b"", b"x"), (b"account:a", b""), (b"account:a", b"x")]
)
def test_scan_accepts_exactly_the_record_shapes_the_format_allows(
    flags: int, key: bytes, envelope: bytes
) -> None:
    """CRC-valid records of every flags/key/envelope shape: an event (plain or tombstone) has a
    key and an envelope, a stub neither; anything else stops the scan and says why."""
    body = PREFIX.pack(VERSION, flags, 7, 1000, _eid(7), len(key)) + key + envelope
    data = HEADER.pack(len(body), zlib.crc32(body, zlib.crc32(len(body).to_bytes(4, "big")))) + body
    valid = (flags in (0, TOMBSTONE) and key and envelope) or (flags == STUB and not key and not envelope)
    got, scan = _scan(data)
    if valid:
        assert got == [7]
        assert scan.problem is None
    else:
        assert got == []
        assert scan.problem is not None
        assert "at offset 0" in scan.problem


def _write_log(directory: Path, count: int, segment_bytes: int = 1 << 16, keys: int = 1000) -> EventLog:
    log = EventLog.open(directory, segment_bytes=segment_bytes)
    items = [Append(_eid(i), b"account:%d" % (i % keys), False, _payload(i)) for i in range(1, count + 1)]
    for i in range(0, count, 7):
        log.append(items[i : i + 7], now_ms=1000)
    EventLog.sync_fds(log.take_dirty())
    return log


def _read_all(log: EventLog) -> list[tuple[int, bytes, bytes]]:
    got: list[tuple[int, bytes, bytes]] = []
    while chunk := log.read(got[-1][0] if got else 0, 1000, log.head):
        got += chunk
    return got


def _records_end(segment: Path) -> int:
    """Where the segment's records end (the file goes on with preallocated zeros)."""
    _seqs, scan = _scan(segment.read_bytes())
    return scan.valid_end


def test_reopened_log_truncates_a_torn_tail_and_keeps_appending(tmp_path: Path) -> None:
    _write_log(tmp_path, 30).close()
    (segment,) = sorted(tmp_path.iterdir())
    with segment.open("r+b") as f:
        _ = f.seek(_records_end(segment) - 5)  # the last record torn, garbage after zeros
        _ = f.write(b"\x00" * 105 + os.urandom(50))
    log = EventLog.open(tmp_path)
    try:
        assert log.head == 29
        assert log.recovery.truncated_bytes > 0
        assert log.seq_of(_eid(29)) == 29
        assert log.seq_of(_eid(30)) is None
        assert log.append([Append(_eid(30), b"account:x", False, b"again")], now_ms=2000) == [30]
        assert [seq for seq, _k, _e in _read_all(log)] == list(range(1, 31))
        assert log.read(29, 10, 30) == [(30, b"account:x", b"again")]
    finally:
        log.close()


def test_recovery_accepts_gapped_seqs_and_truncates_a_torn_tail_after_them(tmp_path: Path) -> None:
    sealed, seqs, _ends = _records(gap=3)  # seqs 3, 6, ... 120
    (tmp_path / segment_name(1)).write_bytes(sealed)
    newest = encode_record(200, 5, _eid(200), b"account:n", b"n1", tombstone=False)
    newest += encode_record(205, 5, _eid(205), b"account:n", b"n2", tombstone=False)
    (tmp_path / segment_name(150)).write_bytes(newest + newest[:-3])  # a torn copy after it
    log = EventLog.open(tmp_path)
    try:
        assert log.head == 205
        assert log.recovery.truncated_bytes == len(newest) - 3
        got = [seq for seq, _k, _e in _read_all(log)]
        assert got == [s for i, s in enumerate(seqs, start=1) if i % 5] + [200, 205]
        assert log.seq_of(_eid(15)) == 15  # a stub still answers for its event id
        assert log.append([Append(_eid(1), b"account:m", False, b"m")], now_ms=6) == [206]
    finally:
        log.close()


def test_an_empty_newest_segment_keeps_the_head_its_name_gives(tmp_path: Path) -> None:
    first = encode_record(3, 1, _eid(3), b"account:a", b"x", tombstone=False)
    (tmp_path / segment_name(1)).write_bytes(first)
    (tmp_path / segment_name(10)).write_bytes(b"")
    log = EventLog.open(tmp_path)
    try:
        assert log.head == 9
        assert log.append([Append(_eid(4), b"account:a", False, b"y")], now_ms=2) == [10]
    finally:
        log.close()


def test_reads_span_segments_and_recovery_checks_each_one(tmp_path: Path) -> None:
    _write_log(tmp_path, 60, segment_bytes=400).close()
    assert len(list(tmp_path.iterdir())) > 3
    log = EventLog.open(tmp_path, segment_bytes=400)
    try:
        assert log.head == 60
        assert [seq for seq, _k, _e in _read_all(log)] == list(range(1, 61))
        assert log.read(59, 10, 60) == [(60, b"account:60", _payload(60))]
        assert log.read(30, 10, 30) == []
    finally:
        log.close()


def test_a_corrupt_sealed_segment_stops_recovery_with_a_clear_error(tmp_path: Path) -> None:
    _write_log(tmp_path, 60, segment_bytes=400).close()
    sealed = sorted(tmp_path.iterdir())[1]
    data = bytearray(sealed.read_bytes())
    data[20] ^= 0xFF
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptLog, match=sealed.name):
        EventLog.open(tmp_path, segment_bytes=400)


@pytest.mark.parametrize("damage", ["overlap", "stray_file"])
def test_segments_that_overlap_or_foreign_files_stop_recovery(tmp_path: Path, damage: str) -> None:
    _write_log(tmp_path, 60, segment_bytes=400).close()
    first, second = sorted(tmp_path.iterdir())[:2]
    if damage == "overlap":  # a copy of the first segment, sealed under a later name
        (tmp_path / segment_name(int(second.stem) + 1)).write_bytes(first.read_bytes())
    else:
        (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorruptLog):
        EventLog.open(tmp_path, segment_bytes=400)


def _format_1_record(seq: int) -> bytes:
    body = struct.pack(">BBQ16s", 1, 1, seq, _eid(seq)) + b"\x80"
    crc = zlib.crc32(body, zlib.crc32(len(body).to_bytes(4, "big")))
    return struct.pack(">II", len(body), crc) + body


def test_a_log_written_by_format_1_is_refused_and_left_untouched(tmp_path: Path) -> None:
    segment = tmp_path / segment_name(1)
    data = b"".join(_format_1_record(seq) for seq in range(1, 4))
    segment.write_bytes(data)
    with pytest.raises(IncompatibleLog, match=r"format 1.*start from an empty data dir"):
        EventLog.open(tmp_path)
    assert segment.read_bytes() == data


def test_reopening_at_every_byte_offset_of_the_last_records_recovers_the_prefix(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _write_log(source, 12).close()
    (segment,) = sorted(source.iterdir())
    data = segment.read_bytes()[: _records_end(segment)]
    records = list(Scanner(data))
    work = tmp_path / "work"
    work.mkdir()
    target = work / segment.name
    for size in range(records[-3].offset, len(data) + 1):
        target.write_bytes(data[:size] + b"\xff" * (size % 3))
        log = EventLog.open(work, segment_bytes=1 << 16)
        try:
            whole = [r for r in records if r.end <= size]
            assert log.head == whole[-1].seq, size
            kept = target.read_bytes()
            assert kept[: whole[-1].end] == data[: whole[-1].end], size
            assert not kept[whole[-1].end :].strip(b"\0"), "past the records: zeros only"
        finally:
            log.close()


def test_preallocated_zeros_are_not_a_torn_tail_and_appends_fill_them_in_place(
    tmp_path: Path,
) -> None:
    _write_log(tmp_path, 20).close()
    (segment,) = sorted(tmp_path.iterdir())
    size = segment.stat().st_size
    end = _records_end(segment)
    assert size > end, "the active segment is preallocated past its records"
    log = EventLog.open(tmp_path, segment_bytes=1 << 16)
    try:
        assert (log.head, log.recovery.truncated_bytes, log.recovery.problem) == (20, 0, None)
        assert log.append([Append(_eid(21), b"account:x", False, b"next")], now_ms=2000) == [21]
        EventLog.sync_fds(log.take_dirty())
        assert segment.stat().st_size == size
        assert _scan(segment.read_bytes())[0] == list(range(1, 22))
        assert log.roll()
        assert segment.stat().st_size == _records_end(segment), "sealed: cut to its records"
    finally:
        log.close()
