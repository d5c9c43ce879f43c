"""The only module that imports asyncpg: pools, the legacy schema, account rows and the outbox.

Every query uses `$n` parameters (never string-built SQL). Connection-level
failures (server down, restarting, unreachable, timed out) are translated once,
here, into `DependencyUnavailable("legacy")`; a create that raises it wrote
nothing, because the account row and its outbox row share one transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, TypeAlias

import asyncpg

from core.bus import BusRejected
from core.envelope import Envelope, InvalidEnvelope
from core.errors import DependencyUnavailable, SlugTaken

NOTIFY_CHANNEL = "fabric_outbox"
_SCHEMA_LOCK = 7_311_042  # advisory lock key: one schema applier at a time

# asyncpg ships no type information; these aliases document intent.
Pool: TypeAlias = Any
Connection: TypeAlias = Any

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
    # A server that is up but not (yet) ours to use: its database or role is missing.
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turn "the database is not there" into DependencyUnavailable; let real bugs through."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable("legacy", type(exc).__name__) from exc


async def create_pool(dsn: str, *, max_size: int = 8, timeout: float = 5.0) -> Pool:
    """A pool that connects lazily, so the process starts while PostgreSQL is down."""
    pool = asyncpg.create_pool(
        dsn, min_size=0, max_size=max_size, timeout=timeout, command_timeout=timeout
    )
    return await pool


async def connect(dsn: str, *, timeout: float = 5.0) -> Connection:
    async with translated_errors():
        return await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout)


def schema_sql() -> str:
    return resources.files("actors.legacy").joinpath("schema.sql").read_text(encoding="utf-8")


async def ensure_schema(pool: Pool) -> bool:
    """Apply the legacy schema when missing; True if this call applied it."""
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        present = await conn.fetchval("SELECT to_regclass('legacy_schema_version') IS NOT NULL")
        if present:
            return False
        await conn.execute(schema_sql())
        return True


async def ping(pool: Pool) -> None:
    async with translated_errors(), pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


@dataclass(frozen=True, slots=True)
class LegacyAccount:
    id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: datetime
    deleted_at: datetime | None


async def insert_account(
    pool: Pool,
    *,
    account_id: str,
    slug: str,
    name: str,
    owner_email: str,
    namespace: str,
    created_at: datetime,
    event: Envelope,
) -> None:
    """What the old API did on creation (user, organization, owner, default project) + outbox row."""
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        user_id = await conn.fetchval(
            "INSERT INTO users (email) VALUES ($1) "
            "ON CONFLICT ((lower(email))) DO UPDATE SET updated_at = now() RETURNING id",
            owner_email,
        )
        try:
            await conn.execute(
                "INSERT INTO organizations (id, slug, name, namespace, created_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                account_id, slug, name, namespace, user_id, created_at,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "organizations_slug_key":
                raise SlugTaken(slug) from exc
            raise
        await conn.execute(
            "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')",
            account_id, user_id,
        )
        await conn.execute(
            "INSERT INTO projects (organization_id, slug, name) VALUES ($1, 'default', 'Default')",
            account_id,
        )
        await _insert_outbox(conn, event)


async def find_account(pool: Pool, account_id: str) -> LegacyAccount | None:
    async with translated_errors(), pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT o.id::text AS id, o.slug, o.name, u.email, o.namespace, o.created_at, "
            "o.deleted_at FROM organizations o JOIN users u ON u.id = o.created_by WHERE o.id = $1",
            account_id,
        )
    if row is None:
        return None
    return LegacyAccount(
        row["id"], row["slug"], row["name"], row["email"], row["namespace"],
        row["created_at"], row["deleted_at"],
    )


async def mark_deleted(pool: Pool, account_id: str, deleted_at: datetime, event: Envelope) -> bool:
    """Soft-delete the organization and queue its event; False if it was already deleted."""
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        changed = await conn.fetchval(
            "UPDATE organizations SET deleted_at = $2, updated_at = now() "
            "WHERE id = $1 AND deleted_at IS NULL RETURNING true",
            account_id, deleted_at,
        )
        if not changed:
            return False
        await _insert_outbox(conn, event)
        return True


async def _insert_outbox(conn: Connection, event: Envelope) -> None:
    await conn.execute(
        "INSERT INTO fabric_outbox (event_id, aggregate_id, event_type, envelope) "
        "VALUES ($1, $2, $3, $4::jsonb)",
        event.event_id, event.aggregate_id, event.type, json.dumps(event.to_wire()),
    )


PublishFn = Callable[[Sequence[Envelope]], Awaitable[Sequence[int]]]


@dataclass(frozen=True, slots=True)
class RelayResult:
    published: int
    quarantined: tuple[str, ...] = ()  # event ids of rows set aside (see relay_batch)

    def __bool__(self) -> bool:
        return self.published > 0 or bool(self.quarantined)


async def relay_batch(pool: Pool, limit: int, publish: PublishFn) -> RelayResult:
    """Publish one batch of unpublished outbox rows, holding their row locks.

    SKIP LOCKED lets several relays share the outbox. A row is held back while
    an older unpublished row of the same account is locked by another relay,
    so an account's events reach the broker in order. No high-water mark is
    kept: every unpublished row is visible to the next pass, so a transaction
    that commits late is never skipped. If we die after `publish` and before
    commit, the rows are published again; the broker dedups by event id.

    A row that can never be published (its envelope does not parse, or the bus
    refuses it for good when sent alone) is quarantined, not retried forever
    in front of every later row: it is marked done with a NULL seq, stays in
    the table, and its event id is returned for the caller to log loudly.
    """
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, aggregate_id, envelope::text AS envelope FROM fabric_outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not rows:
            return RelayResult(0)
        ids = [r["id"] for r in rows]
        blocked = {
            r["aggregate_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT aggregate_id FROM fabric_outbox WHERE published_at IS NULL "
                "AND id < $1 AND NOT (id = ANY($2::bigint[]))",
                max(ids), ids,
            )
        }
        batch = []
        bad = []
        for r in rows:
            if r["aggregate_id"] in blocked:
                continue
            try:
                batch.append((r, Envelope.from_wire(json.loads(r["envelope"]))))
            except (ValueError, InvalidEnvelope):
                bad.append(r)
        if not batch and not bad:
            return RelayResult(0)
        seqs: Sequence[int | None] = []
        if batch:
            try:
                seqs = await publish([env for _, env in batch])
            except BusRejected:
                if len(batch) > 1:
                    raise  # the caller retries one at a time to find the row at fault
                bad.append(batch[0][0])
                batch, seqs = [], []
        marks = [(r["id"], seq) for (r, _), seq in zip(batch, seqs, strict=True)]
        marks += [(r["id"], None) for r in bad]
        await conn.executemany(
            "UPDATE fabric_outbox SET published_at = now(), published_seq = $2 WHERE id = $1",
            marks,
        )
        return RelayResult(len(batch), tuple(str(_event_id(r)) for r in bad))


def _event_id(row: Any) -> str:
    try:
        return str(json.loads(row["envelope"]).get("event_id", row["id"]))
    except (ValueError, AttributeError):
        return f"outbox row {row['id']}"


async def backlog(pool: Pool) -> int:
    async with translated_errors(), pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM fabric_outbox WHERE published_at IS NULL"))


async def listen(conn: Connection, callback: Callable[[], None]) -> None:
    """Call `callback` on every outbox NOTIFY delivered to this connection."""

    def on_notify(_conn: object, _pid: int, _channel: str, _payload: str) -> None:
        callback()

    async with translated_errors():
        await conn.add_listener(NOTIFY_CHANNEL, on_notify)


async def close_connection(conn: Connection) -> None:
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=2)
    except (*_UNAVAILABLE, asyncpg.PostgresError):
        conn.terminate()


def is_closed(conn: Connection) -> bool:
    return bool(conn.is_closed())
