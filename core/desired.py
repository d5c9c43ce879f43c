"""The objects one account owns in a cluster, built from its `Tenant` and the cluster's policy.

Pure functions and data only:

- `desired_namespace`: the namespace, with our ownership labels, the Pod
  Security labels, the plan and suspension labels, and annotations for the
  free text and the generation applied;
- `desired_children`: the namespaced objects in the order they are applied:
  the ResourceQuota (the plan's, the cluster's overrides, and while suspended
  no new pods or services), the LimitRange, the `default-deny` network policy,
  then either the allow policies or, while suspended, the `suspended-deny-all`
  policy that takes their place, and the tenant's RoleBinding;
- `retired_children`: what must not exist in the namespace for this state
  (the allow policies while suspended, the suspension's deny-all otherwise):
  the only objects in a namespace the daemon ever deletes;
- `drift`: how an existing namespace of ours differs from the desired state
  (a label or annotation, a missing or retired object, a quota or limit range
  whose values differ from the plan's), as the resync sees it;
- `not_ours`: why an existing namespace must not be adopted;
- `applied_generation`: the generation annotated on a namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.plans import same_quantities
from core.tenancy import PLANS, KubeObject, ObjectRef, TenancyPolicy, Tenant

ANNOTATION_NAME = "fabric.dev/account-name"
ANNOTATION_SLUG = "fabric.dev/slug"
# The account generation last applied to the namespace: drift when stale, and what a daemon
# reports as observed when it removes a namespace whose account it has no record of.
ANNOTATION_GENERATION = "fabric.dev/generation"
# The plan and the suspension, as labels so an operator can select on them.
LABEL_PLAN = "fabric.dev/plan"
LABEL_SUSPENDED = "fabric.dev/suspended"

DEFAULT_DENY = "default-deny"
SUSPENDED_DENY = "suspended-deny-all"
ALLOW_POLICIES = ("allow-same-namespace", "allow-dns")

CHILD_KINDS = ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding")

# (kind, name) -> the object as a cluster listed it.
Children = Mapping[tuple[str, str], KubeObject]


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
        LABEL_PLAN: tenant.plan,
        LABEL_SUSPENDED: "true" if tenant.suspended else "false",
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
    """Namespaced objects, in the order they are applied: the quota before anything that could
    admit workloads, and a suspension's deny-all before the allow policies are retired."""
    ns = tenant.namespace
    labels = ownership_labels(tenant, policy)
    plan = PLANS[tenant.plan]

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": ns, "labels": dict(labels)}

    def network_policy(name: str, spec: dict[str, Any]) -> KubeObject:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(name),
            "spec": {"podSelector": {}, **spec},
        }

    deny_all = {"policyTypes": ["Ingress", "Egress"]}
    # `default-deny` alone already denies what no allow policy allows; the suspension still
    # gets its own deny-all, so it is an object an operator sees (and a resume removes).
    if tenant.suspended:
        network = [network_policy(SUSPENDED_DENY, deny_all)]
    else:
        network = [
            network_policy(
                "allow-same-namespace",
                {
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": [{"to": [{"podSelector": {}}]}],
                },
            ),
            network_policy(
                "allow-dns",
                {
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
                            "ports": [
                                {"protocol": "UDP", "port": 53},
                                {"protocol": "TCP", "port": 53},
                            ],
                        }
                    ],
                },
            ),
        ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": meta(policy.quota_name),
            "spec": {"hard": policy.quota_for(plan, suspended=tenant.suspended)},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": meta(policy.limit_range_name),
            "spec": {"limits": [{"type": "Container", **policy.limits_for(plan)}]},
        },
        network_policy(DEFAULT_DENY, deny_all),
        *network,
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


def retired_children(tenant: Tenant) -> list[ObjectRef]:
    """What must not exist in the namespace in this state; deleted after the desired objects
    are in place, so a suspension denies all before any allow policy goes."""
    names = ALLOW_POLICIES if tenant.suspended else (SUSPENDED_DENY,)
    return [ObjectRef("NetworkPolicy", name, tenant.namespace) for name in names]


def _subject(tenant: Tenant, policy: TenancyPolicy) -> dict[str, str]:
    name = f"{policy.subject_prefix}{tenant.account_id}"
    if policy.subject_kind == "ServiceAccount":
        return {"kind": "ServiceAccount", "name": name, "namespace": tenant.namespace}
    return {"kind": policy.subject_kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}


def drift(
    tenant: Tenant, policy: TenancyPolicy, namespace: KubeObject, children: Children
) -> str | None:
    """What a resync sees wrong with an existing namespace of ours (`children`: our objects in
    it): a changed label or annotation, a missing or retired object, or a quota or limit range
    whose values are not the desired ones. None when it is as desired."""
    want = desired_namespace(tenant, policy)["metadata"]
    have = namespace.get("metadata") or {}
    for field_name in ("labels", "annotations"):
        current = have.get(field_name) or {}
        for key, value in want[field_name].items():
            if current.get(key) != value:
                return f"{field_name[:-1]} {key} is {current.get(key)!r}, want {value!r}"
    for child in desired_children(tenant, policy):
        kind, name = child["kind"], child["metadata"]["name"]
        found = children.get((kind, name))
        if found is None:
            return f"{kind} {name} is missing"
        if not _same_values(kind, found, child):
            return f"{kind} {name} differs from the desired values"
    for ref in retired_children(tenant):
        if (ref.kind, ref.name) in children:
            return f"{ref.kind} {ref.name} must not exist"
    return None


def _same_values(kind: str, have: KubeObject, want: KubeObject) -> bool:
    """Quotas and limit ranges are compared value by value (what a plan changes); other
    objects only by presence (a cluster fills in defaults we did not send)."""
    if kind == "ResourceQuota":
        return same_quantities((have.get("spec") or {}).get("hard"), want["spec"]["hard"])
    if kind == "LimitRange":
        items = (have.get("spec") or {}).get("limits")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            return False
        item, wanted = items[0], want["spec"]["limits"][0]
        return item.get("type") == wanted["type"] and all(
            same_quantities(item.get(key), values)
            for key, values in wanted.items()
            if key != "type"
        )
    return True


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
