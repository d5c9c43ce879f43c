"""The event bus port: publish with confirmation, durable subscribe from a position, ack.

Our own broker (`transport.client` talking to `bin/broker`) implements it
today; a distributed engine such as NATS JetStream can implement the same
three operations later without the API, the event driver or the daemons
changing.

Semantics every implementation keeps:

- `publish` returns only once every envelope is durably stored; the receipt
  says its sequence number and whether it was a duplicate (same `event_id`
  stored before, for the whole retention). On failure it raises
  `BusUnavailable` and the caller retries with the same event ids.
- A subscription is named and durable. `deliveries()` yields every event after
  the consumer's last acked position, in sequence order per aggregate, at least
  once; `ack(seq)` records progress. A consumer that acks only after it has
  applied an event's effect never loses one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.envelope import Envelope


class BusUnavailable(Exception):
    """The bus did not confirm in time; nothing is known to be stored. Retry with the same ids."""


class BusRejected(Exception):
    """The bus refused the request for good (e.g. a malformed envelope). Retrying will not help."""


@dataclass(frozen=True, slots=True)
class PublishReceipt:
    event_id: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """A durable consumer as the bus sees it (what `cluster.list` shows for `cluster:NAME`)."""

    name: str
    acked_seq: int
    lag: int
    last_seen: str | None
    online: bool


class EventPublisher(Protocol):
    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]: ...


class EventSubscription(Protocol):
    @property
    def consumer(self) -> str: ...

    def deliveries(self) -> AsyncIterator[Delivery]: ...

    async def ack(self, seq: int) -> None: ...


class ConsumerDirectory(Protocol):
    async def consumers(self) -> list[ConsumerInfo]: ...
