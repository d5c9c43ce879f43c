"""An in-memory event bus implementing the `core.bus` ports, for unit tests.

Same semantics as the real broker, minus disk and sockets: publish dedups by
event id and assigns contiguous sequence numbers; each named consumer gets
every event after its acked watermark, in order, at least once; `redeliver`
rewinds a consumer to its watermark as a broker restart would; `fail_next`
makes the next publishes raise `BusUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from core.bus import BusUnavailable, ConsumerInfo, Delivery, PublishReceipt
from core.envelope import Envelope, utc_now


@dataclass
class _Consumer:
    name: str
    acked: set[int] = field(default_factory=set)
    watermark: int = 0
    last_seen: str | None = None
    online: bool = True
    generation: int = 0


class FakeBus:
    def __init__(self) -> None:
        self.log: list[Envelope] = []
        self._by_id: dict[str, int] = {}
        self._consumers: dict[str, _Consumer] = {}
        self._changed = asyncio.Condition()
        self._failures = 0

    # publisher -------------------------------------------------------------------
    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        if self._failures > 0:
            self._failures -= 1
            raise BusUnavailable("fake bus told to fail")
        receipts = []
        for env in envelopes:
            seq = self._by_id.get(env.event_id)
            if seq is not None:
                receipts.append(PublishReceipt(env.event_id, seq, duplicate=True))
                continue
            self.log.append(env)
            seq = len(self.log)
            self._by_id[env.event_id] = seq
            receipts.append(PublishReceipt(env.event_id, seq, duplicate=False))
        async with self._changed:
            self._changed.notify_all()
        return receipts

    def fail_next(self, count: int = 1) -> None:
        self._failures += count

    # subscriptions ---------------------------------------------------------------
    def subscribe(self, consumer: str) -> FakeSubscription:
        state = self._consumers.setdefault(consumer, _Consumer(consumer))
        state.last_seen = utc_now()
        return FakeSubscription(self, state)

    async def redeliver(self, consumer: str) -> None:
        """Rewind a consumer to its acked watermark, as after a broker restart."""
        self._consumers[consumer].generation += 1
        async with self._changed:
            self._changed.notify_all()

    def acked_seq(self, consumer: str) -> int:
        return self._consumers[consumer].watermark

    def set_online(self, consumer: str, online: bool) -> None:
        self._consumers.setdefault(consumer, _Consumer(consumer)).online = online

    async def consumers(self) -> list[ConsumerInfo]:
        head = len(self.log)
        return [
            ConsumerInfo(c.name, c.watermark, head - c.watermark, c.last_seen, c.online)
            for c in sorted(self._consumers.values(), key=lambda c: c.name)
        ]

    def _ack(self, state: _Consumer, seq: int) -> None:
        state.acked.add(seq)
        state.last_seen = utc_now()
        while state.watermark + 1 in state.acked:
            state.watermark += 1
            state.acked.discard(state.watermark)

    async def _wait_beyond(self, position: int, generation: int, state: _Consumer) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: len(self.log) > position or state.generation != generation
            )


class FakeSubscription:
    def __init__(self, bus: FakeBus, state: _Consumer) -> None:
        self._bus = bus
        self._state = state

    @property
    def consumer(self) -> str:
        return self._state.name

    async def deliveries(self) -> AsyncIterator[Delivery]:
        position = self._state.watermark
        generation = self._state.generation
        while True:
            if self._state.generation != generation:
                generation = self._state.generation
                position = self._state.watermark
            if position < len(self._bus.log):
                position += 1
                if position not in self._state.acked:
                    yield Delivery(position, self._bus.log[position - 1])
                continue
            await self._bus._wait_beyond(position, generation, self._state)

    async def ack(self, seq: int) -> None:
        self._bus._ack(self._state, seq)
