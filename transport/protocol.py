"""The broker's wire protocol, version FB2: frames, kinds and each field's meaning.

Three sockets (addresses given as CONTROL,EVENTS,ACKS), every one CurveZMQ with
a ZAP allow-list (`transport.curve`): a peer is known by the identity of its
key (`api`, `cluster-NAME`), never by anything it writes in a frame.

control  ROUTER (broker) <- DEALER (clients): requests and replies, matched by req_id.
events   PUB (broker) -> SUB (subscribers): the live stream; lossy by design.
acks     PULL (broker) <- PUSH (subscribers): consumer positions; re-sent when lost.

Frames are listed in brackets, separated by commas; `a:8 b:8` without a comma
are fields packed into one frame. All integers are big-endian unsigned. `seq`
(u64) is the broker's sequence number: assigned at store time, strictly
increasing, with gaps once compaction has removed superseded records; `head`
is the highest durable (fsynced) seq, 0 for an empty log. `env` is one event
envelope encoded by `transport.codec` as the map of
`core.envelope.Envelope.to_wire`; its `key` is what the log compacts by.
`consumer` is a durable consumer name (UTF-8, 1..128 of [A-Za-z0-9:._-]); a
consumer's `position` is one seq: every record up to it is acked.

Control requests (frame 0 is the tag b"FB2"; ROUTER prepends the peer identity):

    PUB   [FB2, b"PUB",  req_id:8, blobs]   blobs = (len:4, env)* : 1..MAX_BATCH envelopes,
                                            stored in order
    SYNC  [FB2, b"SYNC", req_id:8, consumer, after:8|b"", limit:4, key_prefix]
          registers `consumer`; asks for records with seq > after (after empty: the
          consumer's recorded position) whose key starts with `key_prefix` (UTF-8, at
          most MAX_PREFIX bytes; empty: every record)
    PING  [FB2, b"PING", req_id:8, consumer|b""]      heartbeat; marks the consumer seen
    LIST  [FB2, b"LIST", req_id:8]                    the consumer directory
    DEL   [FB2, b"DEL",  req_id:8, consumer]          forget the consumer: its position
                                                      and its hold on tombstones

Control replies:

    OK    [FB2, b"OK",   req_id:8, receipts]   per envelope, in request order, 9 bytes:
                                               seq:8, duplicate:1 (1 = stored before under
                                               that event_id within the dedup window; seq
                                               is the original one). Sent only after the
                                               records are fsynced.
    EVTS  [FB2, b"EVTS", req_id:8, meta, events]   events = (seq:8, len:4, env)*
          meta = head:8 next_after:8 end:1 (one frame). Events are in seq order, only those
          matching the prefix; `next_after` is past every record the page looked at,
          filtered ones included, so a consumer may take it as its position once it has
          stored the page's events. Ask again with after=next_after until end=1 ("end
          marker": nothing durable after next_after).
    PONG  [FB2, b"PONG", req_id:8, head:8 position:8]  one 16-byte frame; the consumer's
                                                       recorded position (0 if none)
    CONS  [FB2, b"CONS", req_id:8, msgpack list of {name, acked_seq, lag, last_seen, online}]
          acked_seq = the position; lag = head - position
    DELD  [FB2, b"DELD", req_id:8, removed:1]      1 if the consumer was registered
    ERR   [FB2, b"ERR",  req_id:8, code:2, reason utf8]  see ErrorCode; nothing was stored
          codes: 1 MALFORMED, 2 INVALID_ENVELOPE, 3 TOO_LARGE (permanent); 4 UNAVAILABLE
          (retry); 5 FORBIDDEN: the peer's identity may not do this (permanent)

Authorization by identity (checked per request; a refusal is ERR FORBIDDEN, logged as
`request_refused` with the identity, and stores nothing):

    api            PUB of `account:*` keys only; SYNC, PING and ACK of `cache*` consumers;
                   LIST; DEL of any consumer
    cluster-NAME   PUB of `outcome:NAME:*` keys only (payload `cluster` NAME too); SYNC of
                   `cluster:NAME` with a key prefix within `account:`; PING, ACK and DEL
                   (a reset of its own position) of `cluster:NAME`; no LIST
    anyone         PING without a consumer (the head: a liveness probe)

A refused ACK (PULL has no reply) is logged and dropped.

Live stream (PUB), no tag so a SUB can filter cheaply (ZeroMQ matches the first frame's
prefix, on the publisher's side):

    EV    [b"EV", events]          one or more records with contiguous ascending seqs: every
                                   stored record goes out once here, for subscribers of every key
    HB    [b"HB", head:8]          every heartbeat interval; a subscriber behind head re-fetches
    EF    [b"EF" family, prev:8, events]
                                   the same records again, split by key family (a key's text up
                                   to and including its first ":", e.g. `account:`), for each
                                   family some SYNC's key prefix lies within; `prev` is the seq
                                   of the family's record before these (or an upper bound of
                                   it: the durable head when the family was first asked for). A
                                   subscriber at position P takes them if prev <= P, else it
                                   missed some and re-fetches.
    HF    [b"HF" family, head:8 family_head:8]
                                   every heartbeat interval per such family: family_head is the
                                   family's last record sent (or that bound); a subscriber at P
                                   with family_head <= P has every record of its family up to
                                   head and moves its position there, else it re-fetches.

A subscriber whose key prefix has a ":" takes its family's EF and HF (so a cluster's daemon
never wakes for the other clusters' outcomes); any other takes EV and HB.

Acks (PUSH):

    ACK   [FB2, b"ACK", consumer, position:8]   cumulative: every seq <= position is acked.
          The broker keeps the highest it has seen (capped at its head). A subscriber
          re-sends its position when a PONG shows the broker's below it (a lost ack, or a
          crash that lost positions the broker had saved too late).

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

# Re-exported: callers build and parse frames through this module alone.
from transport.framing import ErrorCode as ErrorCode
from transport.framing import ProtocolError as ProtocolError
from transport.framing import chunk_by_size as chunk_by_size
from transport.framing import pack_blobs as pack_blobs
from transport.framing import pack_events as pack_events
from transport.framing import read_u64 as read_u64
from transport.framing import u64 as u64
from transport.framing import unpack_blobs as unpack_blobs
from transport.framing import unpack_events as unpack_events

TAG = b"FB2"

PUB = b"PUB"
SYNC = b"SYNC"
PING = b"PING"
LIST = b"LIST"
DEL = b"DEL"
DELD = b"DELD"
OK = b"OK"
EVTS = b"EVTS"
PONG = b"PONG"
CONS = b"CONS"
ERR = b"ERR"
ACK = b"ACK"
EV = b"EV"
HB = b"HB"
EF = b"EF"
HF = b"HF"

MAX_BATCH = 1000
# Senders keep a frame of many events under this; receivers accept up to sockets.MAX_FRAME_BYTES.
MAX_BODY_BYTES = 1024 * 1024
MAX_SYNC_LIMIT = 5000
MAX_PREFIX = 160

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_RECEIPT = struct.Struct(">QB")
_EVTS_META = struct.Struct(">QQB")
_PONG = struct.Struct(">QQ")
_FAMILY_HEAD = struct.Struct(">QQ")
_CONSUMER_RE = re.compile(r"[A-Za-z0-9:._-]{1,128}")


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
    key_prefix: str = ""


@dataclass(frozen=True, slots=True)
class PingRequest:
    req_id: bytes
    consumer: str | None


@dataclass(frozen=True, slots=True)
class ListRequest:
    req_id: bytes


@dataclass(frozen=True, slots=True)
class RemoveRequest:
    req_id: bytes
    consumer: str


ControlRequest = PublishRequest | SyncRequest | PingRequest | ListRequest | RemoveRequest
RequestBuilder = Callable[[bytes], list[bytes]]


def check_consumer(name: str) -> str:
    if not _CONSUMER_RE.fullmatch(name):
        raise ValueError(f"consumer name must be 1..128 of [A-Za-z0-9:._-], got {name[:40]!r}")
    return name


def _consumer(frame: bytes, req_id: bytes | None) -> str:
    try:
        return check_consumer(frame.decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(str(exc), req_id) from None


def build_publish(req_id: bytes, envelopes: list[bytes]) -> list[bytes]:
    return [TAG, PUB, req_id, pack_blobs(envelopes)]


def build_sync(
    req_id: bytes, consumer: str, after: int | None, limit: int, key_prefix: str = ""
) -> list[bytes]:
    return [
        TAG, SYNC, req_id, consumer.encode(), b"" if after is None else u64(after),
        _U32.pack(limit), key_prefix.encode(),
    ]


def build_ping(req_id: bytes, consumer: str | None) -> list[bytes]:
    return [TAG, PING, req_id, (consumer or "").encode()]


def build_list(req_id: bytes) -> list[bytes]:
    return [TAG, LIST, req_id]


def build_remove(req_id: bytes, consumer: str) -> list[bytes]:
    return [TAG, DEL, req_id, consumer.encode()]


def check_prefix(prefix: str) -> str:
    if len(prefix.encode()) > MAX_PREFIX:
        raise ValueError(f"a key prefix is at most {MAX_PREFIX} bytes")
    return prefix


def _prefix(frame: bytes, req_id: bytes) -> str:
    if len(frame) > MAX_PREFIX:
        raise ProtocolError(f"key prefix longer than {MAX_PREFIX} bytes", req_id)
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("key prefix is not UTF-8", req_id) from None


def parse_request(frames: list[bytes]) -> ControlRequest:
    """Parse a control request (without the ROUTER identity frame)."""
    if len(frames) < 3 or frames[0] != TAG:
        raise ProtocolError("not an FB2 request")
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
        if len(rest) != 4:
            raise ProtocolError("SYNC takes consumer, after, limit, key_prefix", req_id)
        after = None if rest[1] == b"" else read_u64(rest[1], "after", req_id)
        if len(rest[2]) != 4:
            raise ProtocolError("limit must be 4 bytes", req_id)
        limit = max(1, min(int(_U32.unpack(rest[2])[0]), MAX_SYNC_LIMIT))
        return SyncRequest(req_id, _consumer(rest[0], req_id), after, limit, _prefix(rest[3], req_id))
    if kind == PING:
        if len(rest) != 1:
            raise ProtocolError("PING takes one consumer frame", req_id)
        return PingRequest(req_id, _consumer(rest[0], req_id) if rest[0] else None)
    if kind == LIST:
        if rest:
            raise ProtocolError("LIST takes no arguments", req_id)
        return ListRequest(req_id)
    if kind == DEL:
        if len(rest) != 1:
            raise ProtocolError("DEL takes one consumer frame", req_id)
        return RemoveRequest(req_id, _consumer(rest[0], req_id))
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
    position: int


@dataclass(frozen=True, slots=True)
class ConsumerList:
    req_id: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class ErrorReply:
    req_id: bytes
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Removed:
    req_id: bytes
    removed: bool


ControlReply = Receipts | EventsPage | Pong | ConsumerList | Removed | ErrorReply


def build_receipts(req_id: bytes, items: list[tuple[int, bool]]) -> list[bytes]:
    return [TAG, OK, req_id, b"".join(_RECEIPT.pack(seq, dup) for seq, dup in items)]


def build_events_page(
    req_id: bytes, head: int, next_after: int, end: bool, events: list[tuple[int, bytes]]
) -> list[bytes]:
    return [TAG, EVTS, req_id, _EVTS_META.pack(head, next_after, end), pack_events(events)]


def build_pong(req_id: bytes, head: int, position: int) -> list[bytes]:
    return [TAG, PONG, req_id, _PONG.pack(head, position)]


def build_removed(req_id: bytes, removed: bool) -> list[bytes]:
    return [TAG, DELD, req_id, b"\x01" if removed else b"\x00"]


def build_consumer_list(req_id: bytes, body: bytes) -> list[bytes]:
    return [TAG, CONS, req_id, body]


def build_error(req_id: bytes, code: ErrorCode, reason: str) -> list[bytes]:
    return [TAG, ERR, req_id, _U16.pack(code), reason.encode("utf-8", "replace")[:1000]]


def parse_reply(frames: list[bytes]) -> ControlReply:
    if len(frames) < 4 or frames[0] != TAG or len(frames[2]) != 8:
        raise ProtocolError("not an FB2 reply")
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
        head, position = _PONG.unpack(rest[0])
        return Pong(req_id, int(head), int(position))
    if kind == CONS:
        if len(rest) != 1:
            raise ProtocolError("bad consumer list", req_id)
        return ConsumerList(req_id, rest[0])
    if kind == DELD:
        if len(rest) != 1 or rest[0] not in (b"\x00", b"\x01"):
            raise ProtocolError("bad removal reply", req_id)
        return Removed(req_id, rest[0] == b"\x01")
    if kind == ERR:
        if len(rest) != 2 or len(rest[0]) != 2:
            raise ProtocolError("bad error reply", req_id)
        return ErrorReply(req_id, int(_U16.unpack(rest[0])[0]), rest[1].decode("utf-8", "replace"))
    raise ProtocolError(f"unknown reply kind {kind[:16]!r}", req_id)


# ---- live stream and acks -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveEvents:
    events: tuple[tuple[int, bytes], ...]
    prev: int | None = None  # EF: the family's record before these; None (EV): seqs follow on


@dataclass(frozen=True, slots=True)
class Heartbeat:
    head: int
    family_head: int | None = None  # HF: the family's last record sent; None for HB


LiveMessage = LiveEvents | Heartbeat


def live_family(key_prefix: str) -> str | None:
    """The family whose EF/HF messages serve a subscriber of `key_prefix`; None: EV and HB."""
    at = key_prefix.find(":")
    return key_prefix[: at + 1] if at >= 0 else None


def live_topics(key_prefix: str) -> tuple[bytes, bytes]:
    """The SUB subscriptions for a subscriber of `key_prefix`."""
    family = live_family(key_prefix)
    if family is None:
        return EV, HB
    return EF + family.encode(), HF + family.encode()


def build_live_events(events: list[tuple[int, bytes]]) -> list[bytes]:
    return [EV, pack_events(events)]


def build_heartbeat(head: int) -> list[bytes]:
    return [HB, u64(head)]


def build_family_events(family: bytes, prev: int, events: list[tuple[int, bytes]]) -> list[bytes]:
    return [EF + family, u64(prev), pack_events(events)]


def build_family_heartbeat(family: bytes, head: int, family_head: int) -> list[bytes]:
    return [HF + family, _FAMILY_HEAD.pack(head, family_head)]


def parse_live(frames: list[bytes]) -> LiveMessage:
    if len(frames) == 2:
        topic, body = frames
        if topic == HB:
            return Heartbeat(read_u64(body, "head"))
        if topic == EV:
            events = unpack_events(body)
            if events:
                return LiveEvents(events)
        elif topic.startswith(HF) and len(body) == _FAMILY_HEAD.size:
            head, family_head = _FAMILY_HEAD.unpack(body)
            return Heartbeat(int(head), int(family_head))
    elif len(frames) == 3 and frames[0].startswith(EF):
        prev = read_u64(frames[1], "prev")
        events = unpack_events(frames[2])
        if events:
            return LiveEvents(events, prev)
    raise ProtocolError("not a live-stream message")


@dataclass(frozen=True, slots=True)
class Ack:
    consumer: str
    position: int


def build_ack(consumer: str, position: int) -> list[bytes]:
    return [TAG, ACK, consumer.encode(), u64(position)]


def parse_ack(frames: list[bytes]) -> Ack:
    if len(frames) != 4 or frames[0] != TAG or frames[1] != ACK:
        raise ProtocolError("not an FB2 ACK")
    return Ack(_consumer(frames[2], None), read_u64(frames[3], "position"))
