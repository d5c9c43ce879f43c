"""Resource requests: decode the body and query, ask the store, encode the answer.

GET (object, list, watch, Table), POST (create), PUT (replace, namespace finalize), PATCH
(merge, strategic, json, apply), DELETE (object, collection). Errors from the store come
back as `ApiError` and are answered as Status bodies by the server's middleware.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml  # type: ignore[import-untyped]
from aiohttp import web

from actors.kube_emulator import errors, jsonvalue, objects, protobuf, table, watch
from actors.kube_emulator.durability import Durability
from actors.kube_emulator.messages import (
    Create,
    Delete,
    Finalize,
    Get,
    ListObjects,
    Patch,
    Replace,
    StoreMessage,
)
from actors.kube_emulator.objects import PatchType
from actors.kube_emulator.paths import Target
from actors.kube_emulator.selectors import parse_field_selector, parse_label_selector
from actors.runtime import ActorRef, Request

JSON = dict[str, Any]

_PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    watch_max_seconds: float = 1800.0
    bookmark_interval: float = 60.0


def flag(value: str | None) -> bool:
    """The API server's query booleans: absent, "0" and "false" are false; the rest is true."""
    return value is not None and value.lower() not in ("0", "false")


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=jsonvalue.dumps(body), content_type="application/json")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    ctype = request.content_type
    if ctype == "application/vnd.kubernetes.protobuf":
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as exc:
            raise errors.unsupported_media(f"{ctype}: {exc}")
    try:
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            return _check_depth(yaml.safe_load(raw))
        if ctype in ("application/json", "application/octet-stream", "") or ctype in _PATCH_TYPES:
            return _check_depth(json.loads(raw))
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the request body could not be decoded: {exc}")
    raise errors.unsupported_media(ctype)


MAX_DEPTH = 100


