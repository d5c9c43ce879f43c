"""Prometheus metrics of the API process, in a registry of its own (several apps can share a test).

Request count and latency per method and code, the outbox backlog, the cache's
lag behind the broker log, and how long an accepted generation takes to be
ready everywhere (`fabric_account_ready_seconds`, observed by the event driver).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from core.bus import ConsumerInfo

CONTENT_TYPE = CONTENT_TYPE_LATEST
RPC_BUCKETS = Histogram.DEFAULT_BUCKETS
_LE = tuple("+Inf" if math.isinf(bound) else repr(bound) for bound in RPC_BUCKETS)
READY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc = RpcStats()
        self.registry.register(self.rpc)
        self.outbox_backlog = Gauge(
            "fabric_outbox_backlog", "Outbox rows not yet published to the broker", registry=self.registry
        )
        self.cache_lag = Gauge(
            "fabric_cache_lag", "Events in the broker log not yet applied to the cache",
            registry=self.registry,
        )
        # From the bus's consumer directory, so they exist on either bus (the ZeroMQ broker
        # exports its own too; on JetStream these are the only ones): what the alerts use.
        self.consumer_online = Gauge(
            "fabric_bus_consumer_online", "1 while the bus sees the durable consumer alive",
            ["consumer"], registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "fabric_bus_consumer_lag", "Records the durable consumer has not yet acked",
            ["consumer"], registry=self.registry,
        )
        self.events_applied = Counter(
            "fabric_cache_events_applied", "Events applied to the cache by the event driver",
            registry=self.registry,
        )
        self.ready_seconds = Histogram(
            "fabric_account_ready_seconds",
            "From an account's generation being committed to every online cluster reporting "
            "it created at that generation (create, update, suspend, resume)",
            buckets=READY_BUCKETS, registry=self.registry,
        )
        self.events_published = Counter(
            "fabric_outbox_events_published", "Outbox events confirmed by the broker",
            registry=self.registry,
        )

    def consumers(self, infos: Sequence[ConsumerInfo]) -> None:
        """Set the consumer gauges to the bus's answer; a removed consumer's series go away."""
        names = {info.name for info in infos}
        for gauge in (self.consumer_online, self.consumer_lag):
            for (stale,) in [labels for labels in _label_sets(gauge) if labels[0] not in names]:
                gauge.remove(stale)
        for info in infos:
            self.consumer_online.labels(info.name).set(1 if info.online else 0)
            self.consumer_lag.labels(info.name).set(info.lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Series:
    __slots__ = ("buckets", "count", "created", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(RPC_BUCKETS)  # the last bound is +Inf
        self.created = time.time()


class RpcStats(Collector):
    """JSON-RPC calls by method and code: `fabric_rpc_requests_total` and the
    `fabric_rpc_request_seconds` histogram, kept as plain numbers and turned into metric
    families when scraped. Every call of every method passes here; prometheus_client's
    labelled Counter and Histogram take a lock per increment (three per call), which made
    this ~10% of an `account.get`'s own work under load. Only the event loop's thread
    observes and renders, so nothing here needs a lock."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, int], _Series] = {}

    def observe(self, method: str, code: int, seconds: float) -> None:
        # `method` is a table entry or "-": a caller-chosen name never becomes a label value.
        series = self._series.get((method, code))
        if series is None:
            series = self._series[(method, code)] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect.bisect_left(RPC_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "fabric_rpc_requests", "JSON-RPC calls by method and result code (0 = success)",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "fabric_rpc_request_seconds", "JSON-RPC call latency by method and result code",
            labels=["method", "code"],
        )
        for (method, code), series in sorted(self._series.items()):
            labels = [method, str(code)]
            requests.add_metric(labels, series.count, created=series.created)
            cumulative, buckets = 0, []
            for le, n in zip(_LE, series.buckets, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric(labels, buckets, series.total)
        yield requests
        yield latency


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(sample.labels.values()) for metric in gauge.collect() for sample in metric.samples]
