"""Named plans, the size of a tenant, and what suspension does to a plan's quota (plain data).

A `Plan` is the ResourceQuota's `spec.hard` (`quota`) and the LimitRange's
container defaults (`limits`: `{"default": {...}, "defaultRequest": {...}}`,
the LimitRange item without its `type`), exactly as a cluster gets them before
its own overrides (`core.tenancy.TenancyPolicy`). `PLANS` holds every plan by
name; `DEFAULT_PLAN` (`standard`) is what every account got before plans
existed, so an account recorded without a plan sees no change.

`SUSPENDED_QUOTA` is laid over a suspended account's quota: no new pods and no
new services. Kubernetes' quota admission only checks new objects, so pods
already running above `hard` keep running (the quota's `status.used` may then
exceed `hard`); the deny-all network policy is what cuts them off.

`quantity` reads a Kubernetes quantity as an exact number, so comparing a
cluster's answer with the desired value does not depend on how the API server
canonicalises it (`1024Mi` and `1Gi` are the same).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    quota: Mapping[str, str]
    limits: Mapping[str, Mapping[str, str]]


def _plan(name: str, quota: dict[str, str], default: dict[str, str], request: dict[str, str]) -> Plan:
    limits = {"default": MappingProxyType(default), "defaultRequest": MappingProxyType(request)}
    return Plan(name, MappingProxyType(quota), MappingProxyType(limits))


DEFAULT_PLAN = "standard"

PLANS: Mapping[str, Plan] = MappingProxyType(
    {
        plan.name: plan
        for plan in (
            _plan(
                "small",
                {
                    "pods": "10",
                    "requests.cpu": "1",
                    "requests.memory": "2Gi",
                    "limits.cpu": "2",
                    "limits.memory": "4Gi",
                    "persistentvolumeclaims": "2",
                    "requests.storage": "10Gi",
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                },
                default={"cpu": "250m", "memory": "256Mi"},
                request={"cpu": "50m", "memory": "64Mi"},
            ),
            _plan(
                "standard",
                {
                    "pods": "50",
                    "requests.cpu": "4",
                    "requests.memory": "8Gi",
                    "limits.cpu": "8",
                    "limits.memory": "16Gi",
                    "persistentvolumeclaims": "10",
                    "requests.storage": "50Gi",
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                },
                default={"cpu": "500m", "memory": "512Mi"},
                request={"cpu": "100m", "memory": "128Mi"},
            ),
            _plan(
                "large",
                {
                    "pods": "200",
                    "requests.cpu": "16",
                    "requests.memory": "32Gi",
                    "limits.cpu": "32",
                    "limits.memory": "64Gi",
                    "persistentvolumeclaims": "40",
                    "requests.storage": "200Gi",
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                },
                default={"cpu": "1", "memory": "1Gi"},
                request={"cpu": "250m", "memory": "256Mi"},
            ),
        )
    }
)

SUSPENDED_QUOTA: Mapping[str, str] = MappingProxyType({"pods": "0", "services": "0"})


_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def quantity(text: object) -> Decimal | None:
    """The exact value of a Kubernetes quantity (`500m`, `8Gi`, `1e3`), None when it is not one."""
    if not isinstance(text, str):
        return None
    found = _QUANTITY.fullmatch(text.strip())
    if found is None:
        return None
    number, suffix = found.group(1), found.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, ValueError):
        return None


def same_quantities(have: object, want: Mapping[str, str]) -> bool:
    """`have` (a cluster's answer) holds exactly `want`'s keys with equal quantities."""
    if not isinstance(have, Mapping) or set(have) != set(want):
        return False
    return all(quantity(have[k]) == quantity(v) and quantity(v) is not None for k, v in want.items())
