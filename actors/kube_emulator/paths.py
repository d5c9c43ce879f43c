"""URL paths to targets: which kind, namespace, name and subresource a request addresses.

`/api/v1/namespaces/X` is the namespace X; `/api/v1/namespaces/X/finalize` its subresource;
`/api/v1/namespaces/X/resourcequotas[/N]` and `/apis/G/V/namespaces/X/PLURAL[/N]` are
namespaced; `/api/v1/resourcequotas` lists across namespaces. Unknown paths give None.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.kube_emulator.resources import NAMESPACES, ResourceType, find


@dataclass(frozen=True, slots=True)
class Target:
    rtype: ResourceType
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
        group == "" and len(rest) == 3 and rest[2] in NAMESPACES.subresources
    ):
        rtype = find(group, version, rest[2])
        if rtype is None or not rtype.namespaced or len(rest) > 5:
            return None
        name = rest[3] if len(rest) >= 4 else None
        sub = rest[4] if len(rest) == 5 else None
        if sub is not None and sub not in rtype.subresources:
            return None
        return Target(rtype, rest[1], name, sub)
    rtype = find(group, version, rest[0])
    if rtype is None or len(rest) > 3:
        return None
    if rtype.namespaced:
        return Target(rtype) if len(rest) == 1 else None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and sub not in rtype.subresources:
        return None
    return Target(rtype, None, name, sub)
