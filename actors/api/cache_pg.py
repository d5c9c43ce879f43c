"""The PostgreSQL query cache (asyncpg): one database several API replicas share.

Implements `core.cache.AccountCache` with the SQLite cache's contract
(actors/api/cache_store.py): the same tables, in a schema of their own
(`fabric_cache`) of the database `--cache-dsn` names, and the same
generation guards as SQL (actors/api/cache_pg_sql.py). A batch is one
transaction. Its statements run in the order of the rows they lock (account
id, then the account row before its reports, then new cluster names by
name), so concurrent batches never deadlock; inside one row the batch's
order is kept, and since each statement touches only its own row, the
per-change answers are those of the batch's order.

The schema is created on first use under an advisory lock (several replicas
may start at once). The pool connects lazily, so the API starts while
PostgreSQL is down; every call made meanwhile raises
`DependencyUnavailable("cache")`, and the next call after it is back works.

Replicas. Each committed batch also sends, in its transaction (so only on
commit), `NOTIFY` on the schema's channel with the ids of the accounts it
changed and whether it added a cluster. `listen` keeps a connection that
LISTENs (reconnecting with the shared backoff) and hands those ids to the
cache actor, which wakes its waiters: `account.wait` on one replica wakes
when another replica's event driver applied the outcome. While it is not
listening, or right after it reconnected (it may have missed some), it
reports "anything changed" and `known_clusters` reads the table each time;
once listening again it is kept in memory, dropped at each notice of a new
cluster.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, assert_never

import asyncpg
import structlog

from actors.api.cache_pg_sql import SCHEMA_SQL, SCHEMA_VERSION, Statements, identifier
from actors.legacy.db import UNAVAILABLE, Connection, Pool
from core.account import AccountRecord, ClusterReport, StatusHint
from core.backoff import Backoff, Retry
from core.cache import CacheView, Change, ChangeListener, report_of
from core.errors import DependencyUnavailable
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    OutcomeEvent,
)

SCHEMA = "fabric_cache"
LISTENER_NAME = "fabric-cache-listener"  # its application_name: operators (and tests) can find it
FEEDER_NAME = "fabric-cache-feeder"  # the connection that holds the feed lease
_FEED_LOCK = 7_311_044  # advisory lock class of the feed lease; the second key is the schema's
_SCHEMA_LOCK = 7_311_043  # advisory lock key: one schema applier (or rebuild swap) at a time
_IDS_PER_NOTICE = 150  # a NOTIFY payload holds < 8000 bytes: 150 quoted uuids fit
_DEADLOCK_RETRIES = 3
_ACCOUNT_WIDTH = 12  # the columns of an account row (`_record`), before a joined report's

# A read-only server (a replica promoted late, a standby) cannot take our writes either.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *UNAVAILABLE, asyncpg.exceptions.ReadOnlySQLTransactionError,
)

log = structlog.get_logger()

class PgCache:
    shared = True  # several API replicas write one database

    def __init__(
        self, dsn: str, *, schema: str = SCHEMA, timeout: float = 5.0,
        backoff: Backoff | None = None, keepalive: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.schema = identifier(schema)
        self.channel = self.schema  # one channel per cache: a rebuild's fresh one wakes no one
        self._sql = Statements(self.schema)
        self._timeout = timeout
        self._backoff = backoff or Backoff(initial=0.1, cap=2.0)
        self._keepalive = keepalive
        self._pool: Pool = None
        self._ready = False  # the schema exists (checked once per instance)
        self._listening = False
        self._clusters: list[str] | None = None  # kept only while listening
        self._epoch = 0  # bumped at each invalidation: a read that raced one is not kept
        self._feed: Connection | None = None  # asks for, then holds, the feed lease
        self._feed_held = False
        self._feed_checked = 0.0

    @classmethod
    async def open(cls, dsn: str, **options: Any) -> PgCache:
        """A cache whose pool connects lazily: PostgreSQL may be down now."""
        cache = cls(dsn, **options)
        cache._pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=2, timeout=cache._timeout, command_timeout=cache._timeout
        )
        return cache

    async def close(self) -> None:
        self._drop_feed()
        if self._pool is None:
            return
        try:
            await asyncio.wait_for(self._pool.close(), self._timeout)
        except TimeoutError:
            self._pool.terminate()  # a server that stopped answering: do not wait on it

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.acquire() as conn:
                if not self._ready:
                    await self._create_schema(conn)
                yield conn
        except _UNAVAILABLE as exc:
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    async def _create_schema(self, conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA_SQL.format(s=self.schema, version=SCHEMA_VERSION))
        self._ready = True

    # writes -----------------------------------------------------------------------------
    async def sync(self) -> None:
        """Nothing to do: a PostgreSQL commit is durable when it returns."""

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply a batch in one transaction; per change, whether the cache changed."""
        order = sorted(range(len(changes)), key=lambda i: _lock_key(changes[i]))
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with self._connection() as conn, conn.transaction():
                    changed, added = await self._apply_all(conn, changes, order)
                break
            except asyncpg.exceptions.DeadlockDetectedError:
                # Not expected (statements run in lock order); should one come, retry it whole.
                if attempt + 1 == _DEADLOCK_RETRIES:
                    raise
        if added and self._clusters is not None:
            self._clusters = sorted(set(self._clusters) | added)
        return changed

    async def _apply_all(
        self, conn: Connection, changes: Sequence[Change], order: list[int]
    ) -> tuple[list[bool], set[str]]:
        changed = [False] * len(changes)
        for i in order:
            changed[i] = await self._apply(conn, changes[i])
        known = set(self._clusters or ())
        reporting = {
            c.event.cluster for c, did in zip(changes, changed, strict=True)
            if did and isinstance(c.event, OutcomeEvent) and c.event.cluster not in known
        }
        added = {name for name in sorted(reporting)
                 if await conn.fetchval(self._sql.add_cluster, name) is not None}
        ids = sorted({c.event.account_id for c, did in zip(changes, changed, strict=True) if did})
        for start in range(0, max(len(ids), 1 if added else 0), _IDS_PER_NOTICE):
            notice = {"ids": ids[start : start + _IDS_PER_NOTICE], "clusters": bool(added)}
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, json.dumps(notice))
        return changed, added

    async def _apply(self, conn: Connection, change: Change) -> bool:
        event = change.event
        match event:
            case AccountCreated():
                # AccountUpdated too (a subclass): the whole state at its generation.
                updated_at = change.occurred_at if isinstance(event, AccountUpdated) else None
                return await self._changed(
                    conn, self._sql.created, event.account_id, event.slug, event.name,
                    event.owner_email, event.namespace, event.created_at, event.generation,
                    updated_at or event.created_at, event.plan, event.suspended,
                )
            case AccountDeleted():
                # An empty last state (a tombstone written without it) keeps the row hidden.
                return await self._changed(
                    conn, self._sql.deleted, event.account_id, event.slug, event.name or None,
                    event.owner_email or None, event.namespace, event.created_at or None,
                    event.deleted_at, event.generation,
                )
            case NamespaceProvisioned() | NamespaceProvisionFailed() | NamespaceDeleted():
                return await self._report(conn, event.account_id, report_of(event, change.occurred_at))
            case _:
                assert_never(event)

    async def _report(self, conn: Connection, account_id: str, r: ClusterReport) -> bool:
        return await self._changed(
            conn, self._sql.report, account_id, r.cluster, r.state, r.observed_generation,
            r.attempts, r.updated_at, r.error,
        )

    @staticmethod
    async def _changed(conn: Connection, sql: str, *args: object) -> bool:
        return await conn.fetchval(sql, *args) is not None

    async def claim_feed(self) -> bool:
        """The feed lease is a session advisory lock on a connection of its own: held while
        that session lives, so a replica that dies (or loses PostgreSQL) frees it at once,
        and a standby's next claim takes it (one round trip on its open connection). While
        held, the session must answer once per keepalive interval, so a silent network is
        noticed; a lost session is `DependencyUnavailable`, and the driver stops feeding."""
        try:
            conn = self._feed
            if conn is None or conn.is_closed():
                self._drop_feed()
                conn = await asyncpg.connect(
                    self._dsn, timeout=self._timeout, command_timeout=self._timeout,
                    server_settings={"application_name": FEEDER_NAME},
                )
                self._feed = conn
            now = time.monotonic()
            if self._feed_held:
                if now - self._feed_checked >= self._keepalive:
                    await conn.fetchval("SELECT 1")
                    self._feed_checked = now
                return True
            self._feed_held = bool(
                await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", _FEED_LOCK,
                                    self.schema)
            )
            self._feed_checked = now
            return self._feed_held
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            self._drop_feed()
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    def _drop_feed(self) -> None:
        feed, self._feed, self._feed_held = self._feed, None, False
        if feed is not None:
            feed.terminate()  # the lease goes with the session: another replica takes it

    async def needs_replay(self) -> bool:
        async with self._connection() as conn:
            return bool(await conn.fetchval(self._sql.needs_replay))

    async def mark_replayed(self) -> None:
        async with self._connection() as conn:
            await conn.execute(self._sql.mark_replayed)

    # reads ------------------------------------------------------------------------------
    async def get_by_id(self, account_id: str) -> AccountRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._sql.by_id, account_id)
        return None if row is None else _record(row)

    async def get_by_slug(self, slug: str) -> AccountRecord | None:
        # Slugs are unique in the legacy database; should one ever be reused, the live one wins.
        async with self._connection() as conn:
            row = await conn.fetchrow(self._sql.by_slug, slug)
        return None if row is None else _record(row)

    async def list_after(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> list[AccountRecord]:
        async with self._connection() as conn:
            if hint is None:
                rows = await conn.fetch(self._sql.list_after, after or 0, limit)
            elif hint.settled is None:
                rows = await conn.fetch(self._sql.list_kept[hint.deleted, None], after or 0, limit)
            else:
                rows = await conn.fetch(
                    self._sql.list_kept[hint.deleted, hint.settled], after or 0, limit,
                    list(hint.online),
                )
        return [_record(row) for row in rows]

    async def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]:
        out: dict[str, list[ClusterReport]] = {a: [] for a in account_ids}
        if not account_ids:
            return out
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql.reports, list(account_ids))
        for account_id, *report in rows:
            out[account_id].append(ClusterReport(*report))
        return out

    async def known_clusters(self) -> list[str]:
        if self._clusters is not None:
            return list(self._clusters)
        epoch = self._epoch
        async with self._connection() as conn:
            names = [row[0] for row in await conn.fetch(self._sql.clusters)]
        if self._listening and epoch == self._epoch:
            self._clusters = names
        return list(names)

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        sql, key = (
            (self._sql.find_by_id, account_id) if account_id is not None
            else (self._sql.find_by_slug, slug or "")
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, key)
        if not rows:
            return CacheView([], {}, await self.known_clusters())
        record = _record(tuple(rows[0])[:_ACCOUNT_WIDTH])
        reports = [ClusterReport(*tuple(row)[_ACCOUNT_WIDTH:]) for row in rows
                   if row[_ACCOUNT_WIDTH] is not None]
        return CacheView([record], {record.id: reports}, await self.known_clusters())

    async def page(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> CacheView:
        return await self._view(await self.list_after(after, limit, hint))

    async def _view(self, records: list[AccountRecord]) -> CacheView:
        reports = await self.reports([r.id for r in records]) if records else {}
        return CacheView(records, reports, await self.known_clusters())

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything the cache knows, as `SqliteCache.dump` gives it (comparable across both)."""
        async with self._connection() as conn:
            accounts = [tuple(r) for r in await conn.fetch(self._sql.dump_accounts)]
            reports = [tuple(r) for r in await conn.fetch(self._sql.dump_reports)]
        return {"accounts": accounts, "reports": reports}

    # other writers ----------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._clusters = None
        self._epoch += 1

    async def listen(self, changed: ChangeListener) -> None:
        """LISTEN for other writers' commits until cancelled, reconnecting when cut off."""
        retry = Retry(self._backoff)
        bound = log.bind(channel=self.channel)
        while True:
            try:
                await self._listen_once(changed, retry, bound)
            except asyncio.CancelledError:
                raise
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                bound.warning("cache_listen_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._listening = False
                self._invalidate()
            await asyncio.sleep(retry.next_delay())

    async def _listen_once(
        self, changed: ChangeListener, retry: Retry, bound: structlog.stdlib.BoundLogger
    ) -> None:
        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout, server_settings={"application_name": LISTENER_NAME}
        )
        lost = asyncio.Event()

        def notified(_conn: Connection, _pid: int, _channel: str, payload: str) -> None:
            try:
                notice = json.loads(payload)
                ids, clusters = notice["ids"], bool(notice["clusters"])
            except (ValueError, KeyError, TypeError):
                ids, clusters = None, True  # a rebuild's swap, or a notice we do not know
            if clusters or ids is None:
                self._invalidate()
            changed(None if ids is None else [str(i) for i in ids])

        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, notified)
            self._invalidate()
            self._listening = True
            retry.reset()
            bound.info("cache_listening")
            changed(None)  # what was committed while no one listened
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self._keepalive)
                except TimeoutError:
                    # A silent network loses no FIN: ask, so a dead peer is noticed.
                    await conn.fetchval("SELECT 1", timeout=self._timeout)
            raise ConnectionResetError("the cache's LISTEN connection was closed")
        finally:
            self._listening = False
            conn.terminate()


