"""Domain events: the closed set of facts that travel through the broker.

Each event is a frozen dataclass; `DomainEvent` is their union, `EVENT_TYPES`
the one table from wire name to class. `to_envelope` / `from_envelope` convert
with a schema check, so consumers `match` on real types and mypy checks that
every case is handled (`assert_never`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from core.envelope import Envelope, InvalidEnvelope, new_event_id, utc_now

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class AccountCreated:
    wire_name: ClassVar[str] = "account.created"
    account_id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: str


@dataclass(frozen=True, slots=True)
class AccountDeleted:
    wire_name: ClassVar[str] = "account.deleted"
    account_id: str
    slug: str
    namespace: str
    deleted_at: str


@dataclass(frozen=True, slots=True)
class NamespaceProvisioned:
    wire_name: ClassVar[str] = "namespace.provisioned"
    account_id: str
    cluster: str
    namespace: str
    uid: str
    resource_version: str


@dataclass(frozen=True, slots=True)
class NamespaceProvisionFailed:
    wire_name: ClassVar[str] = "namespace.provision_failed"
    account_id: str
    cluster: str
    namespace: str
    reason: str


@dataclass(frozen=True, slots=True)
class NamespaceDeleted:
    wire_name: ClassVar[str] = "namespace.deleted"
    account_id: str
    cluster: str
    namespace: str


DomainEvent = (
    AccountCreated | AccountDeleted | NamespaceProvisioned | NamespaceProvisionFailed | NamespaceDeleted
)

EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.wire_name: cls
    for cls in (
        AccountCreated,
        AccountDeleted,
        NamespaceProvisioned,
        NamespaceProvisionFailed,
        NamespaceDeleted,
    )
}


def to_envelope(
    event: DomainEvent,
    *,
    correlation_id: str,
    event_id: str | None = None,
    occurred_at: str | None = None,
) -> Envelope:
    payload: dict[str, Any] = dataclasses.asdict(event)
    return Envelope(
        event_id=event_id or new_event_id(),
        type=event.wire_name,
        schema_version=SCHEMA_VERSION,
        aggregate_id=event.account_id,
        occurred_at=occurred_at or utc_now(),
        correlation_id=correlation_id,
        payload=payload,
    )


def from_envelope(envelope: Envelope) -> DomainEvent:
    """Decode a known event; raise InvalidEnvelope for unknown types or a payload that does not fit."""
    cls = EVENT_TYPES.get(envelope.type)
    if cls is None:
        raise InvalidEnvelope(f"unknown event type {envelope.type!r}")
    if envelope.schema_version != SCHEMA_VERSION:
        raise InvalidEnvelope(f"unsupported schema_version {envelope.schema_version} for {envelope.type}")
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(envelope.payload) != fields:
        raise InvalidEnvelope(f"{envelope.type} payload must have exactly {sorted(fields)}")
    for name in fields:
        if not isinstance(envelope.payload[name], str):
            raise InvalidEnvelope(f"{envelope.type} payload.{name} must be a string")
    event = cls(**envelope.payload)  # type: ignore[arg-type]
    if event.account_id != envelope.aggregate_id:
        raise InvalidEnvelope("payload.account_id must equal aggregate_id")
    return event
