"""The Account view and its status, derived purely from cached state.

The cache keeps the newest state it knows of each account (`AccountRecord`,
at a `generation`, with its `plan` and whether it is `suspended`) and of each
cluster's report on it (`ClusterReport`, with the `observed_generation` the
cluster applied); what a caller sees (`AccountView`) is computed here from
those and the clusters the bus says are online now (and when it last saw the
others):

- per cluster, while the account lives: no report -> `pending`; otherwise
  the report (`created`, `failed`, `deleted`) with the generation it observed.
  `online` says whether its daemon is connected; an offline cluster also
  shows `last_seen` when known, so "offline" is never mistaken for "failed".
- per cluster, once the account is deleted: `deleted` when it reported so;
  `deleting` when it reported `created` (it has the namespace), when its
  report on the deletion itself is a failure (the namespace is still there;
  the error is shown), or when it is online (its daemon is processing the
  deletion and will report); an offline cluster that never had the namespace
  shows `deleted` (it removes nothing; it catches up when back).
- a deleted account is `deleting` while any cluster shows `deleting`, then
  `deleted`; so `account.delete` answers `deleting` whenever a cluster is online.
- otherwise `degraded` if an online cluster reports `failed` at the current
  generation (a failure at an older one is being retried on the new one);
  `ready` (`suspended` for a suspended account) if at least one cluster is
  online and every online cluster reports `created` at the current
  generation; else `provisioning` (generation 1) or `updating` (a later
  generation not yet observed everywhere).

`has_converged` is what `account.wait` waits for. `status_hint` is what a store may
filter a page by before the status is derived here (a list by status).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

ReportState = Literal["created", "failed", "deleted"]
ClusterState = Literal["pending", "created", "failed", "deleting", "deleted"]
Status = Literal[
    "provisioning", "ready", "updating", "suspended", "deleting", "deleted", "degraded"
]
STATUSES: tuple[Status, ...] = get_args(Status)
CLUSTER_STATES: tuple[ClusterState, ...] = get_args(ClusterState)


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
    plan: str = "standard"
    suspended: bool = False


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
    last_seen: str | None = None  # shown for an offline cluster: when the bus last saw it

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
        if not self.online and self.last_seen is not None:
            out["last_seen"] = self.last_seen
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
            "plan": r.plan,
            "namespace": r.namespace,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "generation": r.generation,
            "status": self.status,
            "clusters": {name: view.to_json() for name, view in sorted(self.clusters.items())},
        }


def cluster_view(
    record: AccountRecord, report: ClusterReport | None, online: bool, last_seen: str | None = None
) -> ClusterView:
    seen = None if online else last_seen
    observed = 0 if report is None else report.observed_generation
    if record.deleted_at is None:
        if report is None:
            return ClusterView("pending", 0, online, None, last_seen=seen)
        return ClusterView(
            report.state, observed, online, report.updated_at, report.error, report.attempts, seen
        )
    if report is not None and report.state == "deleted":
        return ClusterView("deleted", observed, online, report.updated_at, last_seen=seen)
    if report is not None and report.state == "failed" and observed >= record.generation:
        # The deletion itself was refused: the namespace is still there, the daemon retries.
        return ClusterView(
            "deleting", observed, online, report.updated_at, report.error, report.attempts, seen
        )
    if (report is not None and report.state == "created") or online:
        return ClusterView("deleting", observed, online, record.deleted_at, last_seen=seen)
    return ClusterView("deleted", observed, online, record.deleted_at, last_seen=seen)


def derive_status(record: AccountRecord, views: Mapping[str, ClusterView]) -> Status:
    if record.deleted_at is not None:
        return "deleting" if any(v.state == "deleting" for v in views.values()) else "deleted"
    current = record.generation
    online = [v for v in views.values() if v.online]
    if any(v.state == "failed" and v.observed_generation >= current for v in online):
        return "degraded"
    if online and all(v.state == "created" and v.observed_generation >= current for v in online):
        return "suspended" if record.suspended else "ready"
    return "provisioning" if current <= 1 else "updating"


def account_view(
    record: AccountRecord,
    reports: Iterable[ClusterReport],
    known_clusters: Iterable[str],
    online: Iterable[str],
    last_seen: Mapping[str, str | None] | None = None,
) -> AccountView:
    """Combine an account's state with every cluster we know of and those online now."""
    by_cluster = {r.cluster: r for r in reports}
    names = set(known_clusters) | set(by_cluster)
    online_set = set(online)
    seen = last_seen or {}
    views = {
        name: cluster_view(record, by_cluster.get(name), name in online_set, seen.get(name))
        for name in names
    }
    return AccountView(record, derive_status(record, views), views)


def has_converged(view: AccountView, generation: int) -> bool:
    """Whether every online cluster has observed `generation` (and at least one is online).

    A deleted account has converged once every cluster shows `deleted`: nothing later can
    happen to it. A cluster that observed the generation and failed has observed it too
    (the status says `degraded`); one that is offline does not hold the wait up.
    """
    if view.record.deleted_at is not None:
        return view.status == "deleted"
    online = [v for v in view.clusters.values() if v.online]
    return bool(online) and all(
        v.state != "pending" and v.observed_generation >= generation for v in online
    )


@dataclass(frozen=True, slots=True)
class StatusHint:
    """What a store may select accounts by so that a list by status does not derive the
    status of every account: a superset of those with the status, never fewer.
    `derive_status` stays the judge of each one the store returns.

    `deleted`: whether the account is deleted. `settled`: True keeps the accounts that every
    cluster of `online` reports `created` at their current generation, False those that
    some does not, None either.
    """

    deleted: bool
    online: tuple[str, ...] = ()
    settled: bool | None = None


def status_hint(status: Status, online: Iterable[str]) -> StatusHint:
    """The hint for `status` with these clusters online (see `derive_status`)."""
    if status in ("deleting", "deleted"):
        return StatusHint(deleted=True)
    clusters = tuple(sorted(set(online)))
    if status in ("ready", "suspended"):
        return StatusHint(deleted=False, online=clusters, settled=True)
    # provisioning, updating, degraded: some online cluster has not created the generation,
    # or none is online (then every live account is provisioning or updating).
    return StatusHint(deleted=False, online=clusters, settled=False if clusters else None)
