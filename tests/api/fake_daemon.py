"""A cluster's daemon as far as the API can tell: it consumes account events and reports on them.

    async with fake_daemon(bus, "a") as daemon:
        daemon.refuse = lambda event: "Forbidden: no"   # report failures from now on

For each account event on the bus (from its durable consumer `cluster:NAME`,
account keys only) it publishes what a real daemon would once it applied the
event: `namespace.provisioned` at that generation (or `namespace.provision_failed`
with the reason `refuse` returns), `namespace.deleted` for a tombstone.
`seen` lists the account events it consumed, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from core.events import (
    ACCOUNT_KEY_PREFIX,
    AccountCreated,
    AccountDeleted,
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    from_envelope,
    to_envelope,
)
from tests.support.fake_bus import FakeBus


@dataclass
class FakeDaemon:
    bus: FakeBus
    cluster: str
    refuse: Callable[[AccountCreated], str | None] = lambda event: None
    seen: list[DomainEvent] = field(default_factory=list)
    attempts: int = 0

    def report(self, event: DomainEvent) -> DomainEvent | None:
        match event:
            case AccountCreated():
                reason = self.refuse(event)
                if reason is not None:
                    self.attempts += 1
                    return NamespaceProvisionFailed(
                        event.account_id, self.cluster, event.namespace, reason, event.generation,
                        self.attempts,
                    )
                return NamespaceProvisioned(
                    event.account_id, self.cluster, event.namespace, f"uid-{event.account_id}",
                    str(event.generation), event.generation,
                )
            case AccountDeleted():
                return NamespaceDeleted(
                    event.account_id, self.cluster, event.namespace, event.generation
                )
        return None

    async def run(self) -> None:
        subscription = self.bus.subscribe(f"cluster:{self.cluster}", ACCOUNT_KEY_PREFIX)
        async for batch in subscription.batches():
            for delivery in batch.deliveries:
                event = from_envelope(delivery.envelope)
                self.seen.append(event)
                outcome = self.report(event)
                if outcome is not None:
                    await self.bus.publish([to_envelope(outcome, correlation_id="fake-daemon")])
            await subscription.ack(batch.position)


@asynccontextmanager
async def fake_daemon(bus: FakeBus, cluster: str = "a") -> AsyncIterator[FakeDaemon]:
    daemon = FakeDaemon(bus, cluster)
    task = asyncio.create_task(daemon.run(), name=f"fake-daemon-{cluster}")
    try:
        yield daemon
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
