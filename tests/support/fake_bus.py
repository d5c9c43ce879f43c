"""An in-memory event bus implementing the `core.bus` ports, for unit tests.

Same semantics as the real broker, minus disk and sockets:

- A compacted keyed log. Publish dedups by event id (within `dedup_window`
  stored records, or forever when None) and assigns strictly growing seqs;
  with `compacting` (the default) a key's older record disappears at once
  when a newer one is stored, so seqs have gaps exactly as after the broker's
  cleaner. Tombstones stay until `drop_tombstones()` (the retention expiring)
  and then only those every registered consumer has passed.
- `history` keeps every stored envelope in store order, never compacted: what
  a test asserts on to see what was published. `log` is what a reader from
  the beginning would get now (the retained envelopes in seq order).
- Named consumers with one integer position (cumulative ack). A subscription's
  `batches()` yields the retained records after the position, filtered by key
  prefix (filtered records still advance the batch's position), at most
  `batch_size` deliveries per batch; the first batch after nothing remains is
  `caught_up` (also when empty), and so is every later (live) batch.
- `redeliver` rewinds a consumer's open subscriptions to its acked position,
  as a broker restart would; `fail_next` makes the next publishes raise
  `BusUnavailable`; `remove` forgets a consumer (one still running registers
  again with its next ack).

`connector()` gives a `core.bus.BusConnector` over the bus; its
`directory_down` flag makes the directory raise `BusUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.bus import (
    Batch,
    BusUnavailable,
    ConsumerDirectory,
    ConsumerInfo,
    Delivery,
    EventPublisher,
    EventSubscription,
    PublishReceipt,
)
from core.envelope import Envelope, utc_now


@dataclass
class _Consumer:
    name: str
    position: int = 0
    last_seen: str | None = None
    online: bool = True
    generation: int = 0


class FakeBus:
    def __init__(
        self, *, compacting: bool = True, dedup_window: int | None = None, batch_size: int = 100
    ) -> None:
        self.history: list[Envelope] = []
        self.head = 0
        self._records: dict[int, Envelope] = {}  # seq -> envelope, retained only
        self._newest: dict[str, int] = {}  # key -> newest seq
        self._by_id: dict[str, int] = {}
        self._consumers: dict[str, _Consumer] = {}
        self._changed = asyncio.Condition()
        self._failures = 0
        self._accepting = asyncio.Event()
        self._accepting.set()
        self._compacting = compacting
        self._dedup_window = dedup_window
        self._batch_size = batch_size

    # the log ---------------------------------------------------------------------
    @property
    def log(self) -> list[Envelope]:
        """The retained envelopes in seq order (what a reader from 0 gets)."""
        return [self._records[seq] for seq in sorted(self._records)]

    def records(self) -> list[Delivery]:
        return [Delivery(seq, self._records[seq]) for seq in sorted(self._records)]

    def newest(self, key: str) -> Envelope | None:
        seq = self._newest.get(key)
        return None if seq is None else self._records.get(seq)

    async def drop_tombstones(self) -> int:
        """The tombstone retention expired: drop every tombstone all consumers have passed."""
        floor = min((c.position for c in self._consumers.values()), default=self.head)
        dropped = [s for s, env in self._records.items() if env.tombstone and s <= floor]
        for seq in dropped:
            key = self._records[seq].key
            for older in [s for s, env in self._records.items() if env.key == key and s <= seq]:
                del self._records[older]
            if self._newest.get(key) == seq:
                del self._newest[key]
        return len(dropped)

    # publisher -------------------------------------------------------------------
    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        await self._accepting.wait()
        if self._failures > 0:
            self._failures -= 1
            raise BusUnavailable("fake bus told to fail")
        receipts = []
        for env in envelopes:
            seq = self._by_id.get(env.event_id)
            if seq is not None and (
                self._dedup_window is None or self.head - seq < self._dedup_window
            ):
                receipts.append(PublishReceipt(env.event_id, seq, duplicate=True))
                continue
            self.head += 1
            seq = self.head
            self.history.append(env)
            self._records[seq] = env
            older = self._newest.get(env.key)
            if self._compacting and older is not None:
                self._records.pop(older, None)
            self._newest[env.key] = seq
            self._by_id[env.event_id] = seq
            receipts.append(PublishReceipt(env.event_id, seq, duplicate=False))
        async with self._changed:
            self._changed.notify_all()
        return receipts

    def fail_next(self, count: int = 1) -> None:
        self._failures += count

    def hold(self) -> None:
        """Publishes wait (as on a slow broker) until `release`."""
        self._accepting.clear()

    def release(self) -> None:
        self._accepting.set()

    # consumers -------------------------------------------------------------------
    def subscribe(self, consumer: str, key_prefix: str = "") -> FakeSubscription:
        state = self._consumers.setdefault(consumer, _Consumer(consumer))
        state.last_seen = utc_now()
        return FakeSubscription(self, state, key_prefix)

    async def redeliver(self, consumer: str) -> None:
        """Rewind a consumer's subscriptions to its acked position, as after a broker restart."""
        self._consumers[consumer].generation += 1
        async with self._changed:
            self._changed.notify_all()

    def acked_seq(self, consumer: str) -> int:
        return self._consumers[consumer].position

    def set_online(self, consumer: str, online: bool) -> None:
        self._consumers.setdefault(consumer, _Consumer(consumer)).online = online

    async def consumers(self) -> list[ConsumerInfo]:
        return [
            ConsumerInfo(c.name, c.position, self.head - c.position, c.last_seen, c.online)
            for c in sorted(self._consumers.values(), key=lambda c: c.name)
        ]

    async def remove(self, name: str) -> bool:
        return self._consumers.pop(name, None) is not None

    def connector(self) -> FakeConnector:
        return FakeConnector(self)

    def _ack(self, state: _Consumer, seq: int) -> None:
        # A removed consumer that still runs registers again, as with the broker.
        state = self._consumers.setdefault(state.name, state)
        state.last_seen = utc_now()
        state.position = max(state.position, min(seq, self.head))

    def _page(self, after: int, key_prefix: str) -> tuple[list[Delivery], int]:
        """Retained matching records after `after`; the position the page covers."""
        out: list[Delivery] = []
        for seq in sorted(s for s in self._records if s > after):
            env = self._records[seq]
            if not env.key.startswith(key_prefix):
                continue
            if len(out) == self._batch_size:
                return out, out[-1].seq
            out.append(Delivery(seq, env))
        return out, self.head

    async def _wait(self, position: int, state: _Consumer, generation: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.head > position or state.generation != generation
            )