def _check_depth(value: Any) -> Any:
    """Refuse absurdly nested bodies up front, before any recursive code sees them, and
    numbers that are not finite (NaN, Infinity: the stdlib and YAML readers take them, the
    API server does not, and JSON cannot carry them back)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, float) and not math.isfinite(node):
            raise errors.bad_request(f"the request body could not be decoded: {node} is not a number")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return value


def _manager(request: web.Request, default: str) -> str:
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("User-Agent", "")
    return agent.split("/")[0] or default


class ResourceApi:
    """Handles one request against a `Target`; stateless apart from the refs it holds."""

    def __init__(
        self, store: ActorRef[StoreMessage], settings: ApiSettings, closing: Callable[[], bool],
        durability: Durability,
    ) -> None:
        self.store = store
        self.settings = settings
        self.closing = closing
        self.durability = durability

    async def ask(self, message: Request[R]) -> R:
        """The store's answer, once everything it could show is durable (group commit)."""
        answer = await self.store.ask(message)
        await self.durability.settled()
        return answer

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        if method == "GET":
            return await self._get(request, target)
        if target.rtype.namespaced and target.namespace is None:
            raise errors.method_not_allowed(method)  # writes need /namespaces/NS/...
        if target.name is None:
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise errors.method_not_allowed(method)
        match method:
            case "PUT":
                return await self._put(request, target)
            case "PATCH":
                return await self._patch(request, target)
            case "DELETE":
                return await self._delete(request, target)
        raise errors.method_not_allowed(method)

    async def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        table_version = table.wants_table(request.headers.get("Accept", ""))
        if target.name is not None:
            obj = await self.ask(Get(target.rtype, target.namespace, target.name))
            if table_version:
                return json_response(table.render(target.rtype, [obj], None, table_version,
                                                  q.get("includeObject", "Metadata")))
            return json_response(obj)
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        if flag(q.get("watch")):
            try:
                timeout = float(q.get("timeoutSeconds") or self.settings.watch_max_seconds)
                if not math.isfinite(timeout) or timeout < 0:
                    raise ValueError(timeout)
            except ValueError:
                raise errors.bad_request("timeoutSeconds must be a non-negative number")
            opts = watch.WatchOptions(
                q.get("resourceVersion"), labels, fields,
                min(timeout, self.settings.watch_max_seconds), flag(q.get("allowWatchBookmarks")),
                self.settings.bookmark_interval, flag(q.get("sendInitialEvents")), table_version,
            )
            return await watch.serve(request, self.store, self.durability, target, opts,
                                     self.closing)
        items, rv = await self.ask(ListObjects(target.rtype, target.namespace))
        chosen = [o for o in items if labels.matches(o["metadata"].get("labels") or {})
                  and fields.matches(o)]
        if table_version:
            return json_response(table.render(target.rtype, chosen, rv, table_version,
                                              q.get("includeObject", "Metadata")))
        return json_response({"kind": f"{target.rtype.kind}List",
                              "apiVersion": target.rtype.api_version,
                              "metadata": {"resourceVersion": str(rv)},
                              "items": [objects.list_item(o) for o in chosen]})

    def _checked_body(self, body: Any, target: Target, strict: bool) -> JSON:
        obj = objects.ensure_object(body)
        objects.check_kind(target.rtype, obj)
        return objects.prune_unknown(target.rtype, obj, strict)

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        strict = request.query.get("fieldValidation", "") == "Strict"
        body = self._checked_body(await _body(request), target, strict)
        obj = await self.ask(Create(
            target.rtype, target.namespace, body, _manager(request, "unknown"),
            dry_run=request.query.get("dryRun") == "All",
        ))
        return json_response(obj, 201)

    async def _put(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        body = objects.ensure_object(await _body(request))
        if target.subresource == "finalize":
            finalized: JSON = await self.ask(Finalize(target.name, body))
            return json_response(finalized)
        if target.subresource is not None:
            raise errors.method_not_allowed(f"PUT {target.subresource}")
        strict = request.query.get("fieldValidation", "") == "Strict"
        body = self._checked_body(body, target, strict)
        obj = await self.ask(Replace(
            target.rtype, target.namespace, target.name, body, _manager(request, "unknown"),
            dry_run=request.query.get("dryRun") == "All",
        ))
        return json_response(obj)

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        if target.subresource is not None:
            raise errors.method_not_allowed(f"PATCH {target.subresource}")
        patch_type = _PATCH_TYPES.get(request.content_type)
        if patch_type is None:
            raise errors.unsupported_media(request.content_type)
        manager = request.query.get("fieldManager")
        if patch_type == "apply" and not manager:
            raise errors.bad_request(
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                "required for apply patch")
        body = await _body(request)
        if patch_type == "apply":
            body = self._checked_body(body, target,
                                      request.query.get("fieldValidation", "") == "Strict")
        obj, created = await self.ask(Patch(
            target.rtype, target.namespace, target.name, patch_type, body,
            manager or _manager(request, "unknown"),
            dry_run=request.query.get("dryRun") == "All", force=flag(request.query.get("force")),
        ))
        return json_response(obj, 201 if created else 200)

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        uid = rv = None
        if request.can_read_body:
            raw = await request.read()
            try:
                options = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise errors.bad_request(f"the DeleteOptions body could not be decoded: {exc}")
            pre = options.get("preconditions") if isinstance(options, dict) else None
            if isinstance(pre, dict):
                uid, rv = pre.get("uid"), pre.get("resourceVersion")
        obj = await self.ask(Delete(
            target.rtype, target.namespace, target.name, uid, rv,
            dry_run=request.query.get("dryRun") == "All",
        ))
        return json_response(obj)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        items, _ = await self.ask(ListObjects(target.rtype, target.namespace))
        deleted = []
        for obj in items:
            if labels.matches(obj["metadata"].get("labels") or {}) and fields.matches(obj):
                meta = obj["metadata"]
                try:
                    await self.ask(Delete(target.rtype, meta.get("namespace"), meta["name"]))
                except errors.ApiError as exc:
                    if exc.code != 404:
                        raise
                deleted.append(objects.list_item(obj))
        return json_response({"kind": f"{target.rtype.kind}List",
                              "apiVersion": target.rtype.api_version,
                              "metadata": {}, "items": deleted})
