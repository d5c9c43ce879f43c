"""The FB2 frames: what is built parses back; anything else is a ProtocolError, never a crash."""

from __future__ import annotations

import contextlib
import random

import pytest

from transport import protocol as p

REQ = b"\x00" * 7 + b"\x01"


def test_requests_round_trip() -> None:
    assert p.parse_request(p.build_publish(REQ, [b"a", b"b"])) == p.PublishRequest(REQ, (b"a", b"b"))
    assert p.parse_request(p.build_sync(REQ, "cluster:a", None, 10)) == p.SyncRequest(
        REQ, "cluster:a", None, 10, ""
    )
    assert p.parse_request(p.build_sync(REQ, "cluster:a", 3, 10, "account:")) == p.SyncRequest(
        REQ, "cluster:a", 3, 10, "account:"
    )
    capped = p.parse_request(p.build_sync(REQ, "cache", 7, 10**9))
    assert isinstance(capped, p.SyncRequest)
    assert capped.limit == p.MAX_SYNC_LIMIT
    assert p.parse_request(p.build_ping(REQ, None)) == p.PingRequest(REQ, None)
    assert p.parse_request(p.build_list(REQ)) == p.ListRequest(REQ)
    assert p.parse_request(p.build_remove(REQ, "cluster:gone")) == p.RemoveRequest(REQ, "cluster:gone")


def test_replies_round_trip() -> None:
    assert p.parse_reply(p.build_receipts(REQ, [(5, False), (2, True)])) == p.Receipts(
        REQ, ((5, False), (2, True))
    )
    page = p.parse_reply(p.build_events_page(REQ, 9, 4, True, [(3, b"x"), (4, b"y")]))
    assert page == p.EventsPage(REQ, 9, 4, True, ((3, b"x"), (4, b"y")))
    assert p.parse_reply(p.build_pong(REQ, 3, 2)) == p.Pong(REQ, 3, 2)
    assert p.parse_reply(p.build_removed(REQ, True)) == p.Removed(REQ, True)
    assert p.parse_reply(p.build_removed(REQ, False)) == p.Removed(REQ, False)
    error = p.parse_reply(p.build_error(REQ, p.ErrorCode.MALFORMED, "bad"))
    assert error == p.ErrorReply(REQ, 1, "bad")


def test_live_messages_and_acks_round_trip() -> None:
    assert p.parse_live(p.build_live_events([(1, b"a"), (2, b"b")])) == p.LiveEvents(((1, b"a"), (2, b"b")))
    assert p.parse_live(p.build_heartbeat(42)) == p.Heartbeat(42)
    assert p.parse_ack(p.build_ack("cluster:x", 42)) == p.Ack("cluster:x", 42)
    family = p.parse_live(p.build_family_events(b"account:", 7, [(9, b"a"), (12, b"b")]))
    assert family == p.LiveEvents(((9, b"a"), (12, b"b")), prev=7)
    assert p.parse_live(p.build_family_heartbeat(b"account:", 42, 40)) == p.Heartbeat(42, 40)


def test_a_key_prefix_with_a_colon_subscribes_to_its_family_alone() -> None:
    assert p.live_topics("account:") == (b"EFaccount:", b"HFaccount:")
    assert p.live_topics("account:1234") == (b"EFaccount:", b"HFaccount:")
    assert p.live_topics("") == (b"EV", b"HB")
    assert p.live_topics("acc") == (b"EV", b"HB")
    # What the broker sends for a family starts with that family's topics (SUB matches
    # prefixes), and never with the every-key stream's, nor with another family's.
    events = p.build_family_events(b"account:", 0, [(1, b"a")])[0]
    beat = p.build_family_heartbeat(b"account:", 1, 1)[0]
    assert events.startswith(p.live_topics("account:")[0])
    assert beat.startswith(p.live_topics("account:")[1])
    assert not any(frame.startswith(topic) for frame in (events, beat)
                   for topic in (*p.live_topics(""), *p.live_topics("outcome:")))


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"FB2"],
        [b"XX1", b"PUB", REQ, b"e"],
        [b"FB1", b"PUB", REQ, p.pack_blobs([b"e"])],
        [b"FB2", b"PUB", b"short", b"e"],
        [b"FB2", b"PUB", REQ],
        [b"FB2", b"PUB", REQ, p.pack_blobs([b"e"] * (p.MAX_BATCH + 1))],
        [b"FB2", b"PUB", REQ, b""],
        [b"FB2", b"PUB", REQ, b"\x00\x00\x00\x05abc"],
        [b"FB2", b"PUB", REQ, b"\x00\x00"],
        [b"FB2", b"PUB", REQ, b"a", b"b"],
        [b"FB2", b"SYNC", REQ, b"cache", b"123", b"\x00\x00\x00\x01", b""],
        [b"FB2", b"SYNC", REQ, b"bad name!", b"", b"\x00\x00\x00\x01", b""],
        [b"FB2", b"SYNC", REQ, b"\xff\xfe", b"", b"\x00\x00\x00\x01", b""],
        [b"FB2", b"SYNC", REQ, b"cache", b"", b"\x00\x00\x00\x01"],
        [b"FB2", b"SYNC", REQ, b"cache", b"", b"\x00\x00\x00\x01", b"\xff\xfe"],
        [b"FB2", b"SYNC", REQ, b"cache", b"", b"\x00\x00\x00\x01", b"a" * (p.MAX_PREFIX + 1)],
        [b"FB2", b"PING", REQ],
        [b"FB2", b"LIST", REQ, b"extra"],
        [b"FB2", b"DEL", REQ],
        [b"FB2", b"DEL", REQ, b"bad name!"],
        [b"FB2", b"NOPE", REQ],
    ],
)
def test_malformed_requests_raise_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_request(frames)


@pytest.mark.parametrize(
    "frames",
    [
        [b"EFaccount:", b"short", p.pack_events([(1, b"a")])],
        [b"EFaccount:", p.u64(1), b""],
        [b"EFaccount:", p.u64(1)],
        [b"HFaccount:", b"\x00" * 8],
        [b"HFaccount:", b"\x00" * 16, b""],
        [b"HB", b"\x00" * 16],
        [b"EV", b""],
    ],
)
def test_malformed_live_messages_raise_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_live(frames)


def test_random_frames_never_raise_anything_but_protocol_error() -> None:
    rng = random.Random(7)
    kinds = [
        b"PUB", b"SYNC", b"PING", b"LIST", b"DEL", b"OK", b"EVTS", b"PONG", b"CONS", b"DELD", b"ERR",
        b"ACK", b"EV", b"HB",
    ]
    for _ in range(3000):
        frames = [rng.choice([b"FB2", b"EV", b"HB", b"EFaccount:", b"HFaccount:", rng.randbytes(3)])]
        frames += [rng.choice([*kinds, rng.randbytes(rng.randrange(0, 12))])]
        frames += [rng.randbytes(rng.choice([0, 1, 2, 4, 8, 9, 16, 17])) for _ in range(rng.randrange(0, 6))]
        for parse in (p.parse_request, p.parse_reply, p.parse_live, p.parse_ack):
            with contextlib.suppress(p.ProtocolError):
                parse(frames)


def test_chunks_respect_both_the_count_and_the_byte_limit() -> None:
    assert p.chunk_by_size([1] * 5, 2, 100) == [(0, 2), (2, 4), (4, 5)]
    assert p.chunk_by_size([60, 60, 30, 10, 200], 10, 100) == [(0, 1), (1, 4), (4, 5)]
    assert p.chunk_by_size([], 2, 100) == []