class FakeSubscription:
    def __init__(self, bus: FakeBus, state: _Consumer, key_prefix: str) -> None:
        self._bus = bus
        self._state = state
        self._prefix = key_prefix

    @property
    def consumer(self) -> str:
        return self._state.name

    @property
    def key_prefix(self) -> str:
        return self._prefix

    async def batches(self) -> AsyncIterator[Batch]:
        generation = self._state.generation
        position = self._state.position
        caught_up = False
        while True:
            if self._state.generation != generation:
                generation, position, caught_up = self._state.generation, self._state.position, False
            deliveries, covered = self._bus._page(position, self._prefix)
            done = covered >= self._bus.head
            if deliveries or covered > position or (done and not caught_up):
                position = covered
                caught_up = caught_up or done
                yield Batch(deliveries, position, caught_up=done)
                continue
            await self._bus._wait(position, self._state, generation)

    async def ack(self, seq: int) -> None:
        self._bus._ack(self._state, seq)


class _Directory:
    def __init__(self, connector: FakeConnector) -> None:
        self._connector = connector

    async def consumers(self) -> list[ConsumerInfo]:
        self._check()
        return await self._connector.bus.consumers()

    async def remove(self, name: str) -> bool:
        self._check()
        return await self._connector.bus.remove(name)

    def _check(self) -> None:
        if self._connector.directory_down:
            raise BusUnavailable("fake directory told to fail")


class FakeConnector:
    """The `core.bus.BusConnector` port over the in-memory bus."""

    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.directory_down = False

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        yield self.bus

    @asynccontextmanager
    async def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AsyncIterator[EventSubscription]:
        yield self.bus.subscribe(consumer, key_prefix)

    @asynccontextmanager
    async def directory(self) -> AsyncIterator[ConsumerDirectory]:
        yield _Directory(self)
