"""The only module that imports asyncpg: pools, the legacy schema, account rows and the outbox.

Every query uses `$n` parameters (never string-built SQL). Connection-level
failures (server down, restarting, unreachable, timed out) are translated once,
here, into `DependencyUnavailable("legacy")`; a create that raises it wrote
nothing, because the account row and its outbox row share one transaction.
The outbox keeps each envelope's whole wire form (`Envelope.to_wire`, `key`
and `tombstone` included) as jsonb; the relay reads it back with
`Envelope.from_wire`.
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
import orjson

from core.bus import BusRejected
from core.envelope import Envelope, InvalidEnvelope
from core.errors import DependencyUnavailable, SlugTaken

NOTIFY_CHANNEL = "fabric_outbox"
# The payload of an outbox NOTIFY whose rows their writer publishes itself (migration_4.sql).
WRITER_PUBLISHES = "writer"
_SCHEMA_LOCK = 7_311_042  # advisory lock key: one schema applier at a time

# asyncpg ships no type information; these aliases document intent.
Pool: TypeAlias = Any
Connection: TypeAlias = Any

# What "the database is unavailable" looks like through asyncpg (every PostgreSQL user here).
UNAVAILABLE: tuple[type[BaseException], ...] = (
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
    except UNAVAILABLE as exc:
        raise DependencyUnavailable("legacy", type(exc).__name__) from exc


async def create_pool(dsn: str, *, max_size: int = 8, timeout: float = 5.0) -> Pool:
    """A pool that connects lazily, so the process starts while PostgreSQL is down."""
    pool = asyncpg.create_pool(
        dsn, min_size=0, max_size=max_size, timeout=timeout, command_timeout=timeout,
        reset=_keep_session,
    )
    return await pool


async def _keep_session(_conn: Connection) -> None:
    """Nothing to reset when a connection goes back to the pool (asyncpg still rolls back an
    open transaction). Its default reset query, one more round trip per use, undoes what
    pooled connections here never do: session advisory locks (ours are per transaction),
    LISTEN (the relay listens on a connection of its own), SET, open cursors."""


async def connect(dsn: str, *, timeout: float = 5.0) -> Connection:
    async with translated_errors():
        return await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout)


SCHEMA_VERSION = 4
# Each version's SQL, in order: the base schema, then one file per migration.
_SCHEMA_STEPS: tuple[tuple[int, str], ...] = (
    (1, "schema.sql"), (2, "migration_2.sql"), (3, "migration_3.sql"), (4, "migration_4.sql")
)


def _sql(name: str) -> str:
    return resources.files("actors.legacy").joinpath(name).read_text(encoding="utf-8")


def schema_sql(up_to: int = SCHEMA_VERSION) -> str:
    """The SQL that makes a new database (version `up_to`, default the current one)."""
    return "\n".join(_sql(name) for version, name in _SCHEMA_STEPS if version <= up_to)


async def ensure_schema(pool: Pool) -> bool:
    """Bring the schema to the current version (all of it when missing); True if this call did.

    Whatever is applied is applied in one transaction, under an advisory lock so
    that concurrent starters apply it once. A database at a newer version than
    this code knows is left as it is.
    """
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        present = await conn.fetchval("SELECT to_regclass('legacy_schema_version') IS NOT NULL")
        current = 0
        if present:
            current = int(await conn.fetchval("SELECT max(version) FROM legacy_schema_version"))
        steps = [name for version, name in _SCHEMA_STEPS if version > current]
        for name in steps:
            await conn.execute(_sql(name))
        return bool(steps)


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
    generation: int
    updated_at: datetime
    plan: str
    suspended_at: datetime | None


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
    plan: str = "standard",
    writer_publishes: bool = False,
) -> None:
    """What the old API did on creation (user, organization, owner, default project) + outbox row.

    The organization starts at generation 1, the generation its `account.created` carries.
    `writer_publishes`: the caller publishes the event itself once this returns (and marks
    it with `mark_published`); the outbox NOTIFY tells relays to leave the row to it.
    """
    # One statement, so one round trip and its own transaction: the sub-statements all run
    # or none does, and the foreign keys are checked at its end, when every row exists.
    # Measured on a two-cluster `fabric up`: 3.7 ms per create as seven round trips
    # (BEGIN, four inserts, the outbox row, COMMIT), against 0.6 ms as one (p50 of 200).
    async with translated_errors(), pool.acquire() as conn:
        try:
            await conn.execute(
                _INSERT_ACCOUNT, account_id, slug, name, namespace, owner_email, created_at, plan,
                event.event_id, event.aggregate_id, event.type, _envelope_json(event),
                WRITER_PUBLISHES if writer_publishes else "",
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "organizations_slug_key":
                raise SlugTaken(slug) from exc
            raise


_INSERT_ACCOUNT = """
WITH notify AS (
    SELECT set_config('fabric.outbox_notify', $12::text, true) AS payload
), owner AS (
    INSERT INTO users (email) VALUES ($5::varchar)
    ON CONFLICT ((lower(email))) DO UPDATE SET updated_at = now() RETURNING id
), org AS (
    INSERT INTO organizations (id, slug, name, namespace, created_by, created_at, updated_at,
                               generation, plan)
    SELECT $1::uuid, $2::varchar, $3::varchar, $4::varchar, owner.id, $6::timestamptz,
           $6::timestamptz, 1, $7::varchar
    FROM owner RETURNING id, created_by
), membership AS (
    INSERT INTO memberships (organization_id, user_id, role) SELECT id, created_by, 'owner' FROM org
), project AS (
    INSERT INTO projects (organization_id, slug, name) SELECT id, 'default', 'Default' FROM org
)
INSERT INTO fabric_outbox (event_id, aggregate_id, event_type, envelope)
SELECT $8::uuid, $9::uuid, $10::varchar, $11::jsonb FROM org, notify
"""


async def _user_id(conn: Connection, email: str) -> int:
    """The user with this email (case-insensitively), created when missing."""
    return int(await conn.fetchval(
        "INSERT INTO users (email) VALUES ($1) "
        "ON CONFLICT ((lower(email))) DO UPDATE SET updated_at = now() RETURNING id",
        email,
    ))


async def find_account(pool: Pool, account_id: str) -> LegacyAccount | None:
    """The organization with its owner's email (the creator's, for a row that lost its owner)."""
    async with translated_errors(), pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT o.id::text AS id, o.slug, o.name, coalesce(owner.email, creator.email) AS email, "
            "o.namespace, o.created_at, o.deleted_at, o.generation, o.updated_at, o.plan, "
            "o.suspended_at "
            "FROM organizations o JOIN users creator ON creator.id = o.created_by "
            "LEFT JOIN LATERAL (SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id "
            "  WHERE m.organization_id = o.id AND m.role = 'owner' ORDER BY m.created_at DESC "
            "  LIMIT 1) owner ON true "
            "WHERE o.id = $1",
            account_id,
        )
    if row is None:
        return None
    return LegacyAccount(
        row["id"], row["slug"], row["name"], row["email"], row["namespace"],
        row["created_at"], row["deleted_at"], row["generation"], row["updated_at"],
        row["plan"], row["suspended_at"],
    )


async def update_account(
    pool: Pool,
    account_id: str,
    *,
    generation: int,
    name: str,
    owner_email: str,
    plan: str,
    suspended: bool,
    updated_at: datetime,
    event: Envelope,
) -> bool:
    """Change the organization to this state at `generation` and queue its event, in one go.

    Like a deletion, it moves the organization from `generation - 1` to `generation`; False
    (nothing written) when the organization is deleted or no longer at `generation - 1`.
    A suspension keeps the moment it began across later changes. A new owner becomes the
    owner member (the user is created when missing); the previous owner stays a member, as
    an admin, the way the old system handed an organization over.
    """
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        reached = await conn.fetchval(
            "UPDATE organizations SET name = $2, plan = $3, "
            "suspended_at = CASE WHEN $4::boolean THEN coalesce(suspended_at, $5) END, "
            "updated_at = $5, generation = generation + 1 "
            "WHERE id = $1 AND deleted_at IS NULL AND generation = $6 RETURNING generation",
            account_id, name, plan, suspended, updated_at, generation - 1,
        )
        if reached is None:
            return False
        assert reached == generation
        owner = await conn.fetchrow(
            "SELECT m.user_id, lower(u.email) AS email FROM memberships m "
            "JOIN users u ON u.id = m.user_id "
            "WHERE m.organization_id = $1 AND m.role = 'owner'",
            account_id,
        )
        if owner is None or owner["email"] != owner_email.lower():
            user_id = await _user_id(conn, owner_email)
            await conn.execute(
                "UPDATE memberships SET role = 'admin' WHERE organization_id = $1 AND role = 'owner'",
                account_id,
            )
            await conn.execute(
                "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner') "
                "ON CONFLICT (organization_id, user_id) DO UPDATE SET role = 'owner'",
                account_id, user_id,
            )
        await _insert_outbox(conn, event)
        return True


async def mark_deleted(
    pool: Pool, account_id: str, deleted_at: datetime, event: Envelope, generation: int
) -> bool:
    """Soft-delete the organization at `generation` and queue its event, in one transaction.

    The deletion is a change: it moves the organization from `generation - 1` to
    `generation`, the generation `event` carries. False (and nothing written) if the
    organization is already deleted or no longer at `generation - 1` (another change
    won the race; the caller reloads and decides again).
    """
    async with translated_errors(), pool.acquire() as conn, conn.transaction():
        reached = await conn.fetchval(
            "UPDATE organizations SET deleted_at = $2, updated_at = $2, "
            "generation = generation + 1 "
            "WHERE id = $1 AND deleted_at IS NULL AND generation = $3 RETURNING generation",
            account_id, deleted_at, generation - 1,
        )
        if reached is None:
            return False
        assert reached == generation
        await _insert_outbox(conn, event)
        return True


async def _insert_outbox(conn: Connection, event: Envelope) -> None:
    await conn.execute(
        "INSERT INTO fabric_outbox (event_id, aggregate_id, event_type, envelope) "
        "VALUES ($1, $2, $3, $4::jsonb)",
        event.event_id, event.aggregate_id, event.type, _envelope_json(event),
    )


def _envelope_json(event: Envelope) -> str:
    """An outbox row's `envelope` (jsonb), the same for every write that adds one."""
    return orjson.dumps(event.to_wire()).decode()


