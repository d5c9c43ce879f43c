"""The legacy database on a real PostgreSQL: schema applied or migrated once, generations, the relay."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.api.metrics import ApiMetrics
from actors.api.relay import OutboxRelayActor, PublishCommitted, RelayMessage, RelaySettings
from actors.legacy import db, embedded
from actors.runtime import ActorRef, ActorSystem
from core.bus import BusRejected, EventPublisher, PublishReceipt
from core.envelope import Envelope, utc_now
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    from_envelope,
    generation_of,
    to_envelope,
)
from tests.api.harness import eventually
from tests.support.fake_bus import FakeBus, FakeConnector
from tests.support.postgres import PgAdmin

FAST = RelaySettings(poll_interval=5.0, backoff_initial=0.02, backoff_max=0.2)


class CountingConnector(FakeConnector):
    """Counts how many times each event id was handed to the bus."""

    def __init__(self, bus: FakeBus) -> None:
        super().__init__(bus)
        self.sent: Counter[str] = Counter()
        self.given: set[str] = set()  # handed to the bus, confirmed or not yet

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        outer = self

        class Counting:
            async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
                outer.given.update(e.event_id for e in envelopes)
                receipts = await outer.bus.publish(envelopes)
                outer.sent.update(e.event_id for e in envelopes)
                return receipts

        yield Counting()


async def _create(pool: Any, slug: str, *, writer_publishes: bool = False) -> Envelope:
    account_id = str(uuid.uuid4())
    created_at = utc_now()
    event = AccountCreated(account_id, slug, slug, f"{slug}@x.io", f"acc-{slug}", created_at, 1)
    envelope = to_envelope(event, correlation_id="test")
    await db.insert_account(
        pool, account_id=account_id, slug=slug, name=slug, owner_email=f"{slug}@x.io",
        namespace=f"acc-{slug}", created_at=datetime.fromisoformat(created_at), event=envelope,
        writer_publishes=writer_publishes,
    )
    return envelope


@asynccontextmanager
async def relays(
    dsn: str, connector: FakeConnector, count: int = 1, settings: RelaySettings = FAST
) -> AsyncIterator[list[ActorRef[RelayMessage]]]:
    async with ActorSystem(stop_timeout=5.0) as system:
        yield [
            system.spawn(
                lambda: OutboxRelayActor(dsn, connector, ApiMetrics(), settings), name=f"relay-{i}"
            )
            for i in range(count)
        ]


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


async def test_a_version_1_database_is_migrated_to_generations_in_one_go(pg_admin: PgAdmin) -> None:
    dsn = await pg_admin.fresh_database(migrated=False)
    try:
        conn = await db.connect(dsn)
        try:
            await conn.execute(db.schema_sql(up_to=1))
            user = await conn.fetchval("INSERT INTO users (email) VALUES ('v1@x.io') RETURNING id")
            live, gone = str(uuid.uuid4()), str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO organizations (id, slug, name, namespace, created_by, deleted_at) "
                "VALUES ($1, 'live', 'Live', 'acc-live', $3, NULL), "
                "($2, 'gone', 'Gone', 'acc-gone', $3, now())",
                live, gone, user,
            )
        finally:
            await db.close_connection(conn)
        async with pool_for(dsn) as pool:
            applied = await asyncio.gather(*(db.ensure_schema(pool) for _ in range(3)))
            assert sorted(applied) == [False, False, True], "migrated once"
            assert await db.ensure_schema(pool) is False
            async with pool.acquire() as conn:
                versions = [r["version"] for r in await conn.fetch(
                    "SELECT version FROM legacy_schema_version ORDER BY 1"
                )]
            assert versions == [1, 2, 3, 4]
            fresh = await _create(pool, "after-migration")
            generations = [
                (await db.find_account(pool, aid) or pytest.fail(aid)).generation
                for aid in (live, gone, fresh.aggregate_id)
            ]
            assert generations == [1, 2, 1], "a deletion under version 1 was a change too"
    finally:
        await pg_admin.drop_database(dsn)


async def test_a_failed_migration_leaves_the_database_at_version_1(
    pg_admin: PgAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = await pg_admin.fresh_database(migrated=False)
    try:
        conn = await db.connect(dsn)
        try:
            await conn.execute(db.schema_sql(up_to=1))
        finally:
            await db.close_connection(conn)
        real = db._sql
        monkeypatch.setattr(
            db, "_sql", lambda name: real(name) + ("\nSELECT 1/0;" if name != "schema.sql" else "")
        )
        async with pool_for(dsn) as pool:
            with pytest.raises(asyncpg.DataError):
                await db.ensure_schema(pool)
            monkeypatch.undo()
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT max(version) FROM legacy_schema_version") == 1
                assert await conn.fetchval(
                    "SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'organizations' AND column_name = 'generation'"
                ) == 0, "the column came and went with the transaction"
            assert await db.ensure_schema(pool) is True
    finally:
        await pg_admin.drop_database(dsn)


async def test_delete_bumps_the_generation_with_the_soft_delete_and_its_outbox_row(
    pg_dsn: str,
) -> None:
    async with pool_for(pg_dsn) as pool:
        created = await _create(pool, "doomed")
        aid = created.aggregate_id
        deletion = to_envelope(AccountDeleted(aid, "doomed", "acc-doomed", utc_now(),
                           2, "N", "n@example.com", utc_now()),
                               correlation_id="t")
        at = datetime.now().astimezone()
        # A decision taken on a stale generation writes nothing.
        assert not await db.mark_deleted(pool, aid, at, deletion, 3)
        assert await db.backlog(pool) == 1
        assert await db.mark_deleted(pool, aid, at, deletion, 2)
        found = await db.find_account(pool, aid)
        assert found is not None
        assert (found.generation, found.deleted_at, found.updated_at) == (2, at, at)
        assert not await db.mark_deleted(pool, aid, at, deletion, 3), "already deleted"
        assert await db.backlog(pool) == 2


async def test_outbox_envelopes_come_back_from_jsonb_exactly_as_stored(pg_dsn: str) -> None:
    bus = FakeBus()
    async with pool_for(pg_dsn) as pool:
        created = await _create(pool, "roundtrip")
        deleted = to_envelope(
            AccountDeleted(created.aggregate_id, "roundtrip", "acc-roundtrip", utc_now(),
                           2, "N", "n@example.com", utc_now()),
            correlation_id="t",
        )
        assert await db.mark_deleted(
            pool, created.aggregate_id, datetime.now().astimezone(), deleted, 2
        )
        async with relays(pg_dsn, FakeConnector(bus)):
            await eventually(lambda: _backlog_is(pool, 0), timeout=10, message="relayed")
    assert bus.history == [created, deleted]
    assert [(e.key, e.tombstone) for e in bus.history] == [
        (f"account:{created.aggregate_id}", False), (f"account:{created.aggregate_id}", True)
    ]
    assert [generation_of(from_envelope(e)) for e in bus.history] == [1, 2]


async def test_several_relays_publish_every_event_exactly_once(pg_dsn: str) -> None:
    bus = FakeBus()
    connector = CountingConnector(bus)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, connector, count=3):
        envelopes = await asyncio.gather(*(_create(pool, f"r{i}") for i in range(40)))
        await eventually(lambda: _backlog_is(pool, 0), timeout=15, message="outbox drained")
    assert {e.event_id for e in bus.history} == {e.event_id for e in envelopes}
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
                AccountDeleted(
                    str(uuid.uuid4()), "late", "acc-late", utc_now(), 2, "N", "n@example.com",
                    utc_now(),
                ), correlation_id="t"
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
    return any(e.event_id == event_id for e in bus.history)


async def test_relay_keeps_an_accounts_events_in_order_while_another_relay_holds_one(
    pg_dsn: str,
) -> None:
    bus = FakeBus()
    async with pool_for(pg_dsn) as pool:
        created = await _create(pool, "ordered")
        deleted = to_envelope(
            AccountDeleted(created.aggregate_id, "ordered", "acc-ordered", utc_now(),
                           2, "N", "n@example.com", utc_now()),
            correlation_id="t",
        )
        assert await db.mark_deleted(
            pool, created.aggregate_id, datetime.now().astimezone(), deleted, 2
        )
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
    order = [e.event_id for e in bus.history if e.aggregate_id == created.aggregate_id]
    assert order == [created.event_id, deleted.event_id]


async def test_a_writer_that_publishes_its_rows_itself_wakes_no_relay(pg_dsn: str) -> None:
    """Its transaction's NOTIFY says so, and `db.listen` passes it over; any other insert
    wakes the relays as before."""
    woken: list[str] = []
    payloads: asyncio.Queue[str] = asyncio.Queue()
    async with pool_for(pg_dsn) as pool:
        listener = await db.connect(pg_dsn)
        try:
            await listener.add_listener(db.NOTIFY_CHANNEL, lambda *n: payloads.put_nowait(n[3]))
            await db.listen(listener, lambda: woken.append("woken"))
            await _create(pool, "handed", writer_publishes=True)
            await _create(pool, "claimed")
            seen = [await asyncio.wait_for(payloads.get(), 5) for _ in range(2)]
        finally:
            await db.close_connection(listener)
    assert seen == [db.WRITER_PUBLISHES, ""]
    assert woken == ["woken"], "only the claimed row's NOTIFY woke the listener"


@pytest.mark.parametrize("handover_fails", [False, True], ids=["published", "left-to-a-claim"])
async def test_a_handed_over_create_is_published_once_and_its_row_marked(
    pg_dsn: str, handover_fails: bool
) -> None:
    bus = FakeBus()
    connector = CountingConnector(bus)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, connector) as [relay]:
        first = await _create(pool, "first")  # its NOTIFY wakes the relay: claimed
        await eventually(lambda: _backlog_is(pool, 0), timeout=5, message="first claimed")
        # From here the relay's next poll is FAST.poll_interval (5 s) away and the NOTIFY of
        # this create wakes nobody: only the hand-over publishes it in time, or the claim
        # pass that a failed hand-over runs at once.
        handed = await _create(pool, "handed", writer_publishes=True)
        if handover_fails:
            bus.fail_next(1)
        relay.tell(PublishCommitted((handed,)))
        await eventually(lambda: _backlog_is(pool, 0), timeout=3, message="handed over")
        async with pool.acquire() as conn:
            seq = await conn.fetchval(
                "SELECT published_seq FROM fabric_outbox WHERE event_id = $1", handed.event_id
            )
    assert [e.event_id for e in bus.history] == [first.event_id, handed.event_id]
    assert seq == bus.head, "marked with the broker's seq"
    assert set(connector.sent.values()) == {1}, "no event handed to the bus twice"


async def test_a_hand_over_its_relay_claimed_meanwhile_is_not_sent_again(pg_dsn: str) -> None:
    bus = FakeBus()
    connector = CountingConnector(bus)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, connector) as [relay]:
        first = await _create(pool, "first")  # published: the relay listens for NOTIFYs now
        await eventually(lambda: _backlog_is(pool, 0), timeout=5, message="relay idle")
        bus.hold()
        handed = await _create(pool, "handed", writer_publishes=True)
        other = await _create(pool, "other")  # its NOTIFY starts a claim pass, which takes both
        # A claim pass (this one, or a poll that came first) is publishing the handed row.
        await eventually(lambda: _given(connector, handed), timeout=5, message="row claimed")
        relay.tell(PublishCommitted((handed,)))
        bus.release()
        await eventually(lambda: _backlog_is(pool, 0), timeout=5, message="published")
        await eventually(lambda: _logged(bus, other.event_id), timeout=5, message="other")
    assert [e.event_id for e in bus.history] == [first.event_id, handed.event_id, other.event_id]
    assert set(connector.sent.values()) == {1}, "the hand-over was not sent again"


async def _given(connector: CountingConnector, envelope: Envelope) -> bool:
    return envelope.event_id in connector.given


async def test_relay_retries_while_the_broker_is_away(pg_dsn: str) -> None:
    bus = FakeBus()
    bus.fail_next(4)
    async with pool_for(pg_dsn) as pool, relays(pg_dsn, FakeConnector(bus)):
        envelope = await _create(pool, "patient")
        await eventually(lambda: _logged(bus, envelope.event_id), timeout=10, message="published")
        await eventually(lambda: _backlog_is(pool, 0), timeout=5, message="marked published")
    assert [e.event_id for e in bus.history] == [envelope.event_id]


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
    assert [e.event_id for e in bus.history] == [first.event_id, last.event_id]
    assert set_aside == 2


async def test_a_version_2_database_gets_plans_and_suspension_with_its_rows_unchanged(
    pg_admin: PgAdmin,
) -> None:
    dsn = await pg_admin.fresh_database(migrated=False)
    try:
        conn = await db.connect(dsn)
        try:
            await conn.execute(db.schema_sql(up_to=2))
            user = await conn.fetchval("INSERT INTO users (email) VALUES ('v2@x.io') RETURNING id")
            live = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO organizations (id, slug, name, namespace, created_by, generation) "
                "VALUES ($1, 'old', 'Old', 'acc-old', $2, 4)",
                live, user,
            )
            await conn.execute(
                "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')",
                live, user,
            )
        finally:
            await db.close_connection(conn)
        async with pool_for(dsn) as pool:
            assert await db.ensure_schema(pool) is True
            assert await db.ensure_schema(pool) is False
            async with pool.acquire() as conn:
                versions = [r["version"] for r in await conn.fetch(
                    "SELECT version FROM legacy_schema_version ORDER BY 1"
                )]
            assert versions == [1, 2, 3, 4]
            found = await db.find_account(pool, live)
            assert found is not None
            assert (found.plan, found.suspended_at, found.generation, found.owner_email) == (
                "standard", None, 4, "v2@x.io"
            )
    finally:
        await pg_admin.drop_database(dsn)


async def test_the_plan_column_takes_every_plan_on_sale_and_nothing_else(pg_dsn: str) -> None:
    from core.plans import PLANS

    async with pool_for(pg_dsn) as pool:
        for plan in PLANS:
            envelope = await _create(pool, f"on-{plan}")
            async with pool.acquire() as conn:
                await conn.execute(
                    "UPDATE organizations SET plan = $2 WHERE id = $1", envelope.aggregate_id, plan
                )
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE organizations SET plan = 'gold'")


def _update(aid: str, generation: int, **state: Any) -> dict[str, Any]:
    """update_account's arguments: the whole state at `generation`, with an outbox event."""
    full = {"name": "N", "owner_email": "handed@x.io", "plan": "standard", "suspended": False,
            **state}
    event = to_envelope(
        AccountUpdated(aid, "s", full["name"], full["owner_email"], "acc-s", utc_now(), generation,
                       full["plan"], full["suspended"]),
        correlation_id="t",
    )
    return {"generation": generation, "updated_at": datetime.now().astimezone(), "event": event,
            **full}


