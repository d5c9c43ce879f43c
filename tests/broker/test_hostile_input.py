"""Garbage on every broker socket, also during the CURVE handshake, is logged and dropped; the
broker lives and serves its authenticated clients on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.broker.helpers import envelope
from tests.support.broker import start_broker_process
from tests.support.keys import api_keys
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport import protocol
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import (
    MAX_FRAME_BYTES,
    Context,
    close_context,
    connect_dealer,
    connect_push,
    connect_sub,
    new_context,
)

pytestmark = pytest.mark.processes

REQ = b"\x00" * 7 + b"\x09"
# ZMTP 3.0 greeting: signature, version 3.0, mechanism CURVE, as-client, filler (64 bytes).
CURVE_GREETING = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\x00") + bytes(32)


async def _raw_tcp_garbage(address: str) -> None:
    url = urlsplit(address)
    assert url.hostname is not None
    assert url.port is not None
    for payload in (
        os.urandom(2000),
        b"\xff" + b"\x00" * 8 + b"\x7f" + os.urandom(64),
        b"GET / HTTP/1.1\r\n\r\n",
        # Garbage during the CURVE handshake: a valid greeting, then a HELLO whose box
        # (client key, nonce, signature) is random, then random bytes.
        CURVE_GREETING + os.urandom(300),
        CURVE_GREETING + b"\x04\xc8\x05HELLO\x01\x00" + bytes(72) + os.urandom(120),
    ):
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        # The peer answers with its own greeting, or closes, or resets: all are fine.
        with contextlib.suppress(TimeoutError, ConnectionError):
            writer.write(payload)
            await writer.drain()
            async with asyncio.timeout(0.2):
                await reader.read(64)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _zmq_garbage(ctx: Context, endpoints: BrokerEndpoints) -> list[list[bytes]]:
    """Send bad frames on control, acks and (as a bogus client) events; return control's replies."""
    rng = random.Random(3)
    keys = api_keys()
    control = connect_dealer(ctx, endpoints.control, keys)
    acks = connect_push(ctx, endpoints.acks, keys)
    bogus = connect_dealer(ctx, endpoints.events, keys)
    huge = connect_dealer(ctx, endpoints.control, keys)
    try:
        bad_requests = [
            [b"garbage"],
            [b"FB2"],
            [b"FB1", b"PUB", REQ, protocol.pack_blobs([b"\x80"])],  # the previous protocol version
            [b"FB2", b"PUB", REQ],
            [b"FB2", b"PUB", REQ, protocol.pack_blobs([b"\xc1"])],
            [b"FB2", b"PUB", REQ, protocol.pack_blobs([b"\x93\x01\x02\x03"])],
            [b"FB2", b"PUB", REQ, protocol.pack_blobs([b"\xdd\xff\xff\xff\xff"])],
            [b"FB2", b"PUB", REQ, b"\xff\xff\xff\xff"],
            [b"FB2", b"SYNC", REQ, b"bad name!", b"", b"\x00\x00\x00\x01", b""],
            [b"FB2", b"SYNC", REQ, b"cache", b"", b"\x00\x00\x00\x01", b"\xff" * 200],
            [b"FB2", b"DEL", REQ, b"bad name!"],
            [b"FB2", b"WHAT", REQ],
            [b"FB2", b"PUB", REQ, protocol.pack_blobs([b"\x80"] * (protocol.MAX_BATCH + 1))],
            *([rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(1, 5))] for _ in range(50)),
        ]
        for frames in bad_requests:
            await control.send(frames)
        for frames in (
            [b"nonsense"],
            [b"FB2", b"ACK", b"cache", b"\x01\x02"],
            [b"FB2", b"ACK", b"??", b"\x00" * 8],
            [b"FB1", b"ACK", b"cache", b"\x00" * 8],
        ):
            await acks.send(frames)
        bogus.send_nowait([b"EV", b"not a seq", b"x"])
        huge.send_nowait([b"FB2", b"PUB", REQ, b"\x00" * (MAX_FRAME_BYTES + 1)])
        replies: list[list[bytes]] = []
        expected = 10  # the requests above whose req_id can be read
        async with asyncio.timeout(10):
            while len(replies) < expected:
                replies.append(await control.recv())
        return replies
    finally:
        for sock in (control, acks, bogus, huge):
            sock.close()


async def test_garbage_on_every_socket_is_dropped_and_later_traffic_is_unaffected(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    proc, endpoints = await start_broker_process(procs, tmp_path / "broker")
    ctx = new_context()
    try:
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            before = await pub.publish([envelope(1)])
        # A subscriber listening throughout must not be disturbed either.
        listener = connect_sub(ctx, endpoints.events, api_keys())
        try:
            for address in (endpoints.control, endpoints.events, endpoints.acks):
                await _raw_tcp_garbage(address)
            replies = await _zmq_garbage(ctx, endpoints)
        finally:
            listener.close()
        errors = [protocol.parse_reply(frames) for frames in replies]
        assert all(isinstance(e, protocol.ErrorReply) for e in errors)
        assert {e.code for e in errors if isinstance(e, protocol.ErrorReply)} == {
            protocol.ErrorCode.MALFORMED,
            protocol.ErrorCode.INVALID_ENVELOPE,
            protocol.ErrorCode.TOO_LARGE,
        }
        assert proc.running
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            after = await pub.publish([envelope(2)])
        assert [before[0].seq, after[0].seq] == [1, 2]
        async with Subscriber(
            ctx, endpoints, keys=api_keys(), consumer="cache", heartbeat_interval=0.1
        ) as sub:
            got = []
            async for batch in sub.batches():
                got += [d.seq for d in batch.deliveries]
                await sub.ack(batch.position)
                if batch.position == 2:
                    break
        assert got == [1, 2]
        async with Directory(ctx, endpoints, keys=api_keys()) as directory:
            names = [i.name for i in await directory.consumers()]
        assert names == ["cache"]  # garbage acks registered nobody
        _ = await wait_until(
            lambda: proc.log_text().count('"frame_dropped"') >= 50,
            timeout=10,
            message="drops logged",
        )
        assert proc.running
    finally:
        close_context(ctx)
