"""Small builders shared by the broker tests."""

from __future__ import annotations

import functools
import uuid

from core.envelope import Envelope, new_event_id, utc_now
from tests.support.wait import wait_until
from transport import codec, protocol
from transport.client import BrokerEndpoints, Directory
from transport.control import ControlChannel
from transport.sockets import Context, connect_push


def account(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def envelope(
    n: int = 0,
    *,
    key: int | str | None = None,
    tombstone: bool = False,
    event_id: str | None = None,
) -> Envelope:
    """Event `n`; its key is `account:<account(n)>` unless `key` names another account
    (an int) or gives the key itself (a str), so by default no two events share a key."""
    aggregate = account(key if isinstance(key, int) else n)
    return Envelope(
        event_id=event_id or new_event_id(),
        type="account.deleted" if tombstone else "account.created",
        schema_version=2,
        aggregate_id=aggregate,
        key=key if isinstance(key, str) else f"account:{aggregate}",
        tombstone=tombstone,
        occurred_at=utc_now(),
        correlation_id=f"test-{n}",
        payload={"n": n, "slug": f"acc-{n}"},
    )


async def read_log(
    ctx: Context, endpoints: BrokerEndpoints, *, consumer: str = "probe", key_prefix: str = ""
) -> list[tuple[int, Envelope]]:
    """Every retained record from seq 0, as a new reader would get it, read with explicit
    positions under `consumer` (whose own position, and so its hold on tombstones, stays)."""
    channel = ControlChannel(ctx, endpoints.control, name="probe")
    channel.open()
    out: list[tuple[int, Envelope]] = []
    after = 0
    try:
        while True:
            page = await channel.request(functools.partial(_sync, consumer, after, key_prefix), 5.0)
            assert isinstance(page, protocol.EventsPage)
            out += [(seq, codec.decode_envelope(raw)) for seq, raw in page.events]
            after = page.next_after
            if page.end:
                return out
    finally:
        await channel.close()


def _sync(consumer: str, after: int, key_prefix: str, req_id: bytes) -> list[bytes]:
    return protocol.build_sync(req_id, consumer, after, 1000, key_prefix)


async def settle_position(ctx: Context, endpoints: BrokerEndpoints, consumer: str) -> int:
    """Register `consumer` at the broker's head (so it holds nothing back); returns the head."""
    async with Directory(ctx, endpoints) as directory:
        head = await directory.head()
        push = connect_push(ctx, endpoints.acks)
        try:

            async def at_head() -> bool:
                push.send_nowait(protocol.build_ack(consumer, head))
                infos = {i.name: i for i in await directory.consumers()}
                return consumer in infos and infos[consumer].acked_seq >= head

            _ = await wait_until(at_head, timeout=10, message=f"{consumer} at the head")
        finally:
            push.close()
    return head
