"""Small builders shared by the broker tests.

Every client talks to the broker as the identity that may do what it does
(`tests.support.keys`): `api` publishes account events and reads `cache*`
consumers, `cluster-NAME` reads `cluster:NAME` and publishes `outcome:NAME:*`.
"""

from __future__ import annotations

import functools
import itertools
import uuid

from core.envelope import Envelope, new_event_id, utc_now
from tests.support.keys import api_keys, consumer_keys, publisher_identity, publisher_keys
from tests.support.wait import wait_until
from transport import codec, protocol
from transport.client import BrokerEndpoints, Directory, Publisher
from transport.control import ControlChannel
from transport.sockets import Context, connect_push

READER = "cache-probe"  # a consumer the api identity may read


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
    (an int) or gives the key itself (a str), so by default no two events share a key.
    An `outcome:NAME:*` key's payload names its cluster NAME, as a daemon's report does."""
    aggregate = account(key if isinstance(key, int) else n)
    full_key = key if isinstance(key, str) else f"account:{aggregate}"
    payload: dict[str, str | int] = {"n": n, "slug": f"acc-{n}"}
    if full_key.startswith("outcome:"):
        payload["cluster"] = full_key.split(":")[1]
    return Envelope(
        event_id=event_id or new_event_id(),
        type="account.deleted" if tombstone else "account.created",
        schema_version=2,
        aggregate_id=aggregate,
        key=full_key,
        tombstone=tombstone,
        occurred_at=utc_now(),
        correlation_id=f"test-{n}",
        payload=payload,
    )


async def publish(ctx: Context, endpoints: BrokerEndpoints, events: list[Envelope]) -> list[int]:
    """Publish in order, each run of events as the identity that may publish it; their seqs."""
    seqs: list[int] = []
    for _identity, run in itertools.groupby(events, key=lambda e: publisher_identity(e.key)):
        batch = list(run)
        async with Publisher(ctx, endpoints, keys=publisher_keys(batch[0].key)) as pub:
            seqs += [r.seq for r in await pub.publish(batch)]
    return seqs


async def read_log(
    ctx: Context, endpoints: BrokerEndpoints, *, consumer: str = READER, key_prefix: str = ""
) -> list[tuple[int, Envelope]]:
    """Every retained record from seq 0, as a new reader would get it, read with explicit
    positions under `consumer` (whose own position, and so its hold on tombstones, stays)."""
    channel = ControlChannel(ctx, endpoints.control, consumer_keys(consumer), name="probe")
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
    async with Directory(ctx, endpoints, keys=api_keys()) as directory:
        head = await directory.head()
        push = connect_push(ctx, endpoints.acks, consumer_keys(consumer))
        try:

            async def at_head() -> bool:
                push.send_nowait(protocol.build_ack(consumer, head))
                infos = {i.name: i for i in await directory.consumers()}
                return consumer in infos and infos[consumer].acked_seq >= head

            _ = await wait_until(at_head, timeout=10, message=f"{consumer} at the head")
        finally:
            push.close()
    return head
