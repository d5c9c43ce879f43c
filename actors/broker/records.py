"""The on-disk record format of the broker's log (version 2), and the scan that validates it.

    record = body_len:u32  crc:u32  body
    body   = version:u8 (=2)  flags:u8  seq:u64  stored_at:u64  event_id:16  key_len:u8  key  envelope
    flags  = bit 0: tombstone (the record ends its key)
             bit 1: stub (only the event id survives, for the dedup window: no key, no envelope)
    crc    = CRC-32 (zlib) of body_len's 4 bytes followed by body

All integers are big-endian; `stored_at` is milliseconds since the epoch (what
tombstone retention and a duration dedup window count from); `key` is the
envelope's compaction key (UTF-8) and `envelope` its msgpack bytes. An event
record has a key and an envelope; a stub has neither and is never a tombstone.

A record is valid when its header is whole, body_len is within [BODY_MIN,
BODY_MAX], its body is whole, the CRC matches, version and flags are known and
its seq is above the previous record's (gaps are normal: compaction removes
records) and below the next segment's base. `Scanner` walks a buffer (an mmap
of a segment: nothing is read into memory as a whole), yields each valid
record and stops at the first invalid one, saying where and why: the caller
truncates there (newest segment) or refuses to start (sealed segment). A
CRC-valid record of another version is reported as `foreign_version`, so a
log written by format 1 is refused rather than truncated away.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

VERSION = 2
TOMBSTONE = 0x01
STUB = 0x02
_KNOWN_FLAGS = TOMBSTONE | STUB

HEADER = struct.Struct(">II")
PREFIX = struct.Struct(">BBQQ16sB")
BODY_MIN = PREFIX.size
BODY_MAX = 2 * 1024 * 1024
SEQ_LIMIT = 2**64  # above every u64 seq: the bound of a scan no next segment limits
_VERSION_AT = HEADER.size


class Record(NamedTuple):
    """One valid record as a scan saw it: where it lies and what compaction needs of it."""

    seq: int
    flags: int
    stored_at: int
    event_id: bytes
    key: bytes
    offset: int
    end: int

    @property
    def stub(self) -> bool:
        return bool(self.flags & STUB)

    @property
    def tombstone(self) -> bool:
        return bool(self.flags & TOMBSTONE)


def _frame(body: bytes) -> bytes:
    length = len(body)
    if length > BODY_MAX:
        raise ValueError(f"record body of {length} bytes exceeds {BODY_MAX}")
    crc = zlib.crc32(body, zlib.crc32(length.to_bytes(4, "big")))
    return HEADER.pack(length, crc) + body


def encode_record(
    seq: int, stored_at: int, event_id: bytes, key: bytes, envelope: bytes, *, tombstone: bool
) -> bytes:
    if not 0 < len(key) <= 255 or not envelope:
        raise ValueError("an event record needs a key of 1..255 bytes and an envelope")
    flags = TOMBSTONE if tombstone else 0
    return _frame(PREFIX.pack(VERSION, flags, seq, stored_at, event_id, len(key)) + key + envelope)


def encode_stub(seq: int, stored_at: int, event_id: bytes) -> bytes:
    return _frame(PREFIX.pack(VERSION, STUB, seq, stored_at, event_id, 0))


class Scanner:
    """Iterate the valid records of `data` from offset 0; afterwards `valid_end` and `problem`
    (None when the whole buffer was valid) say where and why the scan stopped. Use it as a
    context manager over an mmap, so its view is released before the map is closed.

    `after`: every seq must be above it (the previous segment's last seq); `below`: every
    seq must be under it (the next segment's base), when given."""

    def __init__(
        self, data: bytes | memoryview | mmap.mmap, *, after: int = 0, below: int | None = None
    ) -> None:
        self._view = memoryview(data)
        self._after = after
        self._below = below
        self.valid_end = 0
        self.problem: str | None = None
        self.foreign_version: int | None = None
        self.last_seq = after

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        # Before the caller unmaps the buffer, even when the iteration stopped half-way.
        self._view.release()

    def __iter__(self) -> Iterator[Record]:
        view = self._view
        size = len(view)
        offset = 0
        previous = self._after
        below = SEQ_LIMIT if self._below is None else self._below
        crc32, header_at, prefix_at = zlib.crc32, HEADER.unpack_from, PREFIX.unpack_from
        header_size, prefix_size, make = HEADER.size, PREFIX.size, Record._make
        try:
            while offset < size:
                if size - offset < header_size:
                    self.problem = f"short header at offset {offset}"
                    return
                length, crc = header_at(view, offset)
                if not 1 <= length <= BODY_MAX:
                    self.problem = f"body length {length} out of range at offset {offset}"
                    return
                start = offset + header_size
                end = start + length
                if end > size:
                    self.problem = f"short body at offset {offset}"
                    return
                if crc32(view[start:end], crc32(view[offset : offset + 4])) != crc:
                    self.problem = f"CRC mismatch at offset {offset}"
                    return
                if view[start] != VERSION:
                    self.foreign_version = view[start]
                    self.problem = f"record format {view[start]} at offset {offset}"
                    return
                if length < BODY_MIN:
                    self.problem = f"body length {length} too short at offset {offset}"
                    return
                _version, flags, seq, stored_at, event_id, key_len = prefix_at(view, start)
                # The two shapes every healthy log is made of, checked inline (this loop is
                # the cleaner's and recovery's cost per record); anything else gets the
                # full check and its reason.
                if not (
                    previous < seq < below
                    and (
                        ((flags == 0 or flags == TOMBSTONE) and 0 < key_len < length - prefix_size)
                        or (flags == STUB and key_len == 0 and length == prefix_size)
                    )
                ):
                    problem = self._check(flags, key_len, length, seq, previous)
                    assert problem is not None, "the fast check refused a valid record"
                    self.problem = f"{problem} at offset {offset}"
                    return
                key_at = start + prefix_size
                yield make(
                    (seq, flags, stored_at, event_id, bytes(view[key_at : key_at + key_len]), offset, end)
                )
                previous = seq
                offset = self.valid_end = end
                self.last_seq = seq
        finally:
            self._view.release()

    def _check(self, flags: int, key_len: int, length: int, seq: int, previous: int) -> str | None:
        if flags & ~_KNOWN_FLAGS or flags == TOMBSTONE | STUB:
            return f"unknown flags {flags:#x}"
        if flags & STUB:
            if key_len or length != PREFIX.size:
                return "stub with a key or an envelope"
        elif not key_len or length <= PREFIX.size + key_len:
            return "event without a key or an envelope"
        if seq <= previous:
            return f"seq {seq} not above {previous}"
        if self._below is not None and seq >= self._below:
            return f"seq {seq} not below the next segment's base {self._below}"
        return None


def parse_events(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(seq, key, envelope) of each event record in a run of whole, already-validated records;
    stubs are passed over."""
    view = memoryview(data)
    out: list[tuple[int, bytes, bytes]] = []
    offset = 0
    while offset + HEADER.size <= len(view):
        length, _crc = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        _version, flags, seq, _at, _eid, key_len = PREFIX.unpack_from(view, start)
        if not flags & STUB:
            key_at = start + PREFIX.size
            env_at = key_at + key_len
            out.append((int(seq), bytes(view[key_at:env_at]), bytes(view[env_at : start + length])))
        offset = start + length
    return out
