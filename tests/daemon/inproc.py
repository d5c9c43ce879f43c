"""The daemon actor in-process for tests: settings with fast timers, event builders, `running`.

    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: all_acked(bus))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from actors.daemon.dispatcher import ClusterDaemon, DaemonPorts
from actors.daemon.settings import DaemonSettings
from actors.runtime import ActorSystem
from core.bus import EventPublisher, PublishReceipt
from core.envelope import Envelope
from core.events import AccountCreated, AccountDeleted, DomainEvent, from_envelope, to_envelope
from core.tenancy import TenancyPolicy
from tests.daemon.fake_cluster import FakeCluster
from tests.support.fake_bus import FakeBus
from transport.client import BrokerEndpoints

POLICY = TenancyPolicy()


def settings(state_dir: Path, *, resync: float = 3600.0) -> DaemonSettings:
    return DaemonSettings(
        cluster="east",
        kubeconfig=None,
        broker=BrokerEndpoints.parse("tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3"),
        state_dir=state_dir,
        resync_seconds=resync,
        policy=POLICY,
        backoff_initial=0.005,
        backoff_cap=0.02,
        delete_timeout=2.0,
    )


def created(n: int) -> Envelope:
    acc = f"00000000-0000-4000-8000-{n:012d}"
    event = AccountCreated(acc, f"team{n}", f"Team {n}", "o@example.com", f"acc-team{n}", "t")
    return to_envelope(event, correlation_id=f"req-{n}")


def deleted(n: int) -> Envelope:
    acc = f"00000000-0000-4000-8000-{n:012d}"
    return to_envelope(AccountDeleted(acc, f"team{n}", f"acc-team{n}", "t"), correlation_id="del")


def all_acked(bus: FakeBus) -> bool:
    """Every event in the log is acked (the daemon also consumes and acks its own reports)."""
    return bool(bus.log) and bus.acked_seq("cluster:east") == len(bus.log)


def outcomes(bus: FakeBus, kind: type[DomainEvent]) -> list[DomainEvent]:
    return [e for e in (from_envelope(env) for env in bus.log) if isinstance(e, kind)]


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


@asynccontextmanager
async def running(
    bus: FakeBus,
    cluster: FakeCluster,
    cfg: DaemonSettings,
    *,
    lose_acks: bool = False,
    publisher: EventPublisher | None = None,
) -> AsyncIterator[ActorSystem]:
    @asynccontextmanager
    async def ports() -> AsyncIterator[DaemonPorts]:
        sub = bus.subscribe(cfg.consumer)
        if lose_acks:
            async def no_ack(seq: int) -> None:
                return None

            sub.ack = no_ack  # type: ignore[method-assign]
        yield DaemonPorts(sub, publisher or bus, cluster)

    async with ActorSystem(stop_timeout=5.0) as system:
        system.spawn(lambda: ClusterDaemon(cfg, ports), name="daemon")
        yield system
