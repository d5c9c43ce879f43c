"""Discovery and OpenAPI documents: what kubectl reads before it acts.

Legacy discovery (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`) in plain
JSON, which every kubectl accepts; a `/version` whose minor (default 31) makes the kubectl
dispatcher choose a JSON-speaking kubectl; and a minimal OpenAPI v3 (an index plus one
document per group version whose PATCH operations name their kind and accept
`fieldValidation`), which is enough for kubectl to delegate validation to the server.
"""

from __future__ import annotations

from typing import Any

from actors.kube_emulator.resources import (
    VERBS,
    ResourceType,
    group_versions,
    resources_in,
)

JSON = dict[str, Any]


def version(minor: int) -> JSON:
    return {
        "major": "1", "minor": str(minor), "gitVersion": f"v1.{minor}.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": server_address}],
    }


def _group(name: str) -> JSON:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions()
                if g == name]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> JSON:
    names = [g for g, _ in group_versions() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(n) for n in dict.fromkeys(names)]}


def api_group(name: str) -> JSON | None:
    if name not in {g for g, _ in group_versions() if g}:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _resource_entry(r: ResourceType) -> list[JSON]:
    entry: JSON = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                   "kind": r.kind, "verbs": list(VERBS)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    entries = [entry]
    for sub in r.subresources:
        verbs = ["update"] if sub == "finalize" else ["get", "patch", "update"]
        entries.append({"name": f"{r.plural}/{sub}", "singularName": "",
                        "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})
    return entries


def api_resource_list(group: str, version_: str) -> JSON | None:
    kinds = resources_in(group, version_)
    if not kinds:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version_}" if group else version_,
            "resources": [e for r in kinds for e in _resource_entry(r)]}


def _gv_path(group: str, version_: str) -> str:
    return f"apis/{group}/{version_}" if group else f"api/{version_}"


def openapi_index() -> JSON:
    return {"paths": {
        _gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash=emulator1"}
        for g, v in group_versions()
    }}


_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]


def openapi_group_version(path: str) -> JSON | None:
    """The per-group-version document for `api/v1` or `apis/GROUP/VERSION`, else None."""
    gv = next(((g, v) for g, v in group_versions() if _gv_path(g, v) == path), None)
    if gv is None:
        return None
    paths: JSON = {}
    for r in resources_in(*gv):
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        base = f"{r.prefix}/namespaces/{{namespace}}/{r.plural}" if r.namespaced \
            else f"{r.prefix}/{r.plural}"
        op: JSON = {"x-kubernetes-group-version-kind": gvk, "parameters": _PARAMS,
                    "responses": {"200": {"description": "OK"}}}
        paths[base] = {"post": {**op, "x-kubernetes-action": "post",
                                "operationId": f"create{r.kind}"}}
        paths[f"{base}/{{name}}"] = {
            "patch": {**op, "x-kubernetes-action": "patch", "operationId": f"patch{r.kind}"},
            "put": {**op, "x-kubernetes-action": "put", "operationId": f"replace{r.kind}"},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"},
            "paths": paths, "components": {"schemas": {}}}
