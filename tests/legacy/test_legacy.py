"""The legacy database: schema applied once when missing; the outbox relay against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from actors.api.metrics import ApiMetrics
from actors.api.relay import OutboxRelayActor, RelaySettings
from actors.legacy import db, embedded
from actors.runtime import ActorSystem
from core.bus import BusRejected, EventPublisher, PublishReceipt
from core.envelope import Envelope, utc_now
from core.events import AccountCreated, AccountDeleted, to_envelope
from tests.api.harness import FakeConnector, eventually
from tests.support.fake_bus import FakeBus
from tests.support.postgres import PgAdmin

FAST = RelaySettings(poll_interval=5.0, backoff_initial=0.02, backoff_max=0.2)


class CountingConnector(FakeConnector):
    """Counts how many times each event id was handed to the bus."""

    def __init__(self, bus: FakeBus) -> None:
        super().__init__(bus)
        self.sent: Counter[str] = Counter()

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        outer = self

        class Counting:
            async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
                receipts = await outer.bus.publish(envelopes)
                outer.sent.update(e.event_id for e in envelopes)
                return receipts

        yield Counting()


async def _create(pool: Any, slug: str) -> Envelope:
    account_id = str(uuid.uuid4())
    created_at = utc_now()
    event = AccountCreated(account_id, slug, slug, f"{slug}@x.io", f"acc-{slug}", created_at)
    envelope = to_envelope(event, correlation_id="test")
    await db.insert_account(
        pool, account_id=account_id, slug=slug, name=slug, owner_email=f"{slug}@x.io",
        namespace=f"acc-{slug}", created_at=datetime.fromisoformat(created_at), event=envelope,
    )
    return envelope


@asynccontextmanager
async def relays(
    dsn: str, connector: FakeConnector, count: int = 1, settings: RelaySettings = FAST
) -> AsyncIterator[None]:
    async with ActorSystem(stop_timeout=5.0) as system:
        for i in range(count):
            system.spawn(
                lambda: OutboxRelayActor(dsn, connector, ApiMetrics(), settings), name=f"relay-{i}"
            )
        yield


@asynccontextmanager
async def pool_for(dsn: str) -> AsyncIterator[Any]:
    pool = await db.create_pool(dsn)
    try:
        yield pool
    finally:
        await pool.close()


async def test_schema_is_applied_once_when_missing(pg_admin: PgAdmin) -> None:
    dsn = await pg_admin.fresh_database(migrated=False)
    try:
        async with pool_for(dsn) as pool:
            applied = await asyncio.gather(*(db.ensure_schema(pool) for _ in range(3)))
            assert sorted(applied) == [False, False, True]
            assert await db.ensure_schema(pool) is False
            await _create(pool, "fresh")
            assert await db.backlog(pool) == 1
    finally:
        await pg_admin.drop_database(dsn)


async def test_several_relays_publish_every_event_exactly_once(pg_dsn: str) -> None:
    bus = FakeBus()
    connector = CountingConnector(bus)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, connector, count=3):
        envelopes = await asyncio.gather(*(_create(pool, f"r{i}") for i in range(40)))
        await eventually(lambda: _backlog_is(pool, 0), timeout=15, message="outbox drained")
    assert {e.event_id for e in bus.log} == {e.event_id for e in envelopes}
    assert set(connector.sent.values()) == {1}, "no event handed to the bus twice"


async def _backlog_is(pool: Any, count: int) -> bool:
    return await db.backlog(pool) == count


async def test_late_committing_transaction_is_not_skipped(pg_dsn: str) -> None:
    bus = FakeBus()
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, FakeConnector(bus)):
        slow = await db.connect(pg_dsn)
        try:
            # An earlier id, committed after a later one: a high-water mark would skip it.
            tx = slow.transaction()
            await tx.start()
            early = to_envelope(
                AccountDeleted(str(uuid.uuid4()), "late", "acc-late", utc_now()), correlation_id="t"
            )
            await slow.execute(
                "INSERT INTO fabric_outbox (event_id, aggregate_id, event_type, envelope) "
                "VALUES ($1, $2, $3, $4::jsonb)",
                early.event_id, early.aggregate_id, early.type, _json(early),
            )
            later = await _create(pool, "later")
            await eventually(lambda: _logged(bus, later.event_id), timeout=5, message="later one")
            await tx.commit()
        finally:
            await db.close_connection(slow)
        await eventually(lambda: _logged(bus, early.event_id), timeout=5, message="late commit")


def _json(envelope: Envelope) -> str:
    import json

    return json.dumps(envelope.to_wire())


async def _logged(bus: FakeBus, event_id: str) -> bool:
    return any(e.event_id == event_id for e in bus.log)


async def test_relay_keeps_an_accounts_events_in_order_while_another_relay_holds_one(
    pg_dsn: str,
) -> None:
    bus = FakeBus()
    async with pool_for(pg_dsn) as pool:
        created = await _create(pool, "ordered")
        deleted = to_envelope(
            AccountDeleted(created.aggregate_id, "ordered", "acc-ordered", utc_now()),
            correlation_id="t",
        )
        assert await db.mark_deleted(pool, created.aggregate_id, datetime.now().astimezone(), deleted)
        holder = await db.connect(pg_dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            # Another relay has claimed the first event and not finished yet.
            await holder.execute(
                "SELECT 1 FROM fabric_outbox WHERE event_id = $1 FOR UPDATE", created.event_id
            )
            # The held-back row gets no new NOTIFY: the periodic poll must pick it up.
            polling = RelaySettings(poll_interval=0.1, backoff_initial=0.02, backoff_max=0.2)
            async with relays(pg_dsn, FakeConnector(bus), settings=polling):
                other = await _create(pool, "unrelated")
                await eventually(lambda: _logged(bus, other.event_id), timeout=5, message="other")
                assert not await _logged(bus, deleted.event_id), "deletion overtook the creation"
                await tx.rollback()
                await eventually(lambda: _logged(bus, deleted.event_id), timeout=5, message="both")
        finally:
            await db.close_connection(holder)
    order = [e.event_id for e in bus.log if e.aggregate_id == created.aggregate_id]
    assert order == [created.event_id, deleted.event_id]


async def test_relay_retries_while_the_broker_is_away(pg_dsn: str) -> None:
    bus = FakeBus()
    bus.fail_next(4)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, FakeConnector(bus)):
        envelope = await _create(pool, "patient")
        await eventually(lambda: _logged(bus, envelope.event_id), timeout=10, message="published")
        await eventually(lambda: _backlog_is(pool, 0), timeout=5, message="marked published")
    assert [e.event_id for e in bus.log] == [envelope.event_id]


def test_embedded_server_argv_and_dsn(tmp_path: Path) -> None:
    argv = embedded.command(tmp_path / "data", 5999, tmp_path / "sock", settings={"fsync": "off"})
    postgres = argv.index(str(embedded.bin_dir() / "postgres"))
    assert argv[postgres + 1 :] == [
        "-D", str((tmp_path / "data").resolve()), "-p", "5999", "-h", "127.0.0.1",
        "-k", str((tmp_path / "sock").resolve()), "-c", "fsync=off",
    ]
    assert embedded.dsn(5999) == "postgresql://postgres@127.0.0.1:5999/postgres"


class RejectingConnector(FakeConnector):
    """A bus that refuses, for good, any batch holding one poisoned event id."""

    def __init__(self, bus: FakeBus) -> None:
        super().__init__(bus)
        self.poisoned: set[str] = set()

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        outer = self

        class Rejecting:
            async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
                if any(e.event_id in outer.poisoned for e in envelopes):
                    raise BusRejected("poisoned")
                return await outer.bus.publish(envelopes)

        yield Rejecting()


async def test_unpublishable_rows_are_quarantined_not_retried_in_front_of_the_rest(
    pg_dsn: str,
) -> None:
    bus = FakeBus()
    connector = RejectingConnector(bus)
    async with pool_for(pg_dsn) as pool:
        first = await _create(pool, "first")
        refused = await _create(pool, "refused")
        connector.poisoned.add(refused.event_id)
        conn = await db.connect(pg_dsn)
        try:
            await conn.execute(
                "INSERT INTO fabric_outbox (event_id, aggregate_id, event_type, envelope) "
                "VALUES ($1, $2, 'account.created', '{\"not\": \"an envelope\"}'::jsonb)",
                str(uuid.uuid4()), str(uuid.uuid4()),
            )
        finally:
            await db.close_connection(conn)
        last = await _create(pool, "last")
        async with relays(pg_dsn, connector):
            await eventually(lambda: _backlog_is(pool, 0), timeout=10, message="outbox settled")
        async with pool.acquire() as conn:
            set_aside = await conn.fetchval(
                "SELECT count(*) FROM fabric_outbox WHERE published_seq IS NULL"
            )
    assert [e.event_id for e in bus.log] == [first.event_id, last.event_id]
    assert set_aside == 2
