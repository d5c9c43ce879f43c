"""The periodic resync: list what carries our label in the cluster, decide what to queue.

`list_view` reads the namespaces and policy objects carrying our managed-by
label (raising `KubeError` when the cluster cannot answer). `plan` compares
that view with the desired-state store, purely:

- drift repair: a live account whose namespace is missing or terminating,
  whose labels or annotations differ from the desired ones (plan,
  suspension, generation...), whose policy objects are missing, retired
  ones still there, or whose quota or limit range values are not the
  plan's (a hand edit), or that this process has not reported in sync
  (e.g. it was refused), is queued;
- garbage collection: a namespace of ours whose account label names no live
  account, and that is not already terminating, is queued for removal; when
  the store has no tombstone for it, the plan makes one from the namespace
  (its name, slug and applied generation): an orphan;
- pending deletions are queued again.

Accounts with work already on its way are left alone. The caller (the actor)
runs `plan` only once its store has caught up with the log: before that, a
live account not yet read would look like garbage.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from actors.daemon.state import Desired, Tombstone
from core.desired import ANNOTATION_SLUG, CHILD_KINDS, Children, applied_generation, drift
from core.tenancy import ClusterApi, KubeObject, TenancyPolicy, is_terminating

GC_CORRELATION_ID = "gc"


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What a resync saw: our namespaces and, per namespace, our objects by (kind, name)."""

    namespaces: tuple[KubeObject, ...]
    children: Mapping[str, Children]


@dataclass(frozen=True, slots=True)
class Drift:
    account_id: str
    namespace: str
    reason: str


@dataclass(slots=True)
class Plan:
    queue: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    orphans: list[Tombstone] = field(default_factory=list)
    garbage: int = 0


async def list_view(cluster: ClusterApi, policy: TenancyPolicy) -> ClusterView:
    namespaces = await cluster.list_objects("Namespace", policy.selector)
    children: dict[str, dict[tuple[str, str], KubeObject]] = {}
    for kind in CHILD_KINDS:
        for obj in await cluster.list_objects(kind, policy.selector):
            meta = obj.get("metadata") or {}
            ns, name = meta.get("namespace"), meta.get("name")
            if isinstance(ns, str) and isinstance(name, str):
                children.setdefault(ns, {})[(kind, name)] = obj
    return ClusterView(tuple(namespaces), children)


def plan(
    view: ClusterView,
    policy: TenancyPolicy,
    *,
    live: Iterable[Desired],
    deleting: Collection[str],
    pending: Callable[[str], bool],
    in_sync: Callable[[str, int], bool],
) -> Plan:
    result = Plan()
    queued: set[str] = set()
    present: dict[str, KubeObject] = {}
    for ns in view.namespaces:
        name = (ns.get("metadata") or {}).get("name")
        if isinstance(name, str):
            present[name] = ns
    live_ids: set[str] = set()
    for desired in live:
        acc, name = desired.account_id, desired.account.namespace
        live_ids.add(acc)
        if pending(acc):
            continue
        reason = _drift(desired, present.get(name), view, policy, in_sync)
        if reason is not None:
            result.drift.append(Drift(acc, name, reason))
            result.queue.append(acc)
            queued.add(acc)
    for name, ns in present.items():
        meta = ns.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(policy.account_label)
        if not isinstance(owner, str) or not owner or owner in live_ids:
            continue
        if is_terminating(ns) or pending(owner) or owner in queued:
            continue
        if owner not in deleting:
            slug = (meta.get("annotations") or {}).get(ANNOTATION_SLUG)
            result.orphans.append(
                Tombstone(
                    owner, slug if isinstance(slug, str) else "", name, applied_generation(ns),
                    "", GC_CORRELATION_ID,
                )
            )
        result.garbage += 1
        result.queue.append(owner)
        queued.add(owner)
    for acc in deleting:
        if not pending(acc) and acc not in queued:
            result.queue.append(acc)
    return result


def _drift(
    desired: Desired,
    found: KubeObject | None,
    view: ClusterView,
    policy: TenancyPolicy,
    in_sync: Callable[[str, int], bool],
) -> str | None:
    if not in_sync(desired.account_id, desired.generation):
        return "not reported in sync"
    if found is None:
        return "namespace missing"
    if is_terminating(found):
        return "namespace terminating"
    return drift(desired.tenant, policy, found, view.children.get(desired.account.namespace, {}))