PublishFn = Callable[[Sequence[Envelope]], Awaitable[Sequence[int]]]


@dataclass(frozen=True, slots=True)
class RelayResult:
    published: int
    quarantined: tuple[str, ...] = ()  # event ids of rows set aside (see relay_batch)
    more: bool = False  # rows may be left that this pass did not take (a full batch, or held back)

    def __bool__(self) -> bool:
        return self.published > 0 or bool(self.quarantined)


# The claim and the order check in one statement (one round trip less on every event's way
# to the broker): a claimed row is held back while an older unpublished row of its account,
# older than the newest claimed one, is not among the claimed (another relay holds it).
_CLAIM = """
WITH claimed AS (
    SELECT id, aggregate_id, envelope FROM fabric_outbox
    WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), held AS (
    SELECT DISTINCT aggregate_id FROM fabric_outbox
    WHERE published_at IS NULL AND id < (SELECT max(id) FROM claimed)
      AND id NOT IN (SELECT id FROM claimed)
)
SELECT c.id, c.aggregate_id, c.envelope::text AS envelope,
       c.aggregate_id IN (SELECT aggregate_id FROM held) AS blocked
FROM claimed c ORDER BY c.id
"""


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
        rows = await conn.fetch(_CLAIM, limit)
        if not rows:
            return RelayResult(0)
        batch = []
        bad = []
        for r in rows:
            if r["blocked"]:
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
        more = len(rows) == limit or len(batch) + len(bad) < len(rows)
        return RelayResult(len(batch), tuple(str(_event_id(r)) for r in bad), more)


