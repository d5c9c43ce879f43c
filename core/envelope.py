"""The event envelope: what the broker stores and every consumer receives.

An envelope is transport-neutral. Its wire form is a plain mapping of strings,
ints and a payload mapping (`to_wire` / `from_wire`); the msgpack codec in
`transport` turns that into bytes with strict limits. `from_wire` is the schema
check: anything that is not exactly an envelope raises `InvalidEnvelope`, so a
bad frame is dropped at the edge and never reaches an actor.

- `event_id`: uuid chosen by the producer; the bus deduplicates on it within
  its duplicate window (a redo after a crash publishes the same id).
- `aggregate_id`: the account id; events of one aggregate keep their order.
- `key`: what the log compacts by: it keeps the newest record per key
  (`account:<id>` for an account's desired state, `outcome:<cluster>:<id>` for
  a cluster's report on it). On JetStream the key is the subject.
- `tombstone`: the record ends its key (the account, or its namespace in one
  cluster, is gone); the log drops it after the tombstone retention.
- `correlation_id`: ties an event to the request (or event) that caused it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_TYPE_LEN = 64
MAX_ID_LEN = 64
MAX_KEY_LEN = 160
MAX_PAYLOAD_KEYS = 32
MAX_PAYLOAD_STR = 4096

# The rules as text, for the transport's compiled decoder of the same schema.
TYPE_PATTERN = r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+"
KEY_PATTERN = r"[a-z]+(:[A-Za-z0-9._-]+)+"
UUID_LEN = 36
_TYPE_RE = re.compile(TYPE_PATTERN)
_KEY_RE = re.compile(KEY_PATTERN)
_WIRE_KEYS = frozenset(
    {
        "event_id", "type", "schema_version", "aggregate_id", "key", "tombstone",
        "occurred_at", "correlation_id", "payload",
    }
)

PayloadValue = str | int | bool | None
Payload = Mapping[str, PayloadValue]


class InvalidEnvelope(ValueError):
    """The mapping is not a well-formed event envelope."""


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    type: str
    schema_version: int
    aggregate_id: str
    key: str
    tombstone: bool
    occurred_at: str
    correlation_id: str
    payload: Payload

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "schema_version": self.schema_version,
            "aggregate_id": self.aggregate_id,
            "key": self.key,
            "tombstone": self.tombstone,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_wire(cls, obj: object) -> Envelope:
        if not isinstance(obj, dict):
            raise InvalidEnvelope("envelope must be a map")
        keys = set(obj)
        if keys != _WIRE_KEYS:
            missing = sorted(_WIRE_KEYS - keys)
            extra = sorted(str(k) for k in keys - _WIRE_KEYS)
            raise InvalidEnvelope(f"envelope keys wrong: missing {missing}, unexpected {extra}")
        event_id = _uuid(obj["event_id"], "event_id")
        etype = obj["type"]
        if not isinstance(etype, str) or len(etype) > MAX_TYPE_LEN or not _TYPE_RE.fullmatch(etype):
            raise InvalidEnvelope("type must be a dotted lowercase name")
        version = obj["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 1000:
            raise InvalidEnvelope("schema_version must be an int in 1..1000")
        aggregate_id = _short_str(obj["aggregate_id"], "aggregate_id")
        key = obj["key"]
        if not isinstance(key, str) or len(key) > MAX_KEY_LEN or not _KEY_RE.fullmatch(key):
            raise InvalidEnvelope("key must be a colon-separated name such as account:<id>")
        tombstone = obj["tombstone"]
        if not isinstance(tombstone, bool):
            raise InvalidEnvelope("tombstone must be a bool")
        occurred_at = _short_str(obj["occurred_at"], "occurred_at")
        correlation_id = _short_str(obj["correlation_id"], "correlation_id")
        payload = obj["payload"]
        if not isinstance(payload, dict) or len(payload) > MAX_PAYLOAD_KEYS:
            raise InvalidEnvelope(f"payload must be a map of at most {MAX_PAYLOAD_KEYS} keys")
        for field, value in payload.items():  # not `key`: that is the envelope's key above
            if not isinstance(field, str) or len(field) > MAX_TYPE_LEN:
                raise InvalidEnvelope("payload keys must be short strings")
            if isinstance(value, str):
                if len(value) > MAX_PAYLOAD_STR:
                    raise InvalidEnvelope(f"payload.{field} is too long")
            elif value is not None and not isinstance(value, int | bool):
                raise InvalidEnvelope(f"payload.{field} must be a string, int, bool or null")
        return cls(
            event_id, etype, version, aggregate_id, key, tombstone, occurred_at, correlation_id,
            payload,
        )


def new_event_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> str:
    """RFC 3339 UTC timestamp with microseconds, the format of every `*_at` field."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> str | None:
    """The canonical (lowercase, hyphenated) form of a 36-character uuid, or None."""
    if len(value) != UUID_LEN:
        return None
    if _CANONICAL_UUID.fullmatch(value):
        return value  # as we write them: nothing to normalise
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _uuid(value: object, field: str) -> str:
    canonical = canonical_uuid(value) if isinstance(value, str) else None
    if canonical is None:
        raise InvalidEnvelope(f"{field} must be a uuid string")
    return canonical


def _short_str(value: object, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise InvalidEnvelope(f"{field} must be a non-empty string of at most {MAX_ID_LEN} chars")
    return value
