"""One cluster's daemon (`bin/daemon`): consumes account events, provisions namespaces, reports back.

Flow of one event: the broker delivers it to the durable consumer `cluster:NAME`
-> `dispatcher.ClusterDaemon` records it in the local desired set
(`state.DesiredState`, fsynced) and queues it behind earlier events of the same
account -> `work.Worker` reconciles it (`reconcile.Reconciler` over the
`core.tenancy.ClusterApi` port, implemented by `kube.KubeCluster`), retrying
temporary failures with capped jittered backoff -> publishes the outcome event
(deterministic id, so a redo is deduplicated) and waits for the broker's
confirmation -> acks. A periodic resync compares the desired set with what the
cluster holds and repairs drift through the same per-account queues.

Modules: `settings` (flags and FABRIC_* variables, tenancy overrides; see
`tenancy.example`), `main` (process entry), `dispatcher` (the actor), `work`
(one item end to end), `reconcile` (idempotent ensure/remove with the
ownership check), `kube` (the only kubernetes_asyncio importer), `state` (the
journal), `retry` (backoff). What is desired per account is pure data in
`core.tenancy`.
"""