async def mark_published(pool: Pool, receipts: Sequence[tuple[str, int]]) -> None:
    """Mark the outbox rows of these (event id, broker seq) published, in one round trip; a
    row some relay marked already stays as it is."""
    async with translated_errors(), pool.acquire() as conn:
        await conn.execute(_MARK_PUBLISHED, [e for e, _ in receipts], [s for _, s in receipts])


_MARK_PUBLISHED = """
UPDATE fabric_outbox o SET published_at = now(), published_seq = r.seq
FROM unnest($1::uuid[], $2::bigint[]) AS r(event_id, seq)
WHERE o.event_id = r.event_id AND o.published_at IS NULL
"""


def _event_id(row: Any) -> str:
    try:
        return str(json.loads(row["envelope"]).get("event_id", row["id"]))
    except (ValueError, AttributeError):
        return f"outbox row {row['id']}"


async def backlog(pool: Pool) -> int:
    async with translated_errors(), pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM fabric_outbox WHERE published_at IS NULL"))


async def listen(conn: Connection, callback: Callable[[], None]) -> None:
    """Call `callback` on every outbox NOTIFY delivered to this connection, but those of rows
    their writer publishes itself (`insert_account(writer_publishes=True)`)."""

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != WRITER_PUBLISHES:
            callback()

    async with translated_errors():
        await conn.add_listener(NOTIFY_CHANNEL, on_notify)


async def close_connection(conn: Connection) -> None:
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=2)
    except (*UNAVAILABLE, asyncpg.PostgresError):
        conn.terminate()


def is_closed(conn: Connection) -> bool:
    return bool(conn.is_closed())
