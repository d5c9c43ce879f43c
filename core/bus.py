"""The event bus port: a compacted, keyed log; confirmed publish; in-order durable consumers.

Our own broker (`transport.client` talking to `bin/broker`) implements it;
NATS JetStream implements the same semantics directly (a stream with one
message per subject, `Nats-Msg-Id` dedup, durable pull consumers with
AckAll). The API, the event driver and the daemons only see this port.

Semantics every implementation keeps:

- Keys. Every envelope has a `key` (`account:<id>`, `outcome:<cluster>:<id>`;
  on JetStream, the subject). The log keeps at least the newest record of
  every key; older records of a key may disappear at any time (compaction).
  A `tombstone` record is kept for the tombstone retention and then dropped
  once every registered consumer has passed it. A reader that starts from
  the beginning therefore sees the current state of every live key, not the
  history, and never a key that was deleted longer than the retention ago.
- Publish. `publish` returns only once every envelope is durably stored; the
  receipt says its sequence number and whether it was a duplicate (the same
  `event_id` was stored within the duplicate window; the seq is the
  original's). On failure it raises `BusUnavailable` and the caller retries
  with the same event ids; a retry after the window stores a second copy,
  which generation-guarded consumers ignore.
- Sequence numbers grow strictly with store order; after compaction they have
  gaps. Records of one key keep their order.
- Consumers are named and durable. A subscription's `batches()` yields the
  records after the consumer's position, in seq order, at least once, in
  batches; `caught_up` is set on a batch after which nothing durable is known
  beyond it (the end of a catch-up, and every live batch). A subscription may
  filter by key prefix (e.g. `account:`); records it filters out still move
  the position. `ack(seq)` is cumulative (AckAll): every record up to `seq` is
  in the consumer's own durable state. A consumer's position is one integer.
- A consumer registers by subscribing and stays registered (it holds
  tombstones back) until `remove` deletes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
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
class Batch:
    """Records in seq order. `position` is the seq the consumer may ack once it has stored
    these (at least the last delivery's seq; beyond it when filtered-out records followed)."""

    deliveries: Sequence[Delivery]
    position: int
    caught_up: bool


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

    def batches(self) -> AsyncIterator[Batch]: ...

    async def ack(self, seq: int) -> None: ...


class ConsumerDirectory(Protocol):
    async def consumers(self) -> list[ConsumerInfo]: ...

    async def remove(self, name: str) -> bool:
        """Forget a consumer (its position, and its hold on tombstones); False if unknown."""
        ...


class BusConnector(Protocol):
    """How a process reaches the bus: each port is an async context manager owned by one actor.

    `subscription(consumer, key_prefix="account:")` delivers only records whose key
    starts with the prefix (JetStream: a filter subject); "" delivers every record."""

    def publisher(self) -> AbstractAsyncContextManager[EventPublisher]: ...

    def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AbstractAsyncContextManager[EventSubscription]: ...

    def directory(self) -> AbstractAsyncContextManager[ConsumerDirectory]: ...
