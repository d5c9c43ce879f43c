"""The API's method table: each JSON-RPC method's params, result, errors and handler, in one place.

The dispatcher calls these handlers and `rpc.discover` documents them from
the same entries. Domain errors are translated to JSON-RPC errors here, once:
rule violations -32602 (data.fields), slug taken -32010 (data.slug), not found
-32011, a dependency down -32020 (data.dependency; nothing was written).
Reads come from the cache actor and the cluster directory actor.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from actors.api import openrpc
from actors.api.cache import CacheMessage, FindAccount, ListAccountsPage, Snapshot
from actors.api.clusters import Directory, DirectoryMessage, GetDirectory
from actors.api.cursors import MAX_CURSOR_LEN, CursorCodec
from actors.api.domain import Create, Delete, DomainMessage
from actors.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, Method, RpcError
from actors.api.params import Param, Signature
from actors.runtime import ActorRef, ActorStopped, AskTimeout
from core.account import AccountRecord, AccountView, account_view
from core.commands import CreateAccount, DeleteAccount
from core.errors import AccountNotFound, DependencyUnavailable, SlugTaken
from core.rules import EMAIL_MAX, NAME_MAX, SLUG_MAX, InvalidAccount

log = structlog.get_logger()

SLUG_TAKEN = -32010
NOT_FOUND = -32011
UNAVAILABLE = -32020
UNAUTHORIZED = -32001

_AUTH_ERROR = (UNAUTHORIZED, "Unauthorized: missing or wrong API key")
_UNAVAILABLE_ERROR = (UNAVAILABLE, "A dependency is unavailable; nothing was written")

UUID_SCHEMA = {"type": "string", "minLength": 36, "maxLength": 36, "format": "uuid"}
ACCOUNT_REF = {"$ref": "#/components/schemas/Account"}
DATE_TIME = {"type": "string", "format": "date-time"}
GENERATION = {"type": "integer", "minimum": 1}
CLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["state", "observed_generation", "online", "updated_at"],
    "additionalProperties": False,
    "properties": {
        "state": {"enum": ["pending", "created", "failed", "deleting", "deleted"]},
        "observed_generation": {
            "type": "integer", "minimum": 0,
            "description": "the account generation this cluster last reported on; 0: none yet",
        },
        "online": {"type": "boolean"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "error": {"type": "string", "description": "the reason of the last failure"},
        "attempts": {"type": "integer", "minimum": 0},
    },
}
COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Account": {
            "type": "object",
            "required": ["id", "slug", "name", "owner_email", "namespace", "created_at",
                         "updated_at", "generation", "status", "clusters"],
            "additionalProperties": False,
            "properties": {
                "id": UUID_SCHEMA,
                "slug": {"type": "string"},
                "name": {"type": "string"},
                "owner_email": {"type": "string"},
                "namespace": {"type": "string"},
                "created_at": DATE_TIME,
                "updated_at": DATE_TIME,
                "generation": GENERATION,
                "status": {"enum": ["provisioning", "ready", "updating", "deleting", "deleted",
                                    "degraded"]},
                "clusters": {"type": "object", "additionalProperties": CLUSTER_SCHEMA},
            },
        },
    }
}


@dataclass(frozen=True, slots=True)
class Deps:
    domains: tuple[ActorRef[DomainMessage], ...]  # commands go round-robin to these
    cache: ActorRef[CacheMessage]
    directory: ActorRef[DirectoryMessage]
    cursors: CursorCodec
    timeout: float = 10.0


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Domain errors -> JSON-RPC errors, the one place it happens."""
    try:
        yield
    except InvalidAccount as exc:
        raise RpcError(INVALID_PARAMS, "Invalid params",
                       {"fields": {v.field: v.reason for v in exc.violations}})
    except SlugTaken as exc:
        raise RpcError(SLUG_TAKEN, "Slug is taken", {"slug": exc.slug})
    except AccountNotFound as exc:
        raise RpcError(NOT_FOUND, "Account not found", {"key": exc.key})
    except DependencyUnavailable as exc:
        raise RpcError(UNAVAILABLE, "Dependency unavailable", {"dependency": exc.dependency})
    except (AskTimeout, ActorStopped) as exc:
        log.warning("rpc_outcome_unknown", error=str(exc))
        raise RpcError(INTERNAL_ERROR, "Internal error",
                       {"reason": "timed out or shutting down; the outcome is unknown"})


