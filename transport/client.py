"""The broker client library: the only way the API, the event driver and the daemons reach the broker.

    endpoints = BrokerEndpoints.parse("tcp://127.0.0.1:7101,tcp://127.0.0.1:7102,tcp://127.0.0.1:7103")
    ctx = new_context()
    async with Publisher(ctx, endpoints) as pub:
        receipts = await pub.publish([envelope, ...])        # confirmed after fsync
    async with Subscriber(ctx, endpoints, consumer="cluster:a") as sub:
        async for delivery in sub.deliveries():               # catch-up, then live
            ...apply...
            await sub.ack(delivery.seq)
    async with Directory(ctx, endpoints) as d:
        infos = await d.consumers()

Publisher, Subscriber and Directory implement the ports in `core.bus`.
STUB: the broker issue fills these in; the signatures are the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from core.bus import ConsumerInfo, Delivery, PublishReceipt
from core.envelope import Envelope


@dataclass(frozen=True, slots=True)
class BrokerEndpoints:
    """The broker's three sockets: control (ROUTER), events (PUB), acks (PULL)."""

    control: str
    events: str
    acks: str

    @classmethod
    def parse(cls, text: str) -> BrokerEndpoints:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(parts):
            raise ValueError("broker endpoints: give CONTROL,EVENTS,ACKS addresses, comma-separated")
        return cls(*parts)

    def to_dict(self) -> dict[str, str]:
        return {"control": self.control, "events": self.events, "acks": self.acks}

    def __str__(self) -> str:
        return f"{self.control},{self.events},{self.acks}"


class Publisher:
    async def __aenter__(self) -> Publisher:
        raise NotImplementedError

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        raise NotImplementedError

    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        raise NotImplementedError


class Subscriber:
    @property
    def consumer(self) -> str:
        raise NotImplementedError

    def deliveries(self) -> AsyncIterator[Delivery]:
        raise NotImplementedError

    async def ack(self, seq: int) -> None:
        raise NotImplementedError


class Directory:
    async def consumers(self) -> list[ConsumerInfo]:
        raise NotImplementedError
