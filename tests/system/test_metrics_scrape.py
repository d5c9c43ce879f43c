"""`fabric up` lists a Prometheus /metrics URL for every long-running child in endpoints.json,
and after one account is created each one serves the families the alerts and the dashboard
read, with values that say what happened."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.harness import FabricUp, call_ok, create_account, eventually

pytestmark = pytest.mark.processes

BUSES = ["zmq"]  # the broker's own metrics are the subject; the daemons' are the same on both
CLUSTERS = ["a", "b"]

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(url) as response:
        assert response.status == 200, url
        text = await response.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample of `name` whose labels include `labels` (summed when several do)."""
    found = [v for lab, v in samples.get(name, []) if labels.items() <= lab.items()]
    return sum(found) if found else None


async def test_every_child_serves_metrics_that_show_one_created_account(up: FabricUp) -> None:
    up.start()
    await up.wait_ready()
    urls: dict[str, Any] = up.endpoints["metrics"]
    assert set(urls) == {"api", "broker", "daemon-a", "daemon-b"}
    assert urls["api"] == f"{up.api_url}/metrics"
    account = await create_account(up, "metrics-one")

    async def ready() -> bool:
        got = await call_ok(up, "account.get", {"id": account["id"]})
        return bool(got["status"] == "ready")

    await eventually(ready, timeout=60, message="the account ready")

    async def api_observed_readiness() -> bool:
        return (value(await scrape(urls["api"]), "fabric_account_ready_seconds_count") or 0) >= 1

    await eventually(api_observed_readiness, timeout=30, message="the api's ready histogram")
    api = await scrape(urls["api"])
    assert (value(api, "fabric_rpc_requests_total", method="account.create", code="0") or 0) >= 1
    assert value(api, "fabric_outbox_backlog") is not None

    async def broker_settled() -> bool:
        broker = await scrape(urls["broker"])
        return all(
            value(broker, "fabric_broker_consumer_lag", consumer=f"cluster:{c}") == 0
            and value(broker, "fabric_broker_consumer_online", consumer=f"cluster:{c}") == 1
            for c in CLUSTERS
        )

    await eventually(broker_settled, timeout=30, message="both clusters online at lag 0")
    broker = await scrape(urls["broker"])
    # The account's event and each cluster's report on it.
    assert (value(broker, "fabric_broker_records_stored_total") or 0) >= 1 + len(CLUSTERS)
    assert (value(broker, "fabric_broker_fsync_seconds_count") or 0) >= 1
    assert (value(broker, "fabric_broker_live_keys") or 0) >= 1 + len(CLUSTERS)
    assert (value(broker, "fabric_broker_log_bytes") or 0) > 0
    assert (value(broker, "fabric_broker_consumers_online") or 0) >= len(CLUSTERS)

    for cluster in CLUSTERS:
        daemon = await scrape(urls[f"daemon-{cluster}"])
        created = value(daemon, "fabric_daemon_reconciles_total", cluster=cluster, outcome="created")
        assert (created or 0) >= 1, cluster
        assert value(daemon, "fabric_daemon_caught_up", cluster=cluster) == 1
        assert value(daemon, "fabric_daemon_failed_accounts", cluster=cluster) == 0
        assert (value(daemon, "fabric_daemon_kube_request_seconds_count", cluster=cluster,
                      verb="POST", resource="namespaces") or 0) >= 1
        assert value(daemon, "fabric_daemon_queue_depth", cluster=cluster) is not None
