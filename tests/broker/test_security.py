"""Security at the broker over real sockets: CURVE with a ZAP allow-list on every socket, and
each request authorized by the identity of its sender's key, never by what it writes.

A peer without a listed key completes no handshake and gets nothing; an authenticated peer
that asks for what its identity may not do gets ERR FORBIDDEN (an ACK: dropped), a
`request_refused` log line naming its identity, and nothing is stored or moved.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import zmq  # only for a plain (NULL) client, which our library cannot make
import zmq.asyncio

from core.envelope import Envelope
from tests.broker.helpers import READER, envelope, publish, read_log
from tests.support.broker import embedded_broker, new_endpoints
from tests.support.keys import api_keys, client_keys, consumer_keys, server_keys, stranger_keys
from tests.support.wait import wait_until
from transport import codec, protocol
from transport.access import BusRefused, check_access
from transport.client import BrokerEndpoints, Directory
from transport.control import ControlChannel
from transport.curve import key_pair
from transport.sockets import ClientKeys, Context, Socket, connect_dealer, connect_push

REQ = b"\x00" * 7 + b"\x01"
SILENCE = 1.0  # how long a peer that completed no handshake is watched for a reply


@dataclass(frozen=True)
class Running:
    endpoints: BrokerEndpoints
    logs: list[MutableMapping[str, Any]]


@asynccontextmanager
async def _broker(ctx: Context, tmp_path: Path) -> AsyncIterator[Running]:
    """A broker holding three account events, with `cluster:a` at position 2."""
    with structlog.testing.capture_logs() as logs:
        async with embedded_broker(tmp_path) as endpoints:
            assert await publish(ctx, endpoints, [envelope(i) for i in range(3)]) == [1, 2, 3]
            await _ack_as_owner(ctx, endpoints, "cluster:a", 2)
            yield Running(endpoints, logs)


async def _ack_as_owner(ctx: Context, endpoints: BrokerEndpoints, consumer: str, position: int) -> None:
    push = connect_push(ctx, endpoints.acks, consumer_keys(consumer))
    try:

        async def recorded() -> bool:
            push.send_nowait(protocol.build_ack(consumer, position))  # until the link is up
            return await _position(ctx, endpoints, consumer) == position

        _ = await wait_until(recorded, timeout=10, message=f"{consumer} at {position}")
    finally:
        push.close()


async def _position(ctx: Context, endpoints: BrokerEndpoints, consumer: str) -> int | None:
    async with Directory(ctx, endpoints, keys=api_keys(), timeout=2.0) as directory:
        infos = {i.name: i for i in await directory.consumers()}
    return infos[consumer].acked_seq if consumer in infos else None


async def _consumer_names(ctx: Context, endpoints: BrokerEndpoints) -> set[str]:
    async with Directory(ctx, endpoints, keys=api_keys(), timeout=2.0) as directory:
        return {i.name for i in await directory.consumers()}


async def _silent(sock: Socket | zmq.asyncio.Socket) -> bool:
    """True when nothing arrives on `sock` for SILENCE seconds (absence can only be watched)."""
    try:
        async with asyncio.timeout(SILENCE):
            await sock.recv()
    except TimeoutError:
        return True
    return False


def _pub(*envelopes: Envelope) -> protocol.RequestBuilder:
    return lambda req_id: protocol.build_publish(req_id, [codec.encode(e.to_wire()) for e in envelopes])


# ---- no listed key: no handshake, nothing served ---------------------------------------


def _wrong_broker_key() -> ClientKeys:
    api = api_keys()
    return ClientKeys(public=api.public, secret=api.secret, server=key_pair()[0])


@pytest.mark.parametrize("client", ["plain", "unknown key", "wrong broker key"])
async def test_a_peer_without_a_listed_key_completes_no_handshake_and_gets_nothing(
    ctx: Context, tmp_path: Path, client: str
) -> None:
    async with _broker(ctx, tmp_path) as broker:
        request = _pub(envelope(10))(REQ)
        sock: Socket | zmq.asyncio.Socket
        if client == "plain":
            plain = ctx.socket(zmq.DEALER)
            plain.setsockopt(zmq.LINGER, 0)
            plain.connect(broker.endpoints.control)
            await plain.send_multipart(request)
            sock = plain
        else:
            keys = stranger_keys() if client == "unknown key" else _wrong_broker_key()
            sock = connect_dealer(ctx, broker.endpoints.control, keys)
            sock.send_nowait(request)
        try:
            assert await _silent(sock)
        finally:
            sock.close()
        assert [seq for seq, _e in await read_log(ctx, broker.endpoints)] == [1, 2, 3]
        if client == "unknown key":
            assert any(entry["event"] == "handshake_refused" for entry in broker.logs)


async def test_the_access_check_tells_a_refused_key_from_a_broker_that_is_not_there(
    ctx: Context, tmp_path: Path
) -> None:
    async with _broker(ctx, tmp_path) as broker:
        ep = broker.endpoints
        assert await check_access(ctx, ep, consumer_keys("cluster:a"), consumer="cluster:a")
        assert await check_access(ctx, ep, api_keys(), consumer="cache")
        with pytest.raises(BusRefused, match="refused this client's key"):
            await check_access(ctx, ep, stranger_keys(), consumer="cluster:a", wait=10)
        with pytest.raises(BusRefused, match=r"no CURVE handshake .* completed within 1s"):
            await check_access(ctx, ep, _wrong_broker_key(), consumer="cache", wait=1)
        with pytest.raises(BusRefused, match="refused consumer cluster:a: cluster b may use only"):
            await check_access(ctx, ep, client_keys("cluster-b"), consumer="cluster:a")
    assert not await check_access(ctx, new_endpoints(), api_keys(), consumer="cache", wait=0.5)


# ---- an identity asking for what it may not do -----------------------------------------

B = "cluster-b"


def _sync(consumer: str, prefix: str) -> protocol.RequestBuilder:
    return lambda req_id: protocol.build_sync(req_id, consumer, None, 100, prefix)


REFUSED: dict[str, tuple[str, Callable[[], protocol.RequestBuilder], str]] = {
    # what: (identity, the request, words of the reason)
    "cluster b syncs cluster:a": (B, lambda: _sync("cluster:a", "account:"), "only the consumer cluster:b"),
    "cluster b pings as cluster:a": (B, lambda: lambda r: protocol.build_ping(r, "cluster:a"), "cluster:b"),
    "cluster b reads other clusters' outcomes": (B, lambda: _sync("cluster:b", ""), "only keys under"),
    "cluster b reports for cluster a": (B, lambda: _pub(envelope(10, key="outcome:a:x")), "outcome:b:"),
    "cluster b's report names cluster a": (
        B, lambda: _pub(_claiming(envelope(10, key="outcome:b:x"), "a")), "whose cluster is b",
    ),
    "cluster b publishes account events": (B, lambda: _pub(envelope(10)), "outcome:b:"),
    "cluster b lists consumers": (B, lambda: protocol.build_list, "only the api"),
    "cluster b deletes cluster:a": (
        B, lambda: lambda r: protocol.build_remove(r, "cluster:a"), "only the consumer cluster:b",
    ),
    "the api reports an outcome": ("api", lambda: _pub(envelope(10, key="outcome:a:x")), "account events"),
    "the api syncs cluster:a": ("api", lambda: _sync("cluster:a", "account:"), "cache"),
}


def _claiming(env: Envelope, cluster: str) -> Envelope:
    return Envelope(
        env.event_id, env.type, env.schema_version, env.aggregate_id, env.key, env.tombstone,
        env.occurred_at, env.correlation_id, {**env.payload, "cluster": cluster},
    )


@pytest.mark.parametrize("what", list(REFUSED))
async def test_a_request_beyond_the_identitys_rights_is_refused_logged_and_changes_nothing(
    ctx: Context, tmp_path: Path, what: str
) -> None:
    identity, request, reason = REFUSED[what]
    async with _broker(ctx, tmp_path) as broker:
        before = await _consumer_names(ctx, broker.endpoints)
        channel = ControlChannel(ctx, broker.endpoints.control, client_keys(identity), name="test")
        channel.open()
        try:
            reply = await channel.request(request(), 5.0)
        finally:
            await channel.close()
        assert isinstance(reply, protocol.ErrorReply), reply
        assert reply.code == protocol.ErrorCode.FORBIDDEN
        assert reason in reply.reason
        refused = [e for e in broker.logs if e["event"] == "request_refused"]
        assert [e["identity"] for e in refused] == [identity]
        assert reason in refused[0]["reason"]
        await _nothing_changed(ctx, broker, before)


@pytest.mark.parametrize("identity", ["cluster-b", "api"])
async def test_an_ack_for_another_identitys_consumer_is_dropped_and_logged(
    ctx: Context, tmp_path: Path, identity: str
) -> None:
    async with _broker(ctx, tmp_path) as broker:
        before = await _consumer_names(ctx, broker.endpoints)
        push = connect_push(ctx, broker.endpoints.acks, client_keys(identity))
        try:

            def refused() -> list[MutableMapping[str, Any]]:
                lines = [e for e in broker.logs if e["event"] == "request_refused"]
                if not lines:
                    push.send_nowait(protocol.build_ack("cluster:a", 3))  # until the link is up
                return lines

            line = (await wait_until(refused, timeout=10, message="the ack refused"))[0]
        finally:
            push.close()
        assert (line["identity"], line["request"], line["consumer"]) == (identity, "ACK", "cluster:a")
        await _nothing_changed(ctx, broker, before)


async def _nothing_changed(ctx: Context, broker: Running, consumers: set[str]) -> None:
    ep = broker.endpoints
    assert [seq for seq, _e in await read_log(ctx, ep)] == [1, 2, 3]
    assert await _position(ctx, ep, "cluster:a") == 2
    assert await _consumer_names(ctx, ep) == consumers | {READER}


# ---- the rights an identity has ---------------------------------------------------------


async def test_a_cluster_reads_its_accounts_reports_its_outcomes_and_resets_its_position(
    ctx: Context, tmp_path: Path
) -> None:
    async with _broker(ctx, tmp_path) as broker:
        ep = broker.endpoints
        channel = ControlChannel(ctx, ep.control, client_keys("cluster-a"), name="test")
        channel.open()
        try:
            page = await channel.request(_sync("cluster:a", "account:"), 5)
            pong = await channel.request(lambda r: protocol.build_ping(r, "cluster:a"), 5)
            head = await channel.request(lambda r: protocol.build_ping(r, None), 5)
            stored = await channel.request(_pub(envelope(9, key="outcome:a:x")), 5)
            removed = await channel.request(lambda r: protocol.build_remove(r, "cluster:a"), 5)
        finally:
            await channel.close()
        assert isinstance(removed, protocol.Removed)
        assert removed.removed
        assert isinstance(page, protocol.EventsPage)
        assert [s for s, _ in page.events] == [3]
        assert isinstance(pong, protocol.Pong)
        assert pong.position == 2
        assert isinstance(head, protocol.Pong)
        assert head.head == 3
        assert isinstance(stored, protocol.Receipts)
        assert stored.items == ((4, False),)
    assert not any(e["event"] == "request_refused" for e in broker.logs)


async def test_the_broker_admits_a_key_added_to_its_allow_list_while_it_runs(
    ctx: Context, tmp_path: Path
) -> None:
    # The session's allow-list is every test broker's: a new identity's certificate
    # appears in it now, after this broker read the list at its start.
    async with _broker(ctx, tmp_path) as broker:
        cluster = f"late-{uuid.uuid4().hex[:8]}"
        keys = client_keys(f"cluster-{cluster}")
        assert keys.server == server_keys().public
        assert await check_access(ctx, broker.endpoints, keys, consumer=f"cluster:{cluster}")
