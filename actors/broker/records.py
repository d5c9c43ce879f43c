"""The on-disk record format of the broker's log, and the scan that validates it.

    record = body_len:u32  crc:u32  body
    body   = version:u8 (=1)  kind:u8 (=1, event)  seq:u64  event_id:16  envelope (msgpack)
    crc    = CRC-32 (zlib) of body_len's 4 bytes followed by body

All integers are big-endian. A record is valid when its header is whole, its
body_len is within [BODY_MIN, BODY_MAX], its body is whole, the CRC matches,
version and kind are known and its seq is the previous record's plus one.
`scan` stops at the first invalid record and says where and why: the caller
truncates there (newest segment) or refuses to start (sealed segment).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 1
KIND_EVENT = 1

HEADER = struct.Struct(">II")
BODY_PREFIX = struct.Struct(">BBQ16s")
BODY_MIN = BODY_PREFIX.size + 1
BODY_MAX = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Scanned:
    """What a scan found: the valid records' (seq, event_id, offset), where validity ends, and why."""

    records: list[tuple[int, bytes, int]]
    valid_end: int
    problem: str | None


def encode_record(seq: int, event_id: bytes, envelope: bytes) -> bytes:
    body = BODY_PREFIX.pack(VERSION, KIND_EVENT, seq, event_id) + envelope
    length = len(body)
    if length > BODY_MAX:
        raise ValueError(f"record body of {length} bytes exceeds {BODY_MAX}")
    crc = zlib.crc32(body, zlib.crc32(length.to_bytes(4, "big")))
    return HEADER.pack(length, crc) + body


def decode_envelope(record: memoryview | bytes) -> bytes:
    """The envelope bytes of one whole record (already validated by a scan)."""
    return bytes(record[HEADER.size + BODY_PREFIX.size :])


def scan(data: bytes | memoryview, first_seq: int) -> Scanned:
    """Validate records from offset 0; `first_seq` is the seq the first record must carry."""
    view = memoryview(data)
    size = len(view)
    records: list[tuple[int, bytes, int]] = []
    offset = 0
    expected = first_seq
    while offset < size:
        if size - offset < HEADER.size:
            return Scanned(records, offset, f"short header at offset {offset}")
        length, crc = HEADER.unpack_from(view, offset)
        if not BODY_MIN <= length <= BODY_MAX:
            return Scanned(records, offset, f"body length {length} out of range at offset {offset}")
        start = offset + HEADER.size
        end = start + length
        if end > size:
            return Scanned(records, offset, f"short body at offset {offset}")
        body = view[start:end]
        if zlib.crc32(body, zlib.crc32(length.to_bytes(4, "big"))) != crc:
            return Scanned(records, offset, f"CRC mismatch at offset {offset}")
        version, kind, seq, event_id = BODY_PREFIX.unpack_from(body)
        if version != VERSION or kind != KIND_EVENT:
            return Scanned(records, offset, f"unknown version/kind {version}/{kind} at offset {offset}")
        if seq != expected:
            return Scanned(records, offset, f"seq {seq} where {expected} was due at offset {offset}")
        records.append((seq, bytes(event_id), offset))
        expected += 1
        offset = end
    return Scanned(records, offset, None)


def split_records(data: bytes | memoryview) -> list[tuple[int, bytes]]:
    """(seq, envelope) of each record in a run of whole, already-validated records."""
    view = memoryview(data)
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset + HEADER.size <= len(view):
        length, _crc = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        seq = BODY_PREFIX.unpack_from(view, start)[2]
        out.append((int(seq), bytes(view[start + BODY_PREFIX.size : start + length])))
        offset = start + length
    return out
