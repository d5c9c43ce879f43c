"""One cluster's daemon (`bin/daemon`): keeps each account's namespace as the log says it should be.

A Kubernetes-style controller over the bus:

    bus `cluster:NAME` (key prefix account:) --consumer loop--> dispatcher.ClusterDaemon
        records the batch in state.DesiredStore (fsync), the loop acks at once
        -> queue.WorkQueue (keyed by account, deduplicated, rate-limited)
        -> workers: work.AccountWork reads the account's CURRENT desired state
           -> reconcile.Reconciler (ensure / remove by label) over core.tenancy.ClusterApi
              (kube.KubeCluster) -> outcome event with observed_generation
        resync every --resync seconds: drift repair and garbage collection by label,
        through the same queue, only once the store has caught up with the log.

Modules: `settings` (flags and FABRIC_* variables, tenancy overrides; see
`tenancy.example`), `main` (process entry), `dispatcher` (the actor), `state`
(the desired-state store), `queue` (the work queue), `work` (one reconcile of
one account), `reconcile` (idempotent ensure/remove with the ownership check),
`resync` (drift and garbage found in a listing), `kube` (the only
kubernetes_asyncio importer). What is desired per account is
pure data in `core.tenancy`.
"""
