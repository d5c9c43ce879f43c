"""Domain events: the closed set of facts that travel through the bus.

Each event is a frozen dataclass; `DomainEvent` is their union, `EVENT_TYPES`
the one table from wire name to class. `to_envelope` / `from_envelope` convert
with a schema check, so consumers `match` on real types and mypy checks that
every case is handled (`assert_never`).

State, not history: every event is the whole state of its key, so one event
is enough to converge and a consumer may skip any older one.

- Account events (key `account:<id>`) carry the account's whole desired state
  at a `generation` (1 at create, +1 per accepted change); `AccountDeleted` is
  the key's tombstone and carries the generation that deleted it.
- Outcome events (key `outcome:<cluster>:<id>`) are one cluster's report on
  one account, with the `observed_generation` it applied; `NamespaceDeleted`
  is that key's tombstone.

Applying an event is guarded by generation (newer wins, equal or older
changes nothing), so order, repeats and skipped generations never matter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from core.envelope import Envelope, InvalidEnvelope, new_event_id, utc_now

SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class AccountCreated:
    """The account's desired state at `generation` (also the state any later change sends)."""

    wire_name: ClassVar[str] = "account.created"
    account_id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: str
    generation: int
    plan: str = "standard"  # one of core.tenancy's plans
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class AccountUpdated(AccountCreated):
    """An accepted change (plan, name, owner, suspension, a retry): the same whole state at the
    next generation. A subclass, so every consumer of the desired state handles both alike."""

    wire_name: ClassVar[str] = "account.updated"


@dataclass(frozen=True, slots=True)
class AccountDeleted:
    wire_name: ClassVar[str] = "account.deleted"
    account_id: str
    slug: str
    namespace: str
    deleted_at: str
    generation: int
    # The account's last state, so a reader of the compacted log (a rebuild, a new API
    # replica) can show the deleted account without its create.
    name: str
    owner_email: str
    created_at: str


@dataclass(frozen=True, slots=True)
class NamespaceProvisioned:
    wire_name: ClassVar[str] = "namespace.provisioned"
    account_id: str
    cluster: str
    namespace: str
    uid: str
    resource_version: str
    observed_generation: int


@dataclass(frozen=True, slots=True)
class NamespaceProvisionFailed:
    wire_name: ClassVar[str] = "namespace.provision_failed"
    account_id: str
    cluster: str
    namespace: str
    reason: str
    observed_generation: int
    attempts: int


@dataclass(frozen=True, slots=True)
class NamespaceDeleted:
    wire_name: ClassVar[str] = "namespace.deleted"
    account_id: str
    cluster: str
    namespace: str
    observed_generation: int


AccountEvent = AccountCreated | AccountDeleted
OutcomeEvent = NamespaceProvisioned | NamespaceProvisionFailed | NamespaceDeleted
DomainEvent = AccountEvent | OutcomeEvent

EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.wire_name: cls
    for cls in (
        AccountCreated,
        AccountUpdated,
        AccountDeleted,
        NamespaceProvisioned,
        NamespaceProvisionFailed,
        NamespaceDeleted,
    )
}

ACCOUNT_KEY_PREFIX = "account:"
OUTCOME_KEY_PREFIX = "outcome:"


def account_key(account_id: str) -> str:
    return f"{ACCOUNT_KEY_PREFIX}{account_id}"


def outcome_key(cluster: str, account_id: str) -> str:
    return f"{OUTCOME_KEY_PREFIX}{cluster}:{account_id}"


def key_of(event: DomainEvent) -> str:
    match event:
        case AccountCreated() | AccountDeleted():
            return account_key(event.account_id)
        case NamespaceProvisioned() | NamespaceProvisionFailed() | NamespaceDeleted():
            return outcome_key(event.cluster, event.account_id)
    raise AssertionError(f"unhandled event {event!r}")


def generation_of(event: DomainEvent) -> int:
    """The account generation an event describes (desired, or observed by a cluster)."""
    if isinstance(event, AccountCreated | AccountDeleted):
        return event.generation
    return event.observed_generation


def is_tombstone(event: DomainEvent) -> bool:
    return isinstance(event, AccountDeleted | NamespaceDeleted)


_TYPES: dict[object, type] = {"int": int, int: int, "bool": bool, bool: bool}


def _field_types(cls: type[DomainEvent]) -> dict[str, type]:
    return {f.name: _TYPES.get(f.type, str) for f in dataclasses.fields(cls)}


_FIELD_TYPES = {name: _field_types(cls) for name, cls in EVENT_TYPES.items()}
_FIELD_NAMES = {name: tuple(types) for name, types in _FIELD_TYPES.items()}


def payload_of(event: DomainEvent) -> dict[str, Any]:
    """The event's fields as a flat map (what `dataclasses.asdict` gives for these flat
    events, without its deep copy: it showed in the daemon's profile once per outcome)."""
    return {name: getattr(event, name) for name in _FIELD_NAMES[event.wire_name]}


def to_envelope(
    event: DomainEvent,
    *,
    correlation_id: str,
    event_id: str | None = None,
    occurred_at: str | None = None,
) -> Envelope:
    payload = payload_of(event)
    return Envelope(
        event_id=event_id or new_event_id(),
        type=event.wire_name,
        schema_version=SCHEMA_VERSION,
        aggregate_id=event.account_id,
        key=key_of(event),
        tombstone=is_tombstone(event),
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
    types = _FIELD_TYPES[envelope.type]
    if set(envelope.payload) != set(types):
        raise InvalidEnvelope(f"{envelope.type} payload must have exactly {sorted(types)}")
    for name, expected in types.items():
        value = envelope.payload[name]
        if expected is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidEnvelope(f"{envelope.type} payload.{name} must be a non-negative int")
        elif expected is bool:
            if not isinstance(value, bool):
                raise InvalidEnvelope(f"{envelope.type} payload.{name} must be a bool")
        elif not isinstance(value, str):
            raise InvalidEnvelope(f"{envelope.type} payload.{name} must be a string")
    event = cls(**envelope.payload)  # type: ignore[arg-type]
    if event.account_id != envelope.aggregate_id:
        raise InvalidEnvelope("payload.account_id must equal aggregate_id")
    if envelope.key != key_of(event) or envelope.tombstone != is_tombstone(event):
        raise InvalidEnvelope(f"key/tombstone do not match the {envelope.type} payload")
    return event
