"""The API's bus-neutral consumer gauges: what the alert rules read on either bus."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from actors.api.metrics import ApiMetrics
from core.bus import ConsumerInfo


def samples(metrics: ApiMetrics, family: str) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        s.labels["consumer"]: s.value
        for f in text_string_to_metric_families(text) if f.name == family for s in f.samples
    }


def test_gauges_follow_the_directory_and_a_removed_consumer_goes_away() -> None:
    metrics = ApiMetrics()
    metrics.consumers([
        ConsumerInfo("cluster:a", acked_seq=10, lag=0, last_seen=None, online=True),
        ConsumerInfo("cluster:b", acked_seq=4, lag=6, last_seen=None, online=False),
    ])
    assert samples(metrics, "fabric_bus_consumer_online") == {"cluster:a": 1.0, "cluster:b": 0.0}
    assert samples(metrics, "fabric_bus_consumer_lag") == {"cluster:a": 0.0, "cluster:b": 6.0}
    metrics.consumers([ConsumerInfo("cluster:a", acked_seq=12, lag=3, last_seen=None, online=True)])
    assert samples(metrics, "fabric_bus_consumer_online") == {"cluster:a": 1.0}
    assert samples(metrics, "fabric_bus_consumer_lag") == {"cluster:a": 3.0}
