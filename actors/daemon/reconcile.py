"""One account's namespace in one cluster, brought to the desired state idempotently.

`Reconciler.ensure` creates the namespace and its policy objects, or, when a
create answers AlreadyExists (e.g. our earlier response was lost), checks the
namespace is ours and patches it and every child to the desired state. A
namespace without our labels or with another account's id is never adopted:
that is `Refused` with a clear reason. `Reconciler.remove` deletes only our
namespace for that account and waits until it is gone. Temporary failures are
raised as `TemporaryKubeError` for the caller to retry with backoff; permanent
ones come back as `Refused`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

import structlog

from core.tenancy import (
    AlreadyExists,
    ClusterApi,
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
    TenancyPolicy,
    Tenant,
    check_tenant,
    desired_children,
    desired_namespace,
    is_terminating,
    not_ours,
)

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Provisioned:
    uid: str
    resource_version: str
    created: bool  # False when the namespace already existed (redo, drift fix)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Removed:
    existed: bool


EnsureOutcome = Provisioned | Refused
RemoveOutcome = Removed | Refused


@dataclass(frozen=True, slots=True)
class DeleteWait:
    """How long `remove` polls for the namespace to disappear before calling it temporary."""

    initial: float = 0.05
    cap: float = 1.0
    timeout: float = 30.0


class Reconciler:
    def __init__(
        self,
        api: ClusterApi,
        policy: TenancyPolicy,
        *,
        delete_wait: DeleteWait | None = None,
        max_parallel: int = 8,
    ) -> None:
        self._api = api
        self._policy = policy
        self._wait = delete_wait or DeleteWait()
        # Bounds concurrent requests to the API server across all accounts.
        self._gate = asyncio.Semaphore(max_parallel)

    async def ensure(self, tenant: Tenant) -> EnsureOutcome:
        bad = check_tenant(tenant)
        if bad is not None:
            return Refused(f"{bad.field} {tenant.namespace!r} rejected: {bad.reason}")
        async with self._gate:
            try:
                return await self._ensure(tenant)
            except PermanentKubeError as exc:
                return Refused(exc.reason)

    async def remove(self, tenant: Tenant) -> RemoveOutcome:
        bad = check_tenant(tenant)
        if bad is not None:
            return Refused(f"{bad.field} {tenant.namespace!r} rejected: {bad.reason}")
        try:
            return await self._remove(tenant)
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
                raise TemporaryKubeError(f"namespace {tenant.namespace} is being deleted")
            reason = not_ours(existing, tenant, self._policy)
            if reason is not None:
                return Refused(reason)
            current = await self._api.patch(desired)
        for child in desired_children(tenant, self._policy):
            try:
                await self._api.create(child)
            except AlreadyExists:
                await self._api.patch(child)
        meta = current.get("metadata") or {}
        uid, rv = meta.get("uid"), meta.get("resourceVersion")
        if not isinstance(uid, str) or not isinstance(rv, str):
            raise TemporaryKubeError(f"namespace {tenant.namespace} answer lacks uid/resourceVersion")
        return Provisioned(uid=uid, resource_version=rv, created=created)

    async def _remove(self, tenant: Tenant) -> RemoveOutcome:
        ref = ObjectRef("Namespace", tenant.namespace)
        async with self._gate:
            existing = await self._api.read(ref)
            if existing is None:
                return Removed(existed=False)
            reason = not_ours(existing, tenant, self._policy)
            if reason is not None:
                # Not ours to delete: from this account's point of view its namespace is gone.
                log.warning("namespace_left_alone", namespace=tenant.namespace, reason=reason)
                return Removed(existed=False)
            if not is_terminating(existing):
                await self._api.delete(ref)
        await self._wait_gone(ref)
        return Removed(existed=True)

    async def _wait_gone(self, ref: ObjectRef) -> None:
        """Poll until the namespace is gone, holding the request gate only per poll, so slow
        finalizers never starve other accounts' work."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait.timeout
        delay = self._wait.initial
        while True:
            async with self._gate:
                if await self._api.read(ref) is None:
                    return
            if loop.time() >= deadline:
                raise TemporaryKubeError(f"namespace {ref.name} is still terminating")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._wait.cap)


def describe(outcome: EnsureOutcome | RemoveOutcome) -> str:
    match outcome:
        case Provisioned(created=True):
            return "created"
        case Provisioned():
            return "updated"
        case Refused():
            return "refused"
        case Removed():
            return "removed"
        case _:
            assert_never(outcome)
