"""What an account owns in a cluster, as plain data: the desired objects and who owns them.

Pure functions and data only. A `TenancyPolicy` holds every setting of the
desired objects in one place (labels, Pod Security level, quota, limit-range
defaults, the tenant's role); `parse_overrides` reads a cluster's `key = value`
overrides of it. `desired_namespace` / `desired_children` build the JSON
bodies a daemon applies for one account; `not_ours` says why an existing
namespace must not be adopted. `ClusterApi` is the port the daemon reaches its
cluster through, with a small error set every edge translates into:
`AlreadyExists` (409 AlreadyExists, not being deleted), `TemporaryKubeError`
(retry later; `NamespaceTerminating` when the namespace is being deleted) and
`PermanentKubeError` (final; report the reason).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.rules import RuleViolation, check_namespace

KubeObject = dict[str, Any]

_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")
_POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
_SUBJECT_KINDS = ("User", "Group", "ServiceAccount")

ANNOTATION_NAME = "fabric.dev/account-name"
ANNOTATION_SLUG = "fabric.dev/slug"
# The account generation last applied to the namespace: drift when stale, and what a daemon
# reports as observed when it removes a namespace whose account it has no record of.
ANNOTATION_GENERATION = "fabric.dev/generation"


def _default_quota() -> dict[str, str]:
    return {
        "pods": "50",
        "requests.cpu": "4",
        "requests.memory": "8Gi",
        "limits.cpu": "8",
        "limits.memory": "16Gi",
        "persistentvolumeclaims": "10",
        "requests.storage": "50Gi",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }


@dataclass(frozen=True, slots=True)
class TenancyPolicy:
    """Every setting of the objects a daemon creates per account; overridable per cluster."""

    managed_by_label: str = "app.kubernetes.io/managed-by"
    managed_by_value: str = "fabric"
    account_label: str = "fabric.dev/account-id"
    pod_security_level: str = "restricted"
    quota_name: str = "tenant-quota"
    quota: Mapping[str, str] = field(default_factory=_default_quota)
    limit_range_name: str = "tenant-defaults"
    default_cpu: str = "500m"
    default_memory: str = "512Mi"
    default_request_cpu: str = "100m"
    default_request_memory: str = "128Mi"
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
    for name in ("default_cpu", "default_memory", "default_request_cpu", "default_request_memory"):
        if not _QUANTITY.fullmatch(getattr(policy, name)):
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


def check_tenant(tenant: Tenant) -> RuleViolation | None:
    """Defence in depth: what the API validated, validated again before touching a cluster."""
    bad = check_namespace(tenant.namespace)
    if bad is not None:
        return bad
    if tenant.namespace != f"acc-{tenant.slug}":
        return RuleViolation("namespace", "must be acc-<slug>")
    if not tenant.account_id or not is_label_value(tenant.account_id):
        return RuleViolation("account_id", "must be a valid label value")
    return None


def ownership_labels(tenant: Tenant, policy: TenancyPolicy) -> dict[str, str]:
    return {policy.managed_by_label: policy.managed_by_value, policy.account_label: tenant.account_id}


def desired_namespace(tenant: Tenant, policy: TenancyPolicy) -> KubeObject:
    level = policy.pod_security_level
    labels = {
        **ownership_labels(tenant, policy),
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": level,
        "pod-security.kubernetes.io/audit": level,
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": tenant.namespace,
            "labels": labels,
            # Free text never goes into labels (value syntax), only annotations.
            "annotations": {
                ANNOTATION_NAME: tenant.name,
                ANNOTATION_SLUG: tenant.slug,
                ANNOTATION_GENERATION: str(tenant.generation),
            },
        },
    }


def desired_children(tenant: Tenant, policy: TenancyPolicy) -> list[KubeObject]:
    """Namespaced objects, in the order they are applied (quota before workloads could exist)."""
    ns = tenant.namespace
    labels = ownership_labels(tenant, policy)

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": ns, "labels": dict(labels)}

    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": meta(policy.quota_name),
            "spec": {"hard": dict(policy.quota)},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": meta(policy.limit_range_name),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": policy.default_cpu, "memory": policy.default_memory},
                        "defaultRequest": {
                            "cpu": policy.default_request_cpu,
                            "memory": policy.default_request_memory,
                        },
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("default-deny"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-same-namespace"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"podSelector": {}}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-dns"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(policy.role_binding_name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": policy.cluster_role,
            },
            "subjects": [_subject(tenant, policy)],
        },
    ]


def _subject(tenant: Tenant, policy: TenancyPolicy) -> dict[str, str]:
    name = f"{policy.subject_prefix}{tenant.account_id}"
    if policy.subject_kind == "ServiceAccount":
        return {"kind": "ServiceAccount", "name": name, "namespace": tenant.namespace}
    return {"kind": policy.subject_kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}


CHILD_KINDS = ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding")


def drift(
    tenant: Tenant,
    policy: TenancyPolicy,
    namespace: KubeObject,
    children: set[tuple[str, str]],
) -> str | None:
    """What a resync sees wrong with an existing namespace of ours: a missing policy object
    (`children` holds the (kind, name) pairs present in it) or a changed label or annotation."""
    want = desired_namespace(tenant, policy)["metadata"]
    have = namespace.get("metadata") or {}
    for field_name in ("labels", "annotations"):
        current = have.get(field_name) or {}
        for key, value in want[field_name].items():
            if current.get(key) != value:
                return f"{field_name[:-1]} {key} is {current.get(key)!r}, want {value!r}"
    for child in desired_children(tenant, policy):
        pair = (child["kind"], child["metadata"]["name"])
        if pair not in children:
            return f"{pair[0]} {pair[1]} is missing"
    return None


def not_ours(existing: KubeObject, tenant: Tenant, policy: TenancyPolicy) -> str | None:
    """Why an existing namespace must not be adopted for `tenant`, or None when it is ours."""
    labels = existing.get("metadata", {}).get("labels") or {}
    name = tenant.namespace
    if labels.get(policy.managed_by_label) != policy.managed_by_value:
        return f"namespace {name} exists without label {policy.selector}; refusing to adopt it"
    owner = labels.get(policy.account_label)
    if owner != tenant.account_id:
        return f"namespace {name} belongs to account {owner!r}, not {tenant.account_id}; refusing"
    return None


def applied_generation(namespace: KubeObject) -> int:
    """The generation annotated on one of our namespaces (0 when absent or garbled)."""
    annotations = (namespace.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_GENERATION)
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0


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
