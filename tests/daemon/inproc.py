"""The daemon actor in-process for tests: settings with fast timers, event builders, `running`.

    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned))
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from actors.daemon.dispatcher import ClusterDaemon, DaemonPorts
from actors.daemon.settings import DaemonSettings
from actors.runtime import ActorSystem
from core.bus import ConsumerDirectory, EventPublisher, EventSubscription, PublishReceipt
from core.envelope import Envelope
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    DomainEvent,
    OutcomeEvent,
    from_envelope,
    outcome_key,
    to_envelope,
)
from core.tenancy import TenancyPolicy
from tests.daemon.fake_cluster import FakeCluster
from tests.support.fake_bus import FakeBus
from transport.endpoints import BrokerEndpoints

POLICY = TenancyPolicy()
CLUSTER = "east"
CONSUMER = f"cluster:{CLUSTER}"


def settings(
    state_dir: Path, *, resync: float = 3600.0, failed_after: int = 5, max_parallel: int = 8
) -> DaemonSettings:
    return DaemonSettings(
        cluster=CLUSTER,
        kubeconfig=None,
        broker=BrokerEndpoints.parse("tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"),
        state_dir=state_dir,
        resync_seconds=resync,
        policy=POLICY,
        backoff_initial=0.005,
        backoff_cap=0.02,
        failed_after=failed_after,
        max_parallel=max_parallel,
    )


def account(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def namespace(n: int) -> str:
    return f"acc-team{n}"


def created(
    n: int, generation: int = 1, *, name: str | None = None, plan: str = "standard"
) -> Envelope:
    event = AccountCreated(
        account(n), f"team{n}", name or f"Team {n}", "o@example.com", namespace(n), "t",
        generation, plan,
    )
    return to_envelope(event, correlation_id=f"req-{n}")


def updated(
    n: int, generation: int, *, plan: str = "standard", suspended: bool = False
) -> Envelope:
    """The whole state at a later generation (an update, a suspension, a retry)."""
    event = AccountUpdated(
        account(n), f"team{n}", f"Team {n}", "o@example.com", namespace(n), "t", generation,
        plan, suspended,
    )
    return to_envelope(event, correlation_id=f"upd-{n}-{generation}")


def deleted(n: int, generation: int = 2) -> Envelope:
    event = AccountDeleted(
        account(n), f"team{n}", namespace(n), "t", generation, f"Team {n}", "o@example.com", "t0"
    )
    return to_envelope(event, correlation_id=f"del-{n}")


def lag(bus: FakeBus) -> int:
    return bus.head - bus.acked_seq(CONSUMER)


def outcomes(bus: FakeBus, kind: type[DomainEvent], n: int | None = None) -> list[DomainEvent]:
    """Every report of `kind` ever stored (of account `n`), in store order."""
    events = (from_envelope(env) for env in bus.history)
    return [
        e for e in events if isinstance(e, kind) and (n is None or e.account_id == account(n))
    ]


def latest(bus: FakeBus, n: int) -> OutcomeEvent | None:
    """This cluster's newest report on account `n` (what the compacted log keeps)."""
    env = bus.newest(outcome_key(CLUSTER, account(n)))
    if env is None:
        return None
    event = from_envelope(env)
    assert not isinstance(event, AccountCreated | AccountDeleted)
    return event


def reported(bus: FakeBus, n: int, kind: type[OutcomeEvent], generation: int = 1) -> bool:
    event = latest(bus, n)
    return isinstance(event, kind) and event.observed_generation == generation


class ExplodingPublisher:
    """Raises an unexpected error on the first publish: a bug, not an outage."""

    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.exploded = False

    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        if not self.exploded:
            self.exploded = True
            raise RuntimeError("boom")
        return await self.bus.publish(envelopes)


@dataclasses.dataclass
class Connector:
    """The fake bus's connector, with the publisher optionally replaced."""

    bus: FakeBus
    publisher_override: EventPublisher | None = None

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        yield self.publisher_override or self.bus

    def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AbstractAsyncContextManager[EventSubscription]:
        return self.bus.connector().subscription(consumer, key_prefix=key_prefix)

    def directory(self) -> AbstractAsyncContextManager[ConsumerDirectory]:
        return self.bus.connector().directory()


@asynccontextmanager
async def running(
    bus: FakeBus,
    cluster: FakeCluster,
    cfg: DaemonSettings,
    *,
    publisher: EventPublisher | None = None,
) -> AsyncIterator[ActorSystem]:
    @asynccontextmanager
    async def ports() -> AsyncIterator[DaemonPorts]:
        yield DaemonPorts(Connector(bus, publisher), cluster)

    async with ActorSystem(stop_timeout=5.0) as system:
        system.spawn(lambda: ClusterDaemon(cfg, ports), name="daemon")
        yield system
