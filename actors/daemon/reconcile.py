"""One account's namespace in one cluster, brought to the desired state idempotently.

`Reconciler.ensure` creates the namespace and its policy objects, or, when a
create answers AlreadyExists (an update, a drift repair, our earlier response
lost), checks the namespace is ours and patches it and every child to the
desired state in place: a merge patch, plus the removal of quota entries the
desired state no longer has (a resume drops the suspension's `services`).
Then it deletes the objects the state retires (`core.desired.retired_children`:
the allow policies while suspended, the suspension's deny-all otherwise), and
nothing else. A namespace without our labels or with another account's id is
never adopted: that is `Refused` with a clear reason. A namespace still
terminating (deleted by hand, finalizers running) is `Waiting`: look again
shortly.

`Reconciler.remove` finds the account's namespaces by label (our managed-by
label AND the account label), so it never touches one that is not ours, asks
for their deletion and answers `Removing` while any is still terminating,
`Removed` once none is left.

The objects of one step go out concurrently (after the namespace: the quota,
limits and network policies; then the role binding that lets workloads in;
then the retirements), so a pass costs three round trips, not one per object.

Every call is one pass that never waits for the cluster to settle: the caller
(the work queue) decides when to look again. Temporary failures are raised as
`TemporaryKubeError`; permanent ones come back as `Refused`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import assert_never

from core.desired import desired_children, desired_namespace, not_ours, retired_children
from core.tenancy import (
    AlreadyExists,
    ClusterApi,
    KubeObject,
    NamespaceTerminating,
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
    TenancyPolicy,
    Tenant,
    check_tenant,
    is_label_value,
    is_terminating,
)


@dataclass(frozen=True, slots=True)
class Provisioned:
    uid: str
    resource_version: str
    created: bool  # False when the namespace already existed (redo, drift fix)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str


@dataclass(frozen=True, slots=True)
class Removing:
    namespaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    namespaces: tuple[str, ...]  # ours that were there at the start of this pass (may be none)


EnsureOutcome = Provisioned | Refused | Waiting
RemoveOutcome = Removed | Removing | Refused


class Reconciler:
    def __init__(self, api: ClusterApi, policy: TenancyPolicy) -> None:
        self._api = api
        self._policy = policy

    async def ensure(self, tenant: Tenant) -> EnsureOutcome:
        bad = check_tenant(tenant)
        if bad is not None:
            value = {"plan": tenant.plan, "account_id": tenant.account_id}.get(
                bad.field, tenant.namespace
            )
            return Refused(f"{bad.field} {value!r} rejected: {bad.reason}")
        try:
            return await self._ensure(tenant)
        except NamespaceTerminating as exc:
            return Waiting(exc.reason)
        except PermanentKubeError as exc:
            return Refused(exc.reason)

    async def remove(self, account_id: str) -> RemoveOutcome:
        if not account_id or not is_label_value(account_id):
            return Refused(f"account id {account_id!r} is not a label value; nothing can be ours")
        try:
            return await self._remove(account_id)
        except PermanentKubeError as exc:
            return Refused(exc.reason)

    async def _ensure(self, tenant: Tenant) -> EnsureOutcome:
        desired = desired_namespace(tenant, self._policy)
        created = True
        try:
            current = await self._api.create(desired)
        except AlreadyExists:
            created = False
            existing = await self._api.read(ObjectRef("Namespace", tenant.namespace))
            if existing is None:
                raise TemporaryKubeError(f"namespace {tenant.namespace} vanished after a 409")
            if is_terminating(existing):
                return Waiting(f"namespace {tenant.namespace} is being deleted")
            reason = not_ours(existing, tenant, self._policy)
            if reason is not None:
                return Refused(reason)
            current = await self._api.patch(desired)
        # Each step's objects are independent, so they go out together: a pass costs three
        # round trips after the namespace instead of one per object. The order the
        # children's contract asks for is kept between steps: quota, limits and network
        # policies before the binding that lets workloads in, and retirements last.
        children = desired_children(tenant, self._policy)
        await _together(self._apply(c) for c in children if c["kind"] not in _ADMITTING)
        await _together(self._apply(c) for c in children if c["kind"] in _ADMITTING)
        if not created:  # a namespace made in this pass holds nothing to retire
            await _together(self._api.delete(ref) for ref in retired_children(tenant))
        meta = current.get("metadata") or {}
        uid, rv = meta.get("uid"), meta.get("resourceVersion")
        if not isinstance(uid, str) or not isinstance(rv, str):
            raise TemporaryKubeError(f"namespace {tenant.namespace} answer lacks uid/resourceVersion")
        return Provisioned(uid=uid, resource_version=rv, created=created)

    async def _apply(self, child: KubeObject) -> None:
        try:
            await self._api.create(child)
            return
        except AlreadyExists:
            pass
        answer = await self._api.patch(child)
        if child["kind"] == "ResourceQuota":
            # A merge patch merges maps: a key the desired quota lost must be nulled.
            hard = (answer.get("spec") or {}).get("hard") or {}
            stale = {key: None for key in hard if key not in child["spec"]["hard"]}
            if stale:
                await self._api.patch({**child, "spec": {"hard": stale}})

    async def _remove(self, account_id: str) -> RemoveOutcome:
        found = await self._api.list_objects(
            "Namespace", self._policy.account_selector(account_id)
        )
        names: list[str] = []
        terminating = False
        for ns in found:
            meta = ns.get("metadata") or {}
            labels = meta.get("labels") or {}
            name = meta.get("name")
            # The selector already says so; checked again because deleting is not undoable.
            if (
                not isinstance(name, str)
                or labels.get(self._policy.managed_by_label) != self._policy.managed_by_value
                or labels.get(self._policy.account_label) != account_id
            ):
                continue
            names.append(name)
            if not is_terminating(ns):
                await self._api.delete(ObjectRef("Namespace", name))
            terminating = True
        if terminating:
            return Removing(tuple(names))
        return Removed(tuple(names))


_ADMITTING = frozenset({"RoleBinding"})  # kinds that let the tenant's workloads in


async def _together(calls: Iterable[Awaitable[object]]) -> None:
    """Await every call concurrently; then raise the first failure in the calls' order, so
    what a pass raises does not depend on which answer came first. A lone call is awaited
    as it is: a task for it would only cost one."""
    pending = list(calls)
    if len(pending) == 1:
        await pending[0]
        return
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def describe(outcome: EnsureOutcome | RemoveOutcome) -> str:
    """The log event of an outcome."""
    match outcome:
        case Provisioned(created=True):
            return "namespace_created"
        case Provisioned():
            return "namespace_updated"
        case Refused():
            return "namespace_refused"
        case Waiting():
            return "namespace_terminating"
        case Removing():
            return "namespace_removing"
        case Removed():
            return "namespace_removed"
        case _:
            assert_never(outcome)
