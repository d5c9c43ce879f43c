"""Prometheus metrics of the API process, in a registry of its own (several apps can share a test).

Request count and latency per method and code, the outbox backlog, the cache's
lag behind the broker log.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fabric_rpc_requests",
            "JSON-RPC calls by method and result code (0 = success)",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fabric_rpc_request_seconds",
            "JSON-RPC call latency by method and result code",
            ["method", "code"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "fabric_outbox_backlog", "Outbox rows not yet published to the broker", registry=self.registry
        )
        self.cache_lag = Gauge(
            "fabric_cache_lag", "Events in the broker log not yet applied to the cache",
            registry=self.registry,
        )
        self.events_applied = Counter(
            "fabric_cache_events_applied", "Events applied to the cache by the event driver",
            registry=self.registry,
        )
        self.events_published = Counter(
            "fabric_outbox_events_published", "Outbox events confirmed by the broker",
            registry=self.registry,
        )

    def observe(self, method: str, code: int, seconds: float) -> None:
        # Unknown method names are caller-chosen: never let them become label values.
        self.requests.labels(method, str(code)).inc()
        self.latency.labels(method, str(code)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
