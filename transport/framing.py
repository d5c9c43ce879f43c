"""The byte-level pieces of the broker's frames (see `transport.protocol` for the frames).

Length-prefixed blobs, runs of (seq, len, env), u64 fields, splitting many items
into frames of bounded size, and `ProtocolError`, which every parser raises for
bytes that do not fit (never anything else).
"""

from __future__ import annotations

import struct
from enum import IntEnum

_U64 = struct.Struct(">Q")


class ErrorCode(IntEnum):
    MALFORMED = 1  # frames do not follow the protocol; permanent
    INVALID_ENVELOPE = 2  # an envelope failed the schema check; permanent
    TOO_LARGE = 3  # too many envelopes in one request; permanent
    UNAVAILABLE = 4  # the broker cannot store now; retry
    FORBIDDEN = 5  # the peer's identity may not do this (consumer, key or request kind); permanent


class ProtocolError(ValueError):
    """Frames that do not follow the protocol. `req_id` is set when it could be read;
    `code` is what an ERR reply to it says (MALFORMED, or TOO_LARGE past a limit)."""

    def __init__(
        self, reason: str, req_id: bytes | None = None, code: ErrorCode = ErrorCode.MALFORMED
    ) -> None:
        super().__init__(reason)
        self.req_id = req_id
        self.code = code


_LEN = struct.Struct(">I")
_SEQ_LEN = struct.Struct(">QI")


def pack_blobs(blobs: list[bytes]) -> bytes:
    parts: list[bytes] = []
    for blob in blobs:
        parts.append(_LEN.pack(len(blob)))
        parts.append(blob)
    return b"".join(parts)


def unpack_blobs(data: bytes, max_count: int, req_id: bytes | None = None) -> list[bytes]:
    out: list[bytes] = []
    offset, size = 0, len(data)
    while offset < size:
        if len(out) >= max_count:
            raise ProtocolError(f"more than {max_count} items", req_id, ErrorCode.TOO_LARGE)
        if size - offset < 4:
            raise ProtocolError("truncated length prefix", req_id)
        (length,) = _LEN.unpack_from(data, offset)
        offset += 4
        if length > size - offset:
            raise ProtocolError("length prefix beyond the frame", req_id)
        out.append(data[offset : offset + length])
        offset += length
    return out


def chunk_by_size(sizes: list[int], max_count: int, max_bytes: int) -> list[tuple[int, int]]:
    """Split items into (start, end) runs of at most max_count items and about max_bytes."""
    runs: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_count or total + size > max_bytes):
            runs.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs


def pack_events(events: list[tuple[int, bytes]]) -> bytes:
    parts: list[bytes] = []
    for seq, env in events:
        parts.append(_SEQ_LEN.pack(seq, len(env)))
        parts.append(env)
    return b"".join(parts)


def unpack_events(data: bytes, req_id: bytes | None = None) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    offset, size = 0, len(data)
    while offset < size:
        if size - offset < _SEQ_LEN.size:
            raise ProtocolError("truncated event header", req_id)
        seq, length = _SEQ_LEN.unpack_from(data, offset)
        offset += _SEQ_LEN.size
        if length > size - offset:
            raise ProtocolError("event length beyond the frame", req_id)
        out.append((int(seq), data[offset : offset + length]))
        offset += length
    return tuple(out)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(frame: bytes, what: str, req_id: bytes | None = None) -> int:
    if len(frame) != 8:
        raise ProtocolError(f"{what} must be 8 bytes", req_id)
    return int(_U64.unpack(frame)[0])
