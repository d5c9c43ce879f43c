"""The daemon's Prometheus metrics: one registry per process, every series labelled `cluster`.

The hooks are small calls at one place each, so a restructured caller keeps
them easily: `kube_request` where every Kubernetes request passes
(`kube.KubeCluster._call`), `reconciled` and `reconcile_took` in
`work.AccountWork`, `started` and `caught_up` in the daemon actor. State
gauges (queue depth, failed accounts) read their source at scrape time
(`Gauge.set_function`); scrapes run on the daemon's event loop
(`actors.runtime.metrics_server`), so they read it without locks.

The registry is module-level, as prometheus_client's own default is, because
the hooks sit in modules that know only their cluster's name; the `cluster`
label keeps several daemons embedded in one test process apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KUBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# What a reconcile pass ended in (`reconcile.describe` names -> outcome label).
OUTCOMES = {
    "namespace_created": "created",
    "namespace_updated": "updated",
    "namespace_refused": "failed",
    "namespace_terminating": "waiting",
    "namespace_removing": "waiting",
    "namespace_removed": "deleted",
}
RETRY = "retry"  # a temporary failure: backed off and tried again

RECONCILE_SECONDS = Histogram(
    "fabric_daemon_reconcile_seconds", "Duration of one reconcile pass of one account",
    ["cluster"], buckets=RECONCILE_BUCKETS, registry=REGISTRY,
)
RECONCILES = Counter(
    "fabric_daemon_reconciles",
    "Reconcile passes by outcome (created, updated, deleted, failed, waiting, retry)",
    ["cluster", "outcome"], registry=REGISTRY,
)
RETRIES = Counter(
    "fabric_daemon_retries", "Reconcile passes that retried an account after a failed pass",
    ["cluster"], registry=REGISTRY,
)
KUBE_SECONDS = Histogram(
    "fabric_daemon_kube_request_seconds", "Kubernetes API request latency by verb and resource",
    ["cluster", "verb", "resource"], buckets=KUBE_BUCKETS, registry=REGISTRY,
)
KUBE_ERRORS = Counter(
    "fabric_daemon_kube_errors",
    "Kubernetes API requests that did not succeed, by verb, resource and HTTP status "
    "(or timeout, connection); a 404 on a read and a 409 AlreadyExists are part of the normal flow",
    ["cluster", "verb", "resource", "code"], registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "fabric_daemon_queue_depth", "Accounts queued for a reconcile (not counting those in progress)",
    ["cluster"], registry=REGISTRY,
)
FAILED_ACCOUNTS = Gauge(
    "fabric_daemon_failed_accounts", "Accounts whose last report from this daemon is a failure",
    ["cluster"], registry=REGISTRY,
)
CAUGHT_UP = Gauge(
    "fabric_daemon_caught_up",
    "1 once the daemon's desired-state store has caught up with the bus since it started",
    ["cluster"], registry=REGISTRY,
)


class ClusterMetrics:
    """The hooks of one cluster's daemon (get it with `for_cluster`)."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        # `labels()` locks and builds its key per call: the per-request and per-pass hooks
        # keep the children they use.
        self._timers: dict[tuple[str, str], Histogram] = {}
        self._outcomes: dict[str, Counter] = {}
        self._reconcile_seconds = RECONCILE_SECONDS.labels(cluster)
        self._retries = RETRIES.labels(cluster)
        # Present from the start, so a dashboard shows 0 rather than no data.
        CAUGHT_UP.labels(cluster).set(0)
        QUEUE_DEPTH.labels(cluster).set(0)
        FAILED_ACCOUNTS.labels(cluster).set(0)

    def kube_request(self, verb: str, resource: str, code: str | None, seconds: float) -> None:
        """One Kubernetes request; `code` None when it succeeded, else its status or failure."""
        timer = self._timers.get((verb, resource))
        if timer is None:
            timer = self._timers[(verb, resource)] = KUBE_SECONDS.labels(self.cluster, verb, resource)
        timer.observe(seconds)
        if code is not None:
            KUBE_ERRORS.labels(self.cluster, verb, resource, code).inc()

    def reconciled(self, outcome: str) -> None:
        """A pass's outcome: a `reconcile.describe` name or `RETRY`."""
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = RECONCILES.labels(
                self.cluster, OUTCOMES.get(outcome, outcome)
            )
        counter.inc()

    def reconcile_took(self, seconds: float, attempt: int) -> None:
        self._reconcile_seconds.observe(seconds)
        if attempt > 1:
            self._retries.inc()

    def started(self, queue_depth: Callable[[], int]) -> None:
        """A daemon incarnation starts: not caught up yet; its queue is this one."""
        CAUGHT_UP.labels(self.cluster).set(0)
        QUEUE_DEPTH.labels(self.cluster).set_function(queue_depth)

    def watch_failed(self, failed: Callable[[], int]) -> None:
        FAILED_ACCOUNTS.labels(self.cluster).set_function(failed)

    def caught_up(self, value: bool = True) -> None:
        CAUGHT_UP.labels(self.cluster).set(1 if value else 0)


@functools.cache
def for_cluster(cluster: str) -> ClusterMetrics:
    return ClusterMetrics(cluster)
