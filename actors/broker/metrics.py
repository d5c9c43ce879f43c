"""The broker's Prometheus metrics, in a registry of its own (several brokers can share a test).

Events are counted where they happen (the broker actor calls `synced`,
`published`, `refused`, `compacted`); state (the head, each consumer's
position, lag and liveness, the live keys, the log's size) is read at scrape
time from a `BrokerState` snapshot the actor hands in with `watch`, so nothing
is sampled on a timer and a scrape never sees a stale value. Scrapes run on
the actor's event loop (`actors.runtime.metrics_server`), so the snapshot reads
the actor's state without locks.

Label values are bounded: consumers and identities are the registered ones
(the ZAP allow-list bounds identities), a refusal's reason is one of
`REFUSAL_REASONS` (the free-text reason goes to the `request_refused` log line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.broker.permissions import OtherPeer, Peer, consumer_refusal
from transport import protocol

FSYNC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
COMPACTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
REFUSAL_REASONS = ("identity_not_granted", "consumer_not_allowed", "event_not_allowed",
                   "prefix_not_allowed", "list_not_allowed")


@dataclass(frozen=True, slots=True)
class ConsumerGauge:
    name: str
    acked_seq: int
    lag: int
    online: bool


@dataclass(frozen=True, slots=True)
class BrokerState:
    head: int  # the durable head
    live_keys: int
    tombstones: int
    log_bytes: int
    segments: int
    consumers: Sequence[ConsumerGauge] = field(default_factory=tuple)


def refusal_reason(peer: Peer, request: protocol.ControlRequest | protocol.Ack) -> str:
    """The bounded label for why `peer` was refused `request` (permissions.py decides it)."""
    if isinstance(peer, OtherPeer):
        return "identity_not_granted"
    match request:
        case protocol.PublishRequest():
            return "event_not_allowed"
        case protocol.ListRequest():
            return "list_not_allowed"
        case protocol.SyncRequest(consumer=consumer) if consumer_refusal(peer, consumer) is None:
            return "prefix_not_allowed"
        case _:
            return "consumer_not_allowed"


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.fsync_seconds = Histogram(
            "fabric_broker_fsync_seconds",
            "Time the broker waited for one group commit's fdatasync",
            buckets=FSYNC_BUCKETS, registry=self.registry,
        )
        self.group_commit_records = Histogram(
            "fabric_broker_group_commit_records",
            "Records made durable by one fdatasync (a group commit)",
            buckets=GROUP_BUCKETS, registry=self.registry,
        )
        self.records_stored = Counter(
            "fabric_broker_records_stored", "Published records stored (duplicates not counted)",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "fabric_broker_duplicates",
            "Published records answered with an earlier seq (the same event id within the dedup window)",
            registry=self.registry,
        )
        self.refusals = Counter(
            "fabric_broker_refused_requests",
            "Requests refused by the per-identity rights, by CURVE identity, request kind and reason",
            ["identity", "request", "reason"], registry=self.registry,
        )
        self.compactions = Counter(
            "fabric_broker_compaction_runs", "Compaction rounds committed, by what started them",
            ["reason"], registry=self.registry,
        )
        self.compaction_seconds = Histogram(
            "fabric_broker_compaction_seconds", "Duration of a committed compaction round",
            buckets=COMPACTION_BUCKETS, registry=self.registry,
        )
        self._state: Callable[[], BrokerState] | None = None
        self.registry.register(_StateCollector(self._snapshot))

    def watch(self, state: Callable[[], BrokerState]) -> None:
        """Where scrapes read the broker's current state from (the actor, once started)."""
        self._state = state

    def synced(self, records: int, seconds: float) -> None:
        self.fsync_seconds.observe(seconds)
        self.group_commit_records.observe(records)

    def published(self, receipts: Iterable[tuple[int, bool]]) -> None:
        stored = duplicates = 0
        for _seq, duplicate in receipts:
            if duplicate:
                duplicates += 1
            else:
                stored += 1
        if stored:
            self.records_stored.inc(stored)
        if duplicates:
            self.duplicates.inc(duplicates)

    def refused(self, identity: str, kind: str, reason: str) -> None:
        self.refusals.labels(identity, kind, reason).inc()

    def compacted(self, reason: str, seconds: float) -> None:
        self.compactions.labels(reason).inc()
        self.compaction_seconds.observe(seconds)

    def _snapshot(self) -> BrokerState | None:
        return self._state() if self._state is not None else None


class _StateCollector(Collector):
    def __init__(self, state: Callable[[], BrokerState | None]) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        return _families(None)

    def collect(self) -> Iterable[Metric]:
        return _families(self._state())


def _families(state: BrokerState | None) -> list[Metric]:
    """Every state gauge; without samples until the broker is watched (describe, early scrapes)."""
    scalars = {
        "fabric_broker_head_seq": "The durable head: the newest stored seq",
        "fabric_broker_live_keys": "Keys in the compacted log's index (tombstones included)",
        "fabric_broker_tombstones": "Tombstones still retained",
        "fabric_broker_log_bytes": (
            "Bytes of the records in the log segment files (the active file is preallocated "
            "past them)"
        ),
        "fabric_broker_segments": "Log segment files",
        "fabric_broker_consumers_online": "Registered consumers seen within the consumer timeout",
    }
    families = {name: GaugeMetricFamily(name, doc) for name, doc in scalars.items()}
    lag = GaugeMetricFamily(
        "fabric_broker_consumer_lag", "Records a consumer has not acked yet (head - acked seq)",
        labels=["consumer"],
    )
    acked = GaugeMetricFamily(
        "fabric_broker_consumer_acked_seq", "A consumer's acked position", labels=["consumer"]
    )
    online = GaugeMetricFamily(
        "fabric_broker_consumer_online", "1 while a consumer is seen within the consumer timeout",
        labels=["consumer"],
    )
    if state is not None:
        values = {
            "fabric_broker_head_seq": state.head,
            "fabric_broker_live_keys": state.live_keys,
            "fabric_broker_tombstones": state.tombstones,
            "fabric_broker_log_bytes": state.log_bytes,
            "fabric_broker_segments": state.segments,
            "fabric_broker_consumers_online": sum(1 for c in state.consumers if c.online),
        }
        for name, value in values.items():
            families[name].add_metric([], value)
        for c in state.consumers:
            lag.add_metric([c.name], c.lag)
            acked.add_metric([c.name], c.acked_seq)
            online.add_metric([c.name], 1 if c.online else 0)
    return [*families.values(), lag, acked, online]
