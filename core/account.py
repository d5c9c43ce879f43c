"""The Account view and its status, derived purely from cached facts.

The cache stores what happened (`AccountRecord`, one `ClusterReport` per
cluster that reported); what a caller sees (`AccountView`) is computed here
from those facts and the set of clusters the bus says are online:

- per cluster, while the account lives: no report -> `pending`; otherwise
  the report (`created`, `failed`, `deleted`).
- per cluster, once the account is deleted: `deleted` when it reported so;
  `deleting` when it reported `created` (it has the namespace) or when it is
  online and has not reported `deleted` yet (its daemon is processing the
  deletion and will report); an offline cluster that never had the namespace
  shows `deleted` (it removes nothing; it catches up when back).
- a deleted account is `deleting` while any cluster shows `deleting`, then
  `deleted`; so `account.delete` answers `deleting` whenever a cluster is online.
- otherwise `degraded` if an online cluster reports `failed`; `ready` if at
  least one cluster is online and every online cluster reports `created`;
  else `provisioning`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ReportState = Literal["created", "failed", "deleted"]
ClusterState = Literal["pending", "created", "failed", "deleting", "deleted"]
Status = Literal["provisioning", "ready", "deleting", "deleted", "degraded"]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    slug: str
    name: str
    owner_email: str
    namespace: str
    created_at: str
    deleted_at: str | None
    position: int  # creation order in the cache; what list cursors point at


@dataclass(frozen=True, slots=True)
class ClusterReport:
    cluster: str
    state: ReportState
    updated_at: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterView:
    state: ClusterState
    updated_at: str | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "updated_at": self.updated_at}
        if self.error is not None:
            out["error"] = self.error
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
            "status": self.status,
            "clusters": {name: view.to_json() for name, view in sorted(self.clusters.items())},
        }


def cluster_view(report: ClusterReport | None, deleted_at: str | None, online: bool) -> ClusterView:
    if deleted_at is None:
        if report is None:
            return ClusterView("pending", None)
        return ClusterView(report.state, report.updated_at, report.error)
    if report is not None and report.state == "deleted":
        return ClusterView("deleted", report.updated_at)
    if (report is not None and report.state == "created") or online:
        return ClusterView("deleting", deleted_at)
    return ClusterView("deleted", deleted_at)


def derive_status(
    deleted: bool, views: Mapping[str, ClusterView], online: Iterable[str]
) -> Status:
    if deleted:
        return "deleting" if any(v.state == "deleting" for v in views.values()) else "deleted"
    online_states = [views[name].state for name in online if name in views]
    if "failed" in online_states:
        return "degraded"
    if online_states and all(state == "created" for state in online_states):
        return "ready"
    return "provisioning"


def account_view(
    record: AccountRecord,
    reports: Iterable[ClusterReport],
    known_clusters: Iterable[str],
    online: Iterable[str],
) -> AccountView:
    """Combine an account's facts with the clusters we know of and those online now."""
    by_cluster = {r.cluster: r for r in reports}
    names = set(known_clusters) | set(by_cluster)
    online_set = set(online)
    views = {
        name: cluster_view(by_cluster.get(name), record.deleted_at, name in online_set)
        for name in names
    }
    return AccountView(record, derive_status(record.deleted_at is not None, views, online_set), views)
