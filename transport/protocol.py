"""The broker's wire protocol, version FB1: frames, kinds and each field's meaning.

Three sockets (addresses given as CONTROL,EVENTS,ACKS):

control  ROUTER (broker) <- DEALER (clients): requests and replies, matched by req_id.
events   PUB (broker) -> SUB (subscribers): the live stream; lossy by design.
acks     PULL (broker) <- PUSH (subscribers): consumer progress; re-sent when lost.

Frames are listed in brackets, separated by commas; `a:8 b:8` without a comma
are fields packed into one frame. All integers are big-endian unsigned. `seq` (u64) is the broker's sequence
number: contiguous from 1, assigned at store time; `head` is the highest
durable (fsynced) seq, 0 for an empty log. `env` is one event envelope encoded
by `transport.codec` as the map of `core.envelope.Envelope.to_wire`.
`consumer` is a durable consumer name (UTF-8, 1..128 of [A-Za-z0-9:._-]).

Control requests (frame 0 is the tag b"FB1"; ROUTER prepends the peer identity):

    PUB   [FB1, b"PUB",  req_id:8, blobs]   blobs = (len:4, env)* : 1..MAX_BATCH envelopes,
                                            stored in order
    SYNC  [FB1, b"SYNC", req_id:8, consumer, after:8|b"", limit:4]
          registers `consumer`; asks for events with seq > after (after empty:
          the broker's recorded acked watermark for the consumer)
    PING  [FB1, b"PING", req_id:8, consumer|b""]      heartbeat; marks the consumer seen
    LIST  [FB1, b"LIST", req_id:8]                    the consumer directory

Control replies:

    OK    [FB1, b"OK",   req_id:8, receipts]   per envelope, in request order, 9 bytes:
                                               seq:8, duplicate:1 (1 = stored before under
                                               that event_id; seq is the original one).
                                               Sent only after the records are fsynced.
    EVTS  [FB1, b"EVTS", req_id:8, meta, events]   events = (seq:8, len:4, env)*
          meta = head:8 next_after:8 end:1 (one frame). Events are in seq order; seqs the
          consumer already acked may be skipped. Ask again with after=next_after
          until end=1 ("end marker": nothing durable after next_after).
    PONG  [FB1, b"PONG", req_id:8, head:8 watermark:8]  one 16-byte frame; watermark = the
                                                        consumer's acked watermark (0 if none)
    CONS  [FB1, b"CONS", req_id:8, msgpack list of {name, acked_seq, lag, last_seen, online}]
    ERR   [FB1, b"ERR",  req_id:8, code:2, reason utf8]  see ErrorCode; nothing was stored

Live stream (PUB), no tag so a SUB can filter cheaply:

    EV    [b"EV", events]          one or more events with contiguous ascending seqs
    HB    [b"HB", head:8]          every heartbeat interval; a subscriber behind head re-fetches

Acks (PUSH):

    ACK   [FB1, b"ACK", consumer, seqs]   seqs = n x seq:8, any order; the broker keeps a
                                          contiguous watermark plus the acked seqs above it
    ACK   [FB1, b"ACK", consumer, seqs, upto:8]   also: every seq <= upto is acked. A
          subscriber sends it when the broker's watermark (in PONG) went back below one the
          broker confirmed before, i.e. a crash lost acks it had already recorded

Many events travel in one frame (not a frame each): a zmq frame costs far more
to send and receive from Python than a slice of a bytes object.

Anything else is dropped and logged by the receiver; on control, a request
whose req_id can be read gets an ERR reply.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

TAG = b"FB1"

PUB = b"PUB"
SYNC = b"SYNC"
PING = b"PING"
LIST = b"LIST"
OK = b"OK"
EVTS = b"EVTS"
PONG = b"PONG"
CONS = b"CONS"
ERR = b"ERR"
ACK = b"ACK"
EV = b"EV"
HB = b"HB"

MAX_BATCH = 1000
# Senders keep a frame of many events under this; receivers accept up to sockets.MAX_FRAME_BYTES.
MAX_BODY_BYTES = 1024 * 1024
MAX_SYNC_LIMIT = 5000
MAX_ACKS = 100_000

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_RECEIPT = struct.Struct(">QB")
_EVTS_META = struct.Struct(">QQB")
_PONG = struct.Struct(">QQ")
_CONSUMER_RE = re.compile(r"[A-Za-z0-9:._-]{1,128}")


class ErrorCode(IntEnum):
    MALFORMED = 1  # frames do not follow the protocol; permanent
    INVALID_ENVELOPE = 2  # an envelope failed the schema check; permanent
    TOO_LARGE = 3  # too many envelopes or seqs in one request; permanent
    UNAVAILABLE = 4  # the broker cannot store now; retry


class ProtocolError(ValueError):
    """Frames that do not follow the protocol. `req_id` is set when it could be read;
    `code` is what an ERR reply to it says (MALFORMED, or TOO_LARGE past a limit)."""

    def __init__(
        self, reason: str, req_id: bytes | None = None, code: ErrorCode = ErrorCode.MALFORMED
    ) -> None:
        super().__init__(reason)
        self.req_id = req_id
        self.code = code


# ---- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishRequest:
    req_id: bytes
    envelopes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    req_id: bytes
    consumer: str
    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class PingRequest:
    req_id: bytes
    consumer: str | None


@dataclass(frozen=True, slots=True)
class ListRequest:
    req_id: bytes


ControlRequest = PublishRequest | SyncRequest | PingRequest | ListRequest
RequestBuilder = Callable[[bytes], list[bytes]]


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


def check_consumer(name: str) -> str:
    if not _CONSUMER_RE.fullmatch(name):
        raise ValueError(f"consumer name must be 1..128 of [A-Za-z0-9:._-], got {name[:40]!r}")
    return name


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(frame: bytes, what: str, req_id: bytes | None = None) -> int:
    if len(frame) != 8:
        raise ProtocolError(f"{what} must be 8 bytes", req_id)
    return int(_U64.unpack(frame)[0])


def _consumer(frame: bytes, req_id: bytes | None) -> str:
    try:
        return check_consumer(frame.decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(str(exc), req_id) from None


def build_publish(req_id: bytes, envelopes: list[bytes]) -> list[bytes]:
    return [TAG, PUB, req_id, pack_blobs(envelopes)]


def build_sync(req_id: bytes, consumer: str, after: int | None, limit: int) -> list[bytes]:
    return [TAG, SYNC, req_id, consumer.encode(), b"" if after is None else u64(after), _U32.pack(limit)]


def build_ping(req_id: bytes, consumer: str | None) -> list[bytes]:
    return [TAG, PING, req_id, (consumer or "").encode()]


def build_list(req_id: bytes) -> list[bytes]:
    return [TAG, LIST, req_id]


def parse_request(frames: list[bytes]) -> ControlRequest:
    """Parse a control request (without the ROUTER identity frame)."""
    if len(frames) < 3 or frames[0] != TAG:
        raise ProtocolError("not an FB1 request")
    kind, req_id, rest = frames[1], frames[2], frames[3:]
    if len(req_id) != 8:
        raise ProtocolError("req_id must be 8 bytes")
    if kind == PUB:
        if len(rest) != 1:
            raise ProtocolError("PUB takes one frame of envelopes", req_id)
        envelopes = unpack_blobs(rest[0], MAX_BATCH, req_id)
        if not envelopes:
            raise ProtocolError("PUB carries no envelope", req_id)
        return PublishRequest(req_id, tuple(envelopes))
    if kind == SYNC:
        if len(rest) != 3:
            raise ProtocolError("SYNC takes consumer, after, limit", req_id)
        after = None if rest[1] == b"" else read_u64(rest[1], "after", req_id)
        if len(rest[2]) != 4:
            raise ProtocolError("limit must be 4 bytes", req_id)
        limit = max(1, min(int(_U32.unpack(rest[2])[0]), MAX_SYNC_LIMIT))
        return SyncRequest(req_id, _consumer(rest[0], req_id), after, limit)
    if kind == PING:
        if len(rest) != 1:
            raise ProtocolError("PING takes one consumer frame", req_id)
        return PingRequest(req_id, _consumer(rest[0], req_id) if rest[0] else None)
    if kind == LIST:
        if rest:
            raise ProtocolError("LIST takes no arguments", req_id)
        return ListRequest(req_id)
    raise ProtocolError(f"unknown request kind {kind[:16]!r}", req_id)


# ---- replies --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipts:
    req_id: bytes
    items: tuple[tuple[int, bool], ...]


@dataclass(frozen=True, slots=True)
class EventsPage:
    req_id: bytes
    head: int
    next_after: int
    end: bool
    events: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class Pong:
    req_id: bytes
    head: int
    watermark: int


@dataclass(frozen=True, slots=True)
class ConsumerList:
    req_id: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class ErrorReply:
    req_id: bytes
    code: int
    reason: str


ControlReply = Receipts | EventsPage | Pong | ConsumerList | ErrorReply


def build_receipts(req_id: bytes, items: list[tuple[int, bool]]) -> list[bytes]:
    return [TAG, OK, req_id, b"".join(_RECEIPT.pack(seq, dup) for seq, dup in items)]


def build_events_page(
    req_id: bytes, head: int, next_after: int, end: bool, events: list[tuple[int, bytes]]
) -> list[bytes]:
    return [TAG, EVTS, req_id, _EVTS_META.pack(head, next_after, end), pack_events(events)]


def build_pong(req_id: bytes, head: int, watermark: int) -> list[bytes]:
    return [TAG, PONG, req_id, _PONG.pack(head, watermark)]


def build_consumer_list(req_id: bytes, body: bytes) -> list[bytes]:
    return [TAG, CONS, req_id, body]


def build_error(req_id: bytes, code: ErrorCode, reason: str) -> list[bytes]:
    return [TAG, ERR, req_id, _U16.pack(code), reason.encode("utf-8", "replace")[:1000]]


def parse_reply(frames: list[bytes]) -> ControlReply:
    if len(frames) < 4 or frames[0] != TAG or len(frames[2]) != 8:
        raise ProtocolError("not an FB1 reply")
    kind, req_id, rest = frames[1], frames[2], frames[3:]
    if kind == OK:
        body = rest[0]
        if len(rest) != 1 or len(body) % _RECEIPT.size:
            raise ProtocolError("bad receipts", req_id)
        items = tuple((int(seq), bool(dup)) for seq, dup in _RECEIPT.iter_unpack(body))
        return Receipts(req_id, items)
    if kind == EVTS:
        if len(rest) != 2 or len(rest[0]) != _EVTS_META.size:
            raise ProtocolError("bad events page", req_id)
        head, next_after, end = _EVTS_META.unpack(rest[0])
        events = unpack_events(rest[1], req_id)
        return EventsPage(req_id, int(head), int(next_after), bool(end), events)
    if kind == PONG:
        if len(rest) != 1 or len(rest[0]) != _PONG.size:
            raise ProtocolError("bad pong", req_id)
        head, watermark = _PONG.unpack(rest[0])
        return Pong(req_id, int(head), int(watermark))
    if kind == CONS:
        return ConsumerList(req_id, rest[0])
    if kind == ERR:
        if len(rest) != 2 or len(rest[0]) != 2:
            raise ProtocolError("bad error reply", req_id)
        return ErrorReply(req_id, int(_U16.unpack(rest[0])[0]), rest[1].decode("utf-8", "replace"))
    raise ProtocolError(f"unknown reply kind {kind[:16]!r}", req_id)


# ---- live stream and acks -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveEvents:
    events: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    head: int


LiveMessage = LiveEvents | Heartbeat


def build_live_events(events: list[tuple[int, bytes]]) -> list[bytes]:
    return [EV, pack_events(events)]


def build_heartbeat(head: int) -> list[bytes]:
    return [HB, u64(head)]


def parse_live(frames: list[bytes]) -> LiveMessage:
    if frames and frames[0] == HB and len(frames) == 2:
        return Heartbeat(read_u64(frames[1], "head"))
    if len(frames) == 2 and frames[0] == EV:
        events = unpack_events(frames[1])
        if events:
            return LiveEvents(events)
    raise ProtocolError("not a live-stream message")


@dataclass(frozen=True, slots=True)
class Acks:
    consumer: str
    seqs: tuple[int, ...]
    upto: int = 0


def build_acks(consumer: str, seqs: list[int], upto: int = 0) -> list[bytes]:
    frames = [TAG, ACK, consumer.encode(), b"".join(u64(s) for s in seqs)]
    if upto:
        frames.append(u64(upto))
    return frames


def parse_acks(frames: list[bytes]) -> Acks:
    if len(frames) not in (4, 5) or frames[0] != TAG or frames[1] != ACK:
        raise ProtocolError("not an FB1 ACK")
    body = frames[3]
    upto = read_u64(frames[4], "upto") if len(frames) == 5 else 0
    if len(body) % 8 or len(body) // 8 > MAX_ACKS or (not body and not upto):
        raise ProtocolError("ACK seqs must be 1..100000 u64 values (or 0 with an upto)")
    seqs = tuple(int(s) for (s,) in _U64.iter_unpack(body))
    return Acks(_consumer(frames[2], None), seqs, upto)
