"""The legacy actor: owns the asyncpg pool of the legacy database and writes accounts to it.

Each write is one transaction holding the old system's rows (with the
account's generation) and the outbox row of the event, so "the reply came"
implies "the row and its event are durable", and a failed write leaves
neither. The schema is applied, or migrated to the current version, on the
first successful contact (and retried on each call until then), so the
process starts, and later recovers, without PostgreSQL being up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from actors.legacy import db
from actors.runtime import Actor, Request
from core.envelope import Envelope
from core.errors import DependencyUnavailable


@dataclass(frozen=True, slots=True)
class WriteAccount(Request[None]):
    account_id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: datetime
    event: Envelope
    plan: str = "standard"
    writer_publishes: bool = False  # the asker publishes the event itself (db.insert_account)


@dataclass(frozen=True, slots=True)
class LoadAccount(Request["db.LegacyAccount | None"]):
    account_id: str


@dataclass(frozen=True, slots=True)
class WriteDeletion(Request[bool]):
    """Delete at `generation` (the loaded generation + 1); False if already deleted or changed."""

    account_id: str
    deleted_at: datetime
    event: Envelope
    generation: int


@dataclass(frozen=True, slots=True)
class WriteUpdate(Request[bool]):
    """The whole new state at `generation` (the loaded one + 1); False if deleted or changed."""

    account_id: str
    generation: int
    name: str
    owner_email: str
    plan: str
    suspended: bool
    updated_at: datetime
    event: Envelope


@dataclass(frozen=True, slots=True)
class PingLegacy(Request[None]):
    pass


LegacyMessage = WriteAccount | LoadAccount | WriteDeletion | WriteUpdate | PingLegacy


class LegacyActor(Actor[LegacyMessage]):
    def __init__(self, dsn: str, *, timeout: float = 5.0, pool_size: int = 2) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._pool_size = pool_size
        self._pool: db.Pool | None = None
        self._schema_ready = False

    async def started(self) -> None:
        self._pool = await db.create_pool(self._dsn, max_size=self._pool_size, timeout=self._timeout)
        try:
            await self._ensure_schema()
        except DependencyUnavailable as exc:
            self.log.warning("legacy_unreached", detail=exc.detail)

    async def stopped(self) -> None:
        if self._pool is not None:
            self._pool.terminate()

    async def _ensure_schema(self) -> db.Pool:
        assert self._pool is not None
        if not self._schema_ready:
            if await db.ensure_schema(self._pool):
                self.log.info("legacy_schema_applied", version=db.SCHEMA_VERSION)
            self._schema_ready = True
        return self._pool

    async def receive(self, message: LegacyMessage) -> object:
        pool = await self._ensure_schema()
        match message:
            case WriteAccount():
                await db.insert_account(
                    pool,
                    account_id=message.account_id,
                    slug=message.slug,
                    name=message.name,
                    owner_email=message.owner_email,
                    namespace=message.namespace,
                    created_at=message.created_at,
                    event=message.event,
                    plan=message.plan,
                    writer_publishes=message.writer_publishes,
                )
                # Debug: the domain's `account_created` says the same at info, right after.
                self.log.debug(
                    "legacy_account_written",
                    account_id=message.account_id,
                    event_id=message.event.event_id,
                )
                return None
            case LoadAccount(account_id):
                return await db.find_account(pool, account_id)
            case WriteDeletion(account_id, deleted_at, event, generation):
                changed = await db.mark_deleted(pool, account_id, deleted_at, event, generation)
                if changed:
                    self.log.info(
                        "legacy_account_deleted", account_id=account_id, event_id=event.event_id,
                        generation=generation,
                    )
                return changed
            case WriteUpdate():
                changed = await db.update_account(
                    pool, message.account_id, generation=message.generation, name=message.name,
                    owner_email=message.owner_email, plan=message.plan,
                    suspended=message.suspended, updated_at=message.updated_at,
                    event=message.event,
                )
                if changed:
                    self.log.info(
                        "legacy_account_updated", account_id=message.account_id,
                        event_id=message.event.event_id, generation=message.generation,
                    )
                return changed
            case PingLegacy():
                await db.ping(pool)
                return None
            case _:
                assert_never(message)