def _check_uuid(value: str, field: str) -> str:
    """The canonical form of a uuid param, or -32602 naming the field."""
    try:
        if len(value) == 36:
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise RpcError(INVALID_PARAMS, "Invalid params", {"fields": {field: "must be a uuid"}})


def _views(deps: Deps, snapshot: Snapshot, directory: Directory) -> list[AccountView]:
    known = set(snapshot.clusters) | set(directory.cluster_names())
    online = directory.online()
    return [account_view(r, snapshot.reports.get(r.id, []), known, online) for r in snapshot.records]


def build_table(deps: Deps) -> dict[str, Method]:
    turn = itertools.cycle(deps.domains)

    async def directory() -> Directory:
        return await deps.directory.ask(GetDirectory(), timeout=deps.timeout)

    async def view_of(account_id: str, fallback: AccountRecord | None = None) -> dict[str, Any]:
        snapshot = await deps.cache.ask(FindAccount(account_id=account_id), timeout=deps.timeout)
        if not snapshot.records:
            if fallback is None:
                raise AccountNotFound(account_id)
            snapshot = Snapshot([fallback], {}, snapshot.clusters)
        return _views(deps, snapshot, await directory())[0].to_json()

    async def create(params: dict[str, Any]) -> Any:
        async with translated():
            record = await next(turn).ask(
                Create(CreateAccount(params["name"], params["owner_email"], params.get("slug"),
                                     correlation_id=str(uuid.uuid4()))),
                timeout=deps.timeout,
            )
            return await view_of(record.id, record)

    async def get(params: dict[str, Any]) -> Any:
        if ("id" in params) == ("slug" in params):
            raise RpcError(INVALID_PARAMS, "Invalid params",
                           {"fields": {"id": "give exactly one of id or slug",
                                       "slug": "give exactly one of id or slug"}})
        async with translated():
            if "id" in params:
                query = FindAccount(account_id=_check_uuid(params["id"], "id"))
            else:
                query = FindAccount(slug=params["slug"])
            snapshot = await deps.cache.ask(query, timeout=deps.timeout)
            if not snapshot.records:
                raise AccountNotFound(params.get("id") or params["slug"])
            return _views(deps, snapshot, await directory())[0].to_json()

    async def list_(params: dict[str, Any]) -> Any:
        limit = params.get("limit", 50)
        after = None
        if params.get("cursor") is not None:
            after = deps.cursors.decode(params["cursor"])
            if after is None:
                raise RpcError(INVALID_PARAMS, "Invalid params",
                               {"fields": {"cursor": "is not a cursor this server issued"}})
        async with translated():
            snapshot = await deps.cache.ask(ListAccountsPage(after, limit + 1), timeout=deps.timeout)
            more = len(snapshot.records) > limit
            page = Snapshot(snapshot.records[:limit], snapshot.reports, snapshot.clusters)
            items = [v.to_json() for v in _views(deps, page, await directory())]
            next_cursor = deps.cursors.encode(page.records[-1].position) if more else None
            return {"items": items, "next_cursor": next_cursor}

    async def delete(params: dict[str, Any]) -> Any:
        account_id = _check_uuid(params["id"], "id")
        async with translated():
            record = await next(turn).ask(
                Delete(DeleteAccount(account_id, correlation_id=str(uuid.uuid4()))),
                timeout=deps.timeout,
            )
            return await view_of(record.id, record)

    async def clusters(_params: dict[str, Any]) -> Any:
        async with translated():
            d = await directory()
            if not d.answered:
                raise DependencyUnavailable("broker", "no consumer list from the broker yet")
            return [
                {
                    "name": c.name.removeprefix("cluster:"),
                    "status": "online" if c.online else "offline",
                    "last_seen": c.last_seen,
                    "acked_seq": c.acked_seq,
                    "lag": c.lag,
                }
                for c in sorted(d.clusters, key=lambda c: c.name)
            ]

    id_param = Param("id", UUID_SCHEMA, description="the account id")
    table = [
        Method(
            "account.create", create,
            Signature((
                Param("name", {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
                      description="display name, printable characters"),
                Param("owner_email", {"type": "string", "minLength": 3, "maxLength": EMAIL_MAX,
                                      "format": "email"}),
                Param("slug", {"type": "string", "minLength": 1, "maxLength": SLUG_MAX},
                      required=False,
                      description="DNS-1123 label; derived from name when not given"),
            )),
            summary="Create an account; returns once its row and event are durable",
            result_name="account", result_schema=ACCOUNT_REF,
            errors=(_AUTH_ERROR, (SLUG_TAKEN, "Slug is taken"), _UNAVAILABLE_ERROR),
        ),
        Method(
            "account.get", get,
            Signature((
                Param("id", UUID_SCHEMA, required=False),
                Param("slug", {"type": "string", "minLength": 1, "maxLength": SLUG_MAX},
                      required=False),
            )),
            summary="Get one account by id or by slug (exactly one of them)",
            result_name="account", result_schema=ACCOUNT_REF,
            errors=(_AUTH_ERROR, (NOT_FOUND, "Account not found"), _UNAVAILABLE_ERROR),
        ),
        Method(
            "account.list", list_,
            Signature((
                Param("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                      required=False, description="page size, default 50"),
                Param("cursor", {"type": ["string", "null"], "maxLength": MAX_CURSOR_LEN},
                      required=False, description="next_cursor of the previous page"),
            )),
            summary="List accounts in creation order, cursor-paginated",
            result_name="page",
            result_schema={
                "type": "object", "required": ["items", "next_cursor"],
                "properties": {"items": {"type": "array", "items": ACCOUNT_REF},
                               "next_cursor": {"type": ["string", "null"]}},
            },
            errors=(_AUTH_ERROR, _UNAVAILABLE_ERROR),
        ),
        Method(
            "account.delete", delete, Signature((id_param,)),
            summary="Delete an account; its namespaces are then removed from every cluster",
            result_name="account", result_schema=ACCOUNT_REF,
            errors=(_AUTH_ERROR, (NOT_FOUND, "Account not found"), _UNAVAILABLE_ERROR),
        ),
        Method(
            "cluster.list", clusters, Signature(()),
            summary="The clusters (durable consumers cluster:NAME) and their progress",
            result_name="clusters",
            result_schema={"type": "array", "items": {
                "type": "object",
                "required": ["name", "status", "last_seen", "acked_seq", "lag"],
                "properties": {
                    "name": {"type": "string"}, "status": {"enum": ["online", "offline"]},
                    "last_seen": {"type": ["string", "null"]}, "acked_seq": {"type": "integer"},
                    "lag": {"type": "integer"},
                },
            }},
            errors=(_AUTH_ERROR, _UNAVAILABLE_ERROR),
        ),
    ]
    methods = {m.name: m for m in table}
    add_discover(methods, title="Fabric management API", components=COMPONENTS)
    return methods


def add_discover(
    methods: dict[str, Method], *, title: str, components: dict[str, Any] | None = None
) -> None:
    """Register `rpc.discover` (no key needed), answering from `methods` itself."""

    async def discover(_params: dict[str, Any]) -> Any:
        return openrpc.document(methods, title=title, version="1.0.0", components=components)

    methods["rpc.discover"] = Method(
        "rpc.discover", discover, Signature(()), summary="This OpenRPC document",
        result_name="OpenRPC Schema", result_schema={"type": "object"}, auth=False,
    )


Handler = Callable[[dict[str, Any]], Awaitable[Any]]
