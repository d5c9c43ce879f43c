"""Small helpers shared by the JetStream transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.bus import Batch, BusConnector, Delivery


async def read_all(connector: BusConnector, consumer: str, *, key_prefix: str = "") -> list[Delivery]:
    """Everything a consumer reads until it is caught up (it acks nothing)."""
    async with connector.subscription(consumer, key_prefix=key_prefix) as sub:
        batches: AsyncIterator[Batch] = sub.batches()
        got: list[Delivery] = []
        try:
            while True:
                batch = await anext(batches)
                got += batch.deliveries
                if batch.caught_up:
                    return got
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
