"""The domain actor: validates commands with the pure rules, decides the events, has them written.

Create: rules (name, email, slug derived when missing) -> early uniqueness
check against the cache -> the legacy actor commits the account (generation
1) and its `account.created` outbox row in one transaction (the database
enforces slug uniqueness) -> the same event is applied to the cache at once,
so the reply and an immediate `account.get` see the account; the event
driver's later apply of it changes nothing (same generation).

Delete: the legacy row decides (not found / already deleted / delete now).
A deletion is a change: `account.deleted` carries the next generation, and
the legacy actor commits it only if the row is still at the generation this
decision read (else we read again), with the soft delete and the outbox row
in one transaction; it is applied to the cache the same way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import assert_never

from actors.api.cache import Applied, ApplyEvents, CacheMessage, FindAccount
from actors.legacy.actor import LegacyMessage, LoadAccount, WriteAccount, WriteDeletion
from actors.runtime import Actor, ActorRef, Request
from core.account import AccountRecord
from core.cache import Change
from core.commands import CreateAccount, DeleteAccount
from core.envelope import Envelope, utc_now
from core.errors import AccountNotFound, DependencyUnavailable, SlugTaken
from core.events import AccountCreated, AccountDeleted, DomainEvent, to_envelope
from core.rules import validate_new_account


@dataclass(frozen=True, slots=True)
class Create(Request[AccountRecord]):
    command: CreateAccount


@dataclass(frozen=True, slots=True)
class Delete(Request[AccountRecord]):
    command: DeleteAccount


DomainMessage = Create | Delete

FIRST_GENERATION = 1
_DELETE_ATTEMPTS = 5  # reads and tries again when another change moved the generation


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class DomainActor(Actor[DomainMessage]):
    def __init__(
        self,
        legacy: ActorRef[LegacyMessage],
        cache: ActorRef[CacheMessage],
        *,
        timeout: float = 10.0,
    ) -> None:
        self._legacy = legacy
        self._cache = cache
        self._timeout = timeout

    async def receive(self, message: DomainMessage) -> object:
        match message:
            case Create(command):
                return await self._create(command)
            case Delete(command):
                return await self._delete(command)
            case _:
                assert_never(message)

    async def _create(self, command: CreateAccount) -> AccountRecord:
        new = validate_new_account(command.name, command.owner_email, command.slug)
        try:
            taken = await self._cache.ask(FindAccount(slug=new.slug), timeout=self._timeout)
        except DependencyUnavailable:
            pass  # only a shortcut: the database enforces uniqueness anyway
        else:
            if taken.records:
                raise SlugTaken(new.slug)
        account_id = str(uuid.uuid4())
        created_at = utc_now()
        event = AccountCreated(
            account_id=account_id,
            slug=new.slug,
            name=new.name,
            owner_email=new.owner_email,
            namespace=new.namespace,
            created_at=created_at,
            generation=FIRST_GENERATION,
        )
        envelope = to_envelope(event, correlation_id=command.correlation_id, occurred_at=created_at)
        await self._legacy.ask(
            WriteAccount(
                account_id=account_id,
                slug=new.slug,
                name=new.name,
                owner_email=new.owner_email,
                namespace=new.namespace,
                created_at=datetime.fromisoformat(created_at),
                event=envelope,
            ),
            timeout=self._timeout,
        )
        self.log.info("account_created", account_id=account_id, event_id=envelope.event_id)
        await self._apply(envelope, event)
        return AccountRecord(
            account_id, new.slug, new.name, new.owner_email, new.namespace, created_at, None,
            FIRST_GENERATION, created_at,
        )

    async def _delete(self, command: DeleteAccount) -> AccountRecord:
        for _ in range(_DELETE_ATTEMPTS):
            found = await self._legacy.ask(LoadAccount(command.account_id), timeout=self._timeout)
            if found is None:
                raise AccountNotFound(command.account_id)
            record = AccountRecord(
                found.id, found.slug, found.name, found.owner_email, found.namespace,
                rfc3339(found.created_at),
                rfc3339(found.deleted_at) if found.deleted_at is not None else None,
                found.generation, rfc3339(found.updated_at),
            )
            if found.deleted_at is not None:
                return record
            deleted_at = utc_now()
            event = AccountDeleted(
                account_id=found.id, slug=found.slug, namespace=found.namespace,
                deleted_at=deleted_at, generation=found.generation + 1, name=found.name,
                owner_email=found.owner_email, created_at=rfc3339(found.created_at),
            )
            envelope = to_envelope(
                event, correlation_id=command.correlation_id, occurred_at=deleted_at
            )
            changed = await self._legacy.ask(
                WriteDeletion(
                    found.id, datetime.fromisoformat(deleted_at), envelope, event.generation
                ),
                timeout=self._timeout,
            )
            if changed:
                self.log.info(
                    "account_deleted", account_id=found.id, event_id=envelope.event_id,
                    generation=event.generation,
                )
                await self._apply(envelope, event)
                return replace(
                    record, deleted_at=deleted_at, generation=event.generation,
                    updated_at=deleted_at,
                )
        raise RuntimeError(f"account {command.account_id} kept changing while being deleted")

    async def _apply(self, envelope: Envelope, event: DomainEvent) -> None:
        """Read-your-writes: the cache learns the committed event now, not after the broker round trip."""
        try:
            await self._cache.ask(
                ApplyEvents([Applied(Change(event, envelope.occurred_at), envelope.event_id)]),
                timeout=self._timeout,
            )
        except Exception as exc:
            # The write is durable; the event driver will bring the cache up to date.
            self.log.warning(
                "cache_apply_deferred", event_id=envelope.event_id,
                account_id=event.account_id, error=repr(exc),
            )