async def test_an_update_moves_one_generation_on_keeps_the_suspension_time_and_hands_over(
    pg_dsn: str,
) -> None:
    async with pool_for(pg_dsn) as pool:
        aid = (await _create(pool, "handed")).aggregate_id
        assert not await db.update_account(pool, aid, **_update(aid, 3)), "stale: nothing written"
        assert await db.backlog(pool) == 1
        assert await db.update_account(pool, aid, **_update(aid, 2, suspended=True, plan="large"))
        first = await db.find_account(pool, aid)
        assert first is not None
        assert first.suspended_at is not None
        assert (first.generation, first.plan) == (2, "large")
        assert await db.update_account(
            pool, aid, **_update(aid, 3, suspended=True, owner_email="Next@X.io")
        )
        second = await db.find_account(pool, aid)
        assert second is not None
        assert second.suspended_at == first.suspended_at, "still the moment it began"
        assert second.owner_email.lower() == "next@x.io"
        async with pool.acquire() as conn:
            roles = dict(await conn.fetch(
                "SELECT lower(u.email), m.role FROM memberships m JOIN users u ON u.id = m.user_id "
                "WHERE m.organization_id = $1", aid,
            ))
        assert roles == {"handed@x.io": "admin", "next@x.io": "owner"}
        assert await db.update_account(pool, aid, **_update(aid, 4, suspended=False))
        resumed = await db.find_account(pool, aid)
        assert resumed is not None
        assert resumed.suspended_at is None
        assert await db.backlog(pool) == 4
        await db.mark_deleted(
            pool, aid, datetime.now().astimezone(),
            to_envelope(AccountDeleted(aid, "s", "acc-s", utc_now(), 5, "N", "n@x.io", utc_now()),
                        correlation_id="t"), 5,
        )
        assert not await db.update_account(pool, aid, **_update(aid, 6)), "deleted: refused"


@pytest.mark.parametrize(("limit", "more"), [(2, True), (3, True), (10, False)])
async def test_a_relay_pass_says_whether_it_may_have_left_rows_behind(
    pg_dsn: str, limit: int, more: bool
) -> None:
    # A pass that took every row there was lets the relay wait for the next NOTIFY instead of
    # claiming again at once (an empty claim per batch under load); a full one claims again.
    published: list[str] = []

    async def publish(envelopes: Sequence[Envelope]) -> list[int]:
        published.extend(e.event_id for e in envelopes)
        return list(range(len(published) - len(envelopes) + 1, len(published) + 1))

    async with pool_for(pg_dsn) as pool:
        await asyncio.gather(*(_create(pool, f"m{limit}-{i}") for i in range(3)))
        result = await db.relay_batch(pool, limit, publish)
    assert result.published == min(limit, 3)
    assert result.more is more
