"""The kinds the emulator serves, and how each is named in URLs, discovery and errors.

Pure data: one `ResourceType` per kind. Everything that needs to know "which kinds exist"
(routing, discovery, OpenAPI, validation, tables) reads `RESOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NameRule = Literal["label", "subdomain", "path_segment"]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    name_rule: NameRule = "subdomain"
    subresources: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The resource as error messages name it: `rolebindings.rbac.authorization.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


NAMESPACES = ResourceType(
    "", "v1", "namespaces", "Namespace", False, ("ns",), "label", ("finalize", "status")
)

RESOURCES: tuple[ResourceType, ...] = (
    NAMESPACES,
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), "subdomain",
                 ("status",)),
    ResourceType("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
                 ("netpol",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), "path_segment"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (),
                 "path_segment"),
)


def group_versions() -> list[tuple[str, str]]:
    """Every (group, version) served, core first, in a stable order."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None
