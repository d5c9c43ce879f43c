"""An account's tenancy in a cluster, as plain data: who it is, the cluster's policy, the port.

Pure functions and data only. An account's `Tenant` names its plan
(`core.plans`, re-exported here: `Plan`, `PLANS`, `DEFAULT_PLAN`) and whether
it is suspended. A `TenancyPolicy` holds every setting of the desired objects
in one place (labels, Pod Security level, the cluster's quota and limit-range
overrides laid over the plan, the tenant's role); `parse_overrides` reads a
cluster's `key = value` overrides of it; `core.desired` builds the objects
from both. `ClusterApi` is the port the daemon reaches its cluster through,
with a small error set every edge translates into: `AlreadyExists` (409
AlreadyExists, not being deleted), `TemporaryKubeError` (retry later;
`NamespaceTerminating` when the namespace is being deleted) and
`PermanentKubeError` (final; report the reason).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.plans import DEFAULT_PLAN as DEFAULT_PLAN
from core.plans import PLANS as PLANS
from core.plans import SUSPENDED_QUOTA
from core.plans import Plan as Plan
from core.rules import RuleViolation, check_namespace

KubeObject = dict[str, Any]

_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")
_POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
_SUBJECT_KINDS = ("User", "Group", "ServiceAccount")

# A cluster's limit-range override -> where it goes in the plan's `limits`.
_LIMIT_OVERRIDES = {
    "default_cpu": ("default", "cpu"),
    "default_memory": ("default", "memory"),
    "default_request_cpu": ("defaultRequest", "cpu"),
    "default_request_memory": ("defaultRequest", "memory"),
}


@dataclass(frozen=True, slots=True)
class TenancyPolicy:
    """Every setting of the objects a daemon creates per account; overridable per cluster.

    `quota` and the `default_*` settings are the cluster's overrides laid over the
    account's plan (empty / None: the plan's value)."""

    managed_by_label: str = "app.kubernetes.io/managed-by"
    managed_by_value: str = "fabric"
    account_label: str = "fabric.dev/account-id"
    pod_security_level: str = "restricted"
    quota_name: str = "tenant-quota"
    quota: Mapping[str, str] = field(default_factory=dict)
    limit_range_name: str = "tenant-defaults"
    default_cpu: str | None = None
    default_memory: str | None = None
    default_request_cpu: str | None = None
    default_request_memory: str | None = None
    role_binding_name: str = "tenant-admin"
    cluster_role: str = "admin"
    subject_kind: str = "Group"
    subject_prefix: str = "fabric:account:"

    @property
    def selector(self) -> str:
        """The label selector matching every namespace this policy manages."""
        return f"{self.managed_by_label}={self.managed_by_value}"

    def account_selector(self, account_id: str) -> str:
        """The label selector matching the namespaces this policy manages for one account."""
        return f"{self.selector},{self.account_label}={account_id}"

    def quota_for(self, plan: Plan, *, suspended: bool) -> dict[str, str]:
        """The ResourceQuota's `spec.hard`: the plan, this cluster's overrides, the suspension."""
        return {**plan.quota, **self.quota, **(SUSPENDED_QUOTA if suspended else {})}

    def limits_for(self, plan: Plan) -> dict[str, dict[str, str]]:
        """The LimitRange's container item (without `type`): the plan, then this cluster's."""
        limits = {key: dict(values) for key, values in plan.limits.items()}
        for setting, (key, resource) in _LIMIT_OVERRIDES.items():
            value = getattr(self, setting)
            if value is not None:
                limits.setdefault(key, {})[resource] = value
        return limits


class InvalidOverride(ValueError):
    """A tenancy override line is malformed or names an unknown setting."""


def parse_overrides(lines: Iterable[str], base: TenancyPolicy | None = None) -> TenancyPolicy:
    """Apply `key = value` lines (`#` comments, blank lines ok; `quota.<resource> = N`)."""
    policy = base or TenancyPolicy()
    plain = {f.name for f in dataclasses.fields(TenancyPolicy)} - {"quota"}
    changes: dict[str, str] = {}
    quota = dict(policy.quota)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InvalidOverride(f"line {number}: expected 'key = value', got {line!r}")
        if key.startswith("quota."):
            resource = key.removeprefix("quota.")
            if not _QUANTITY.fullmatch(value):
                raise InvalidOverride(f"line {number}: {key} must be a quantity, got {value!r}")
            quota[resource] = value
        elif key in plain:
            changes[key] = value
        else:
            raise InvalidOverride(f"line {number}: unknown setting {key!r}")
    result = dataclasses.replace(policy, quota=quota, **changes)
    problem = check_policy(result)
    if problem is not None:
        raise InvalidOverride(problem)
    return result


def check_policy(policy: TenancyPolicy) -> str | None:
    if policy.pod_security_level not in _POD_SECURITY_LEVELS:
        return f"pod_security_level must be one of {', '.join(_POD_SECURITY_LEVELS)}"
    if policy.subject_kind not in _SUBJECT_KINDS:
        return f"subject_kind must be one of {', '.join(_SUBJECT_KINDS)}"
    if not is_label_value(policy.managed_by_value) or not policy.managed_by_value:
        return "managed_by_value must be a non-empty label value"
    for name in _LIMIT_OVERRIDES:
        value = getattr(policy, name)
        if value is not None and not _QUANTITY.fullmatch(value):
            return f"{name} must be a quantity"
    return None


def is_label_value(value: str) -> bool:
    return value.isascii() and len(value) <= 63 and _LABEL_VALUE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Tenant:
    """One account as a daemon needs it, at the desired `generation`."""

    account_id: str
    slug: str
    namespace: str
    name: str
    generation: int = 0
    plan: str = DEFAULT_PLAN
    suspended: bool = False


def check_tenant(tenant: Tenant) -> RuleViolation | None:
    """Defence in depth: what the API validated, validated again before touching a cluster."""
    bad = check_namespace(tenant.namespace)
    if bad is not None:
        return bad
    if tenant.namespace != f"acc-{tenant.slug}":
        return RuleViolation("namespace", "must be acc-<slug>")
    if not tenant.account_id or not is_label_value(tenant.account_id):
        return RuleViolation("account_id", "must be a valid label value")
    if tenant.plan not in PLANS:
        return RuleViolation("plan", f"must be one of {', '.join(PLANS)}")
    return None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str | None = None


def ref_of(obj: KubeObject) -> ObjectRef:
    meta = obj["metadata"]
    return ObjectRef(obj["kind"], meta["name"], meta.get("namespace"))


class KubeError(Exception):
    """A Kubernetes call failed; `reason` is what goes into a Failed event or a log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AlreadyExists(KubeError):
    """409 AlreadyExists of an object that is not being deleted."""


class TemporaryKubeError(KubeError):
    """5xx, 429, timeouts, refused connections, conflicts, terminating namespaces: retry later."""


class NamespaceTerminating(TemporaryKubeError):
    """The namespace is being deleted (finalizers running): wait for it to go; not a failure."""


class PermanentKubeError(KubeError):
    """4xx other than 409: retrying will not help."""


class ClusterApi(Protocol):
    """The daemon's view of one cluster; objects are plain JSON dicts."""

    async def create(self, obj: KubeObject) -> KubeObject: ...

    async def read(self, ref: ObjectRef) -> KubeObject | None: ...

    async def patch(self, obj: KubeObject) -> KubeObject: ...

    async def delete(self, ref: ObjectRef) -> None:
        """Request deletion; an object already gone is not an error."""

    async def list_objects(self, kind: str, label_selector: str) -> list[KubeObject]:
        """Every object of `kind` matching the selector, across all namespaces."""


def is_terminating(obj: KubeObject) -> bool:
    meta = obj.get("metadata", {})
    status = obj.get("status") or {}
    return bool(meta.get("deletionTimestamp")) or status.get("phase") == "Terminating"
