"""The Account view and its status, derived purely from cached state.

The cache keeps the newest state it knows of each account (`AccountRecord`,
at a `generation`) and of each cluster's report on it (`ClusterReport`, with
the `observed_generation` the cluster applied); what a caller sees
(`AccountView`) is computed here from those and the clusters the bus says
are online now:

- per cluster, while the account lives: no report -> `pending`; otherwise
  the report (`created`, `failed`, `deleted`) with the generation it observed.
- per cluster, once the account is deleted: `deleted` when it reported so;
  `deleting` when it reported `created` (it has the namespace), when its
  report on the deletion itself is a failure (the namespace is still there;
  the error is shown), or when it is online (its daemon is processing the
  deletion and will report); an offline cluster that never had the namespace
  shows `deleted` (it removes nothing; it catches up when back).
- a deleted account is `deleting` while any cluster shows `deleting`, then
  `deleted`; so `account.delete` answers `deleting` whenever a cluster is online.
- otherwise `degraded` if an online cluster reports `failed`; `ready` if at
  least one cluster is online and every online cluster reports `created` at
  the account's current generation; else `provisioning` (generation 1) or
  `updating` (a later generation not yet observed everywhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ReportState = Literal["created", "failed", "deleted"]
ClusterState = Literal["pending", "created", "failed", "deleting", "deleted"]
Status = Literal["provisioning", "ready", "updating", "deleting", "deleted", "degraded"]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: str
    deleted_at: str | None
    generation: int
    updated_at: str
    position: int = 0  # creation order in the cache; what list cursors point at


@dataclass(frozen=True, slots=True)
class ClusterReport:
    cluster: str
    state: ReportState
    observed_generation: int
    updated_at: str
    error: str | None = None
    attempts: int | None = None


@dataclass(frozen=True, slots=True)
class ClusterView:
    state: ClusterState
    observed_generation: int  # 0: the cluster has reported nothing on this account
    online: bool
    updated_at: str | None
    error: str | None = None
    attempts: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "observed_generation": self.observed_generation,
            "online": self.online,
            "updated_at": self.updated_at,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.attempts is not None:
            out["attempts"] = self.attempts
        return out


@dataclass(frozen=True, slots=True)
class AccountView:
    record: AccountRecord
    status: Status
    clusters: Mapping[str, ClusterView]

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.id,
            "slug": r.slug,
            "name": r.name,
            "owner_email": r.owner_email,
            "namespace": r.namespace,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "generation": r.generation,
            "status": self.status,
            "clusters": {name: view.to_json() for name, view in sorted(self.clusters.items())},
        }


def cluster_view(record: AccountRecord, report: ClusterReport | None, online: bool) -> ClusterView:
    observed = 0 if report is None else report.observed_generation
    if record.deleted_at is None:
        if report is None:
            return ClusterView("pending", 0, online, None)
        return ClusterView(
            report.state, observed, online, report.updated_at, report.error, report.attempts
        )
    if report is not None and report.state == "deleted":
        return ClusterView("deleted", observed, online, report.updated_at)
    if report is not None and report.state == "failed" and observed >= record.generation:
        # The deletion itself was refused: the namespace is still there, the daemon retries.
        return ClusterView(
            "deleting", observed, online, report.updated_at, report.error, report.attempts
        )
    if (report is not None and report.state == "created") or online:
        return ClusterView("deleting", observed, online, record.deleted_at)
    return ClusterView("deleted", observed, online, record.deleted_at)


def derive_status(record: AccountRecord, views: Mapping[str, ClusterView]) -> Status:
    if record.deleted_at is not None:
        return "deleting" if any(v.state == "deleting" for v in views.values()) else "deleted"
    online = [v for v in views.values() if v.online]
    if any(v.state == "failed" for v in online):
        return "degraded"
    if online and all(
        v.state == "created" and v.observed_generation >= record.generation for v in online
    ):
        return "ready"
    return "provisioning" if record.generation <= 1 else "updating"


def account_view(
    record: AccountRecord,
    reports: Iterable[ClusterReport],
    known_clusters: Iterable[str],
    online: Iterable[str],
) -> AccountView:
    """Combine an account's state with every cluster we know of and those online now."""
    by_cluster = {r.cluster: r for r in reports}
    names = set(known_clusters) | set(by_cluster)
    online_set = set(online)
    views = {
        name: cluster_view(record, by_cluster.get(name), name in online_set) for name in names
    }
    return AccountView(record, derive_status(record, views), views)
