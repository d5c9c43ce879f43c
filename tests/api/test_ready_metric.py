"""`fabric_account_ready_seconds`: the event driver observes it once, when an apply turns an
account ready in every online cluster, not for a report that changes nothing about readiness."""

from __future__ import annotations

from pathlib import Path

from actors.api.app import CACHE_FILE
from actors.api.cache import CacheActor, CacheMessage
from actors.api.cache_store import SqliteCache
from actors.api.clusters import ClusterDirectoryActor
from actors.api.driver import EventDriverActor, GetApplied
from actors.api.metrics import ApiMetrics
from actors.runtime import ActorRef, ActorSystem
from core.envelope import utc_now
from core.events import AccountCreated, NamespaceProvisioned, to_envelope
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

ACCOUNT = "00000000-0000-4000-8000-000000000001"
NS = "acc-ready"


def _provisioned(cluster: str) -> NamespaceProvisioned:
    return NamespaceProvisioned(ACCOUNT, cluster, NS, f"uid-{cluster}", "1", 1)


def _observed(metrics: ApiMetrics) -> float:
    return metrics.registry.get_sample_value("fabric_account_ready_seconds_count") or 0.0


async def test_readiness_is_observed_once_when_the_last_online_cluster_reports_created(
    tmp_path: Path,
) -> None:
    bus = FakeBus()
    for cluster in ("a", "b"):
        bus.set_online(f"cluster:{cluster}", True)
    metrics = ApiMetrics()
    path = tmp_path / CACHE_FILE
    async with ActorSystem(stop_timeout=5.0) as system:
        cache: ActorRef[CacheMessage] = system.spawn(
            lambda: CacheActor(lambda: SqliteCache.open(path)), name="cache"
        )
        directory = system.spawn(
            lambda: ClusterDirectoryActor(bus.connector(), metrics, interval=0.05), name="directory"
        )
        driver = system.spawn(
            lambda: EventDriverActor(bus.connector(), cache, metrics, backoff_max=0.2,
                                     directory=directory),
            name="driver",
        )

        async def applied(n: int) -> bool:
            return await driver.ask(GetApplied()) >= n

        created = AccountCreated(ACCOUNT, "ready", "Ready", "o@example.com", NS, utc_now(), 1)
        await bus.publish([to_envelope(created, correlation_id="t")])
        await bus.publish([to_envelope(_provisioned("a"), correlation_id="t")])
        await wait_until(lambda: applied(2), message="the account and cluster a's report")
        assert _observed(metrics) == 0  # cluster b has not reported yet
        await bus.publish([to_envelope(_provisioned("b"), correlation_id="t")])
        await wait_until(lambda: _observed(metrics) == 1, message="ready observed")
        # A daemon's re-report after its restart changes the report, not the readiness.
        await bus.publish([to_envelope(_provisioned("a"), correlation_id="t2")])
        await wait_until(lambda: applied(4), message="the re-report applied")
        assert _observed(metrics) == 1
    ready_sum = metrics.registry.get_sample_value("fabric_account_ready_seconds_sum")
    assert ready_sum is not None
    assert ready_sum >= 0