def _lock_key(change: Change) -> tuple[str, int, str]:
    """The row a change locks: account rows before report rows, each account's together."""
    event = change.event
    if isinstance(event, OutcomeEvent):
        return event.account_id, 1, event.cluster
    return event.account_id, 0, ""


def _record(row: Any) -> AccountRecord:
    (account_id, slug, name, owner_email, namespace, created_at, deleted_at, generation,
     updated_at, position, plan, suspended) = row
    return AccountRecord(
        account_id, slug, name, owner_email, namespace, created_at, deleted_at, generation,
        updated_at, position, plan, bool(suspended),
    )


class PgRebuild:
    """Where `rebuild_cache` builds a fresh PostgreSQL cache: a schema beside it, renamed over it."""

    def __init__(self, dsn: str, schema: str = SCHEMA) -> None:
        self._dsn = dsn
        self.schema = identifier(schema)
        self._fresh_schema = identifier(f"{schema}_rebuild")
        self._fresh: PgCache | None = None

    async def _admin(self, *statements: str) -> None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=5.0)
        except _UNAVAILABLE as exc:
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close(timeout=2)

    async def open_fresh(self) -> PgCache:
        await self._admin(f"DROP SCHEMA IF EXISTS {self._fresh_schema} CASCADE")
        self._fresh = await PgCache.open(self._dsn, schema=self._fresh_schema)
        return self._fresh

    async def promote(self) -> None:
        fresh, self._fresh = self._fresh, None
        assert fresh is not None, "open_fresh first"
        await fresh.close()
        # One transaction: readers see the old tables or the new ones, never none. The
        # notice tells every replica's listener to forget what it kept and wake its waiters.
        await self._admin(
            f"DROP SCHEMA IF EXISTS {self.schema} CASCADE",
            f"ALTER SCHEMA {self._fresh_schema} RENAME TO {self.schema}",
            f"NOTIFY {self.schema}, 'rebuilt'",
        )

    async def open_live(self) -> PgCache:
        return await PgCache.open(self._dsn, schema=self.schema)
