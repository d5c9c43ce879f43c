"""A small RBAC authorizer for tests: does a ClusterRole allow a request, as Kubernetes decides it.

Two halves, each following the API server's own code:

- `request_attributes(method, path, query)` turns an HTTP request into the attributes RBAC
  authorizes (k8s.io/apiserver's RequestInfoFactory): `/api/v1/...` is the core group ""
  and `/apis/GROUP/VERSION/...` a named group; `namespaces/NS/...` sets the namespace; GET
  of an object is `get`, of a collection `list` (`watch` with `watch=true` or a `/watch/`
  prefix), POST `create`, PUT `update`, PATCH `patch`, DELETE `delete` (of a collection
  `deletecollection`); a list or watch whose fieldSelector requires `metadata.name=X` is
  named X; `namespaces/NS/finalize|status` is a subresource of namespace NS; any other path
  is a non-resource request whose verb is the lowercase method.
- `allows(rule, attrs)` is one PolicyRule's match (k8s.io/component-helpers' rbac rules):
  verbs, apiGroups and resources match exactly or by "*"; a resource "R/S" matches
  subresource S of R, "*/S" subresource S of anything, "*" everything; resourceNames, when
  present, admit only a request whose name is listed, so they never admit a create, a
  deletecollection or an unnamed list or watch; nonResourceURLs match a path exactly or by a
  trailing "*". `allowed(rules, attrs)` is true when any rule allows.

A ClusterRole bound by a ClusterRoleBinding holds in every namespace, so the namespace
takes no part in matching here. `load_manifests` / `cluster_role` read a YAML file of
several documents; a malformed rule is a `ValueError` naming what is wrong.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml  # type: ignore[import-untyped]

ALL = "*"
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool, as the server parses
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule of a (Cluster)Role."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> Rule:
        if not isinstance(data, dict):
            raise ValueError(f"a rule must be a mapping, got {data!r}")
        unknown = set(data) - {"verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"}
        if unknown:
            raise ValueError(f"unknown rule fields {sorted(unknown)}")
        rule = cls(
            verbs=_strings(data, "verbs"),
            api_groups=_strings(data, "apiGroups"),
            resources=_strings(data, "resources"),
            resource_names=_strings(data, "resourceNames"),
            non_resource_urls=_strings(data, "nonResourceURLs"),
        )
        if not rule.verbs:
            raise ValueError(f"a rule needs verbs: {data!r}")
        if rule.non_resource_urls and (rule.resources or rule.api_groups or rule.resource_names):
            raise ValueError(f"a rule is either about resources or nonResourceURLs: {data!r}")
        if not rule.non_resource_urls and not (rule.resources and rule.api_groups):
            raise ValueError(f"a resource rule needs apiGroups and resources: {data!r}")
        return rule

    def cells(self) -> Iterator[Rule]:
        """One rule per (apiGroup, resource, verb) or (URL, verb) this rule grants."""
        if self.non_resource_urls:
            for url, verb in itertools.product(self.non_resource_urls, self.verbs):
                yield replace(self, verbs=(verb,), non_resource_urls=(url,))
            return
        for group, resource, verb in itertools.product(self.api_groups, self.resources, self.verbs):
            yield replace(self, verbs=(verb,), api_groups=(group,), resources=(resource,))

    def uses_wildcards(self) -> bool:
        fields = (self.verbs, self.api_groups, self.resources, self.non_resource_urls)
        return any(value == ALL or value.startswith("*/") or value.endswith("*")
                   for field in fields for value in field)


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"rule field {key} must be a list of strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Attributes:
    """What RBAC authorizes of one request (k8s.io/apiserver's authorizer.Attributes)."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    resource_request: bool = True
    path: str = ""

    def describe(self) -> str:
        if not self.resource_request:
            return f"{self.verb} {self.path}"
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = self.api_group or "core"
        where = f" in {self.namespace}" if self.namespace else ""
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {group} {what}{named}{where}"


def request_attributes(method: str, path: str, query: str = "") -> Attributes:
    parts = [p for p in path.split("/") if p]
    verb = method.lower()
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(verb, resource_request=False, path=path)
    if not rest:  # discovery of one group version: /api/v1, /apis/G/V
        return Attributes(verb, resource_request=False, path=path)
    verb = _VERBS.get(method.upper(), "")
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return Attributes(verb, resource_request=False, path=path)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    params = parse_qs(query, keep_blank_values=True)
    if not name and verb == "get":
        verb = "watch" if params.get("watch", [""])[-1] in _TRUE else "list"
    if verb in ("list", "watch") and not name:
        name = _exact_name(params.get("fieldSelector", [""])[-1])
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, group, resource, subresource, namespace, name)


def _exact_name(selector: str) -> str:
    for term in selector.split(","):
        for operator in ("==", "="):
            key, sep, value = term.partition(operator)
            if sep and key.strip() == "metadata.name":
                return value.strip()
    return ""


def allows(rule: Rule, attrs: Attributes) -> bool:
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return any(url == ALL or url == attrs.path
                   or (url.endswith("*") and attrs.path.startswith(url[:-1]))
                   for url in rule.non_resource_urls)
    return (
        any(group in (ALL, attrs.api_group) for group in rule.api_groups)
        and _resource_matches(rule, attrs)
        and (not rule.resource_names or attrs.name in rule.resource_names)
    )


def _verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in (ALL, verb) for v in rule.verbs)


def _resource_matches(rule: Rule, attrs: Attributes) -> bool:
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for resource in rule.resources:
        if resource in (ALL, combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def allowed(rules: Iterable[Rule], attrs: Attributes) -> bool:
    return any(allows(rule, attrs) for rule in rules)


def may_bind(rules: Iterable[Rule], cluster_role: str, namespace: str = "") -> bool:
    """What the API server's escalation check asks before it accepts a RoleBinding of
    `cluster_role` from someone who does not hold all of that role's permissions."""
    attrs = Attributes("bind", "rbac.authorization.k8s.io", "clusterroles", "", namespace,
                       cluster_role)
    return allowed(rules, attrs)


def load_manifests(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ValueError(f"{path}: every document must be a Kubernetes object, got {doc!r}")
    return docs


def find_object(docs: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    if len(found) != 1:
        raise ValueError(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def cluster_role_rules(docs: Sequence[dict[str, Any]]) -> list[Rule]:
    role = find_object(docs, "ClusterRole")
    rules = role.get("rules")
    if not isinstance(rules, list):
        raise ValueError("the ClusterRole's rules must be a list")
    return [Rule.from_json(rule) for rule in rules]
