"""The API's method table: each JSON-RPC method's params, result, errors and handler, in one place.

The dispatcher calls these handlers and `rpc.discover` documents them from
the same entries (params and results: actors/api/schemas.py). Domain errors
are translated to JSON-RPC errors here, once: rule violations -32602
(data.fields), slug taken -32010 (data.slug), not found -32011, a dependency
down -32020 (data.dependency; nothing was written), a state that does not
allow the change -32021 (data.status: the account's status now).

Reads come from the cache actor and the cluster directory actor. Changes go
round-robin to the domain actors; the answer is the account as the cache
shows it after the change (the domain applied its event there already), or
the domain's own record when that is newer (a cache that has not caught up).

`account.wait` parks on the cache's and the directory's change signals
(actors/api/watchers.py), registering before each read so no change is
missed, and answers as soon as `core.account.has_converged` holds or its
timeout passes (never an error for a timeout: the caller reads `status`).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import structlog

from actors.api import openrpc, schemas
from actors.api.cache import CacheMessage, FindAccount, ListAccountsPage, Snapshot, WatchAccount
from actors.api.cache_memo import CAPACITY as MEMO_CAPACITY
from actors.api.cache_memo import ReadMemo
from actors.api.clusters import (
    Directory,
    DirectoryMessage,
    GetDirectory,
    RemoveCluster,
    WatchDirectory,
)
from actors.api.cursors import CursorCodec
from actors.api.domain import ChangeAccount, Create, DomainMessage
from actors.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, Encoded, Method, RpcError, encode
from actors.api.params import Signature
from actors.runtime import ActorRef, ActorStopped, AskTimeout
from core.account import AccountRecord, AccountView, account_view, has_converged, status_hint
from core.bus import BusUnavailable
from core.commands import (
    CreateAccount,
    DeleteAccount,
    ResumeAccount,
    RetryAccount,
    SuspendAccount,
    UpdateAccount,
)
from core.envelope import canonical_uuid
from core.errors import AccountNotFound, AccountStateConflict, DependencyUnavailable, SlugTaken
from core.plans import PLANS
from core.rules import InvalidAccount

log = structlog.get_logger()

SLUG_TAKEN = -32010
NOT_FOUND = -32011
UNAVAILABLE = -32020
STATE_CONFLICT = -32021
UNAUTHORIZED = -32001

_AUTH_ERROR = (UNAUTHORIZED, "Unauthorized: missing or wrong API key")
_UNAVAILABLE_ERROR = (UNAVAILABLE, "A dependency is unavailable; nothing was written")
_NOT_FOUND_ERROR = (NOT_FOUND, "Account not found")
_STATE_ERROR = (STATE_CONFLICT, "The account's state does not allow it")
_SCAN = 200  # the largest step of a list by status: it doubles while its hint lets misses by


@dataclass(frozen=True, slots=True)
class Deps:
    domains: tuple[ActorRef[DomainMessage], ...]  # commands go round-robin to these
    cache: ActorRef[CacheMessage]
    directory: ActorRef[DirectoryMessage]
    cursors: CursorCodec
    timeout: float = 10.0
    memo: ReadMemo | None = None  # the cache actor's memory of account reads, read directly


class _Translated:
    """Domain errors -> JSON-RPC errors, the one place it happens: `with translated:`.

    A plain context manager (its body never awaits): an `asynccontextmanager` cost
    every call ~5 us, a tenth of an `account.get`'s own work."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, InvalidAccount):
            raise RpcError(INVALID_PARAMS, "Invalid params",
                           {"fields": {v.field: v.reason for v in exc.violations}})
        if isinstance(exc, SlugTaken):
            raise RpcError(SLUG_TAKEN, "Slug is taken", {"slug": exc.slug})
        if isinstance(exc, AccountNotFound):
            raise RpcError(NOT_FOUND, "Account not found", {"key": exc.key})
        if isinstance(exc, AccountStateConflict):
            raise RpcError(STATE_CONFLICT, _STATE_ERROR[1], {"status": exc.state})
        if isinstance(exc, DependencyUnavailable):
            raise RpcError(UNAVAILABLE, "Dependency unavailable", {"dependency": exc.dependency})
        if isinstance(exc, AskTimeout | ActorStopped):
            log.warning("rpc_outcome_unknown", error=str(exc))
            raise RpcError(INTERNAL_ERROR, "Internal error",
                           {"reason": "timed out or shutting down; the outcome is unknown"})


translated = _Translated()


def _check_uuid(value: str, field: str) -> str:
    """The canonical form of a uuid param, or -32602 naming the field."""
    canonical = canonical_uuid(value)
    if canonical is None:
        raise RpcError(INVALID_PARAMS, "Invalid params", {"fields": {field: "must be a uuid"}})
    return canonical


def _views(snapshot: Snapshot, directory: Directory) -> list[AccountView]:
    known = set(snapshot.clusters) | set(directory.cluster_names())
    online = directory.online()
    seen = directory.last_seen()
    return [
        account_view(r, snapshot.reports.get(r.id, []), known, online, seen)
        for r in snapshot.records
    ]


def _plans() -> list[dict[str, Any]]:
    return [
        {"name": p.name, "quota": dict(p.quota),
         "limits": {kind: dict(values) for kind, values in p.limits.items()}}
        for p in PLANS.values()
    ]


def build_table(deps: Deps) -> dict[str, Method]:
    turn = itertools.cycle(deps.domains)

    async def directory() -> Directory:
        return await deps.directory.ask(GetDirectory(), timeout=deps.timeout)

    # What account views need of the directory (names, which are online) changes only when
    # its watchers are notified: keep the last answer until then instead of asking per read.
    held: list[tuple[Directory, asyncio.Future[None]]] = []

    def directory_held() -> Directory | None:
        return held[0][0] if held and not held[0][1].done() else None

    async def clusters_now() -> Directory:
        d = directory_held()
        if d is not None:
            return d
        moved = await deps.directory.ask(WatchDirectory(), timeout=deps.timeout)
        d = await directory()
        if d.answered:
            held[:] = [(d, moved)]
        else:
            moved.cancel()  # before a first answer, each read asks (the directory asks the bus)
        return d

    # Account id -> the cache's answer and the directory a view was made of, and its JSON.
    # The memo hands out the same answer until the account changes and the directory is
    # held until it moves, so an account read again with neither changed is answered
    # with the bytes made for the last read.
    rendered: dict[str, tuple[Snapshot, Directory, Encoded]] = {}

    async def view(account_id: str, newer: AccountRecord | None = None) -> AccountView:
        """The account as the cache shows it, or as `newer` when the cache is behind it."""
        snapshot = await deps.cache.ask(FindAccount(account_id=account_id), timeout=deps.timeout)
        records = snapshot.records
        # The answer to a change shows the generation that change committed, even when the
        # cache has already moved on to a later one (concurrent changes).
        if newer is not None and (not records or records[0].generation != newer.generation):
            position = records[0].position if records else 0
            records = [replace(newer, position=position)]
        if not records:
            raise AccountNotFound(account_id)
        return _views(Snapshot(records, snapshot.reports, snapshot.clusters), await clusters_now())[0]

    async def change(command: Any) -> Any:
        with translated:
            try:
                record = await next(turn).ask(ChangeAccount(command), timeout=deps.timeout)
            except AccountStateConflict as exc:
                # data.status: what the caller would read now (deleting or deleted).
                raise AccountStateConflict(exc.account_id, (await view(exc.account_id)).status)
            return (await view(record.id, record)).to_json()

    def correlation() -> str:
        return str(uuid.uuid4())

    async def create(params: dict[str, Any]) -> Any:
        with translated:
            record = await next(turn).ask(
                Create(CreateAccount(params["name"], params["owner_email"], params.get("slug"),
                                     correlation_id=correlation(), plan=params.get("plan"))),
                timeout=deps.timeout,
            )
            return (await view(record.id, record)).to_json()

    async def get(params: dict[str, Any]) -> Any:
        # The hot read: a memo hit and a held directory answer without a query object, an
        # ask or another coroutine (each step here is paid on every `account.get`).
        with translated:
            if "id" in params:
                wanted, slug = _check_uuid(params["id"], "id"), None
            else:
                wanted, slug = None, params["slug"]
            snapshot = deps.memo.find(wanted, slug) if deps.memo else None
            if snapshot is None:
                snapshot = await deps.cache.ask(FindAccount(account_id=wanted, slug=slug),
                                                timeout=deps.timeout)
            if not snapshot.records:
                raise AccountNotFound(params.get("id") or params["slug"])
            d = directory_held()
            if d is None:
                d = await clusters_now()
            account_id = snapshot.records[0].id
            last = rendered.get(account_id)
            if last is not None and last[0] is snapshot and last[1] is d:
                return last[2]
            answer = Encoded(encode(_views(snapshot, d)[0].to_json()))
            if deps.memo is not None and deps.memo.find(account_id, None) is snapshot:
                # Only an answer the memo holds can come back by identity (a shared
                # store's reads are never held: each one is new).
                if len(rendered) >= MEMO_CAPACITY:
                    rendered.clear()
                rendered[account_id] = (snapshot, d, answer)
            return answer

    async def list_(params: dict[str, Any]) -> Any:
        limit: int = params.get("limit", 50)
        status = params.get("status")
        after = None
        if params.get("cursor") is not None:
            after = deps.cursors.decode(params["cursor"])
            if after is None:
                raise RpcError(INVALID_PARAMS, "Invalid params",
                               {"fields": {"cursor": "is not a cursor this server issued"}})
        with translated:
            d = await clusters_now()
            found: list[AccountView] = []
            # By status, the store skips the accounts that cannot have it (most of them, on a
            # settled fleet); each it returns is still judged by its derived status below.
            hint = None if status is None else status_hint(status, d.online())
            step = limit + 1
            while len(found) <= limit:
                snapshot = await deps.cache.ask(
                    ListAccountsPage(after, step, hint), timeout=deps.timeout
                )
                found += [v for v in _views(snapshot, d) if status is None or v.status == status]
                if len(snapshot.records) < step:
                    break
                after = snapshot.records[-1].position
                step = min(step * 2, max(limit + 1, _SCAN))
            page = found[:limit]
            more = len(found) > limit
            next_cursor = deps.cursors.encode(page[-1].record.position) if more else None
            return {"items": [v.to_json() for v in page], "next_cursor": next_cursor}

    async def update(params: dict[str, Any]) -> Any:
        return await change(UpdateAccount(
            _check_uuid(params["id"], "id"), correlation(), name=params.get("name"),
            owner_email=params.get("owner_email"), plan=params.get("plan"),
        ))

    async def suspend(params: dict[str, Any]) -> Any:
        return await change(SuspendAccount(_check_uuid(params["id"], "id"), correlation()))

    async def resume(params: dict[str, Any]) -> Any:
        return await change(ResumeAccount(_check_uuid(params["id"], "id"), correlation()))

    async def delete(params: dict[str, Any]) -> Any:
        return await change(DeleteAccount(_check_uuid(params["id"], "id"), correlation()))

    async def retry(params: dict[str, Any]) -> Any:
        account_id = _check_uuid(params["id"], "id")
        cluster: str | None = params.get("cluster")
        with translated:
            current = await view(account_id)
            if current.record.deleted_at is not None:
                raise AccountStateConflict(account_id, current.status)
            if cluster is not None and cluster not in current.clusters:
                raise RpcError(NOT_FOUND, "Cluster not found", {"cluster": cluster})
            failed = [
                name for name, cell in current.clusters.items()
                if cell.state == "failed" and cluster in (None, name)
            ]
            if not failed:
                return current.to_json()
        log.info("account_retry_requested", account_id=account_id, clusters=sorted(failed))
        return await change(RetryAccount(account_id, correlation()))

    async def wait(params: dict[str, Any]) -> Any:
        account_id = _check_uuid(params["id"], "id")
        goal: int | None = params.get("generation")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get("timeout", schemas.WAIT_DEFAULT))
        wakes = 0
        with translated:
            watching: tuple[asyncio.Future[None], asyncio.Future[None]] | None = None
            try:
                while True:
                    current = await view(account_id)
                    if goal is None:
                        goal = current.record.generation
                    done = has_converged(current, goal)
                    remaining = deadline - loop.time()
                    if done or remaining <= 0:
                        log.debug("account_wait_ended", account_id=account_id, generation=goal,
                                  converged=done, status=current.status, wakes=wakes)
                        return current.to_json()
                    if watching is None:
                        # Read first and watch only when not done: the wake that ends a wait
                        # (the last cluster's report) then costs one read, not two watches
                        # and a read. A change between that read and the watch wakes
                        # nothing, so the view is read again before parking.
                        watching = (
                            await deps.cache.ask(WatchAccount(account_id), timeout=deps.timeout),
                            await deps.directory.ask(WatchDirectory(), timeout=deps.timeout),
                        )
                        continue
                    if wakes == 0:
                        log.debug("account_wait_parked", account_id=account_id, generation=goal)
                    await asyncio.wait(watching, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                    wakes += 1
                    for future in watching:
                        future.cancel()
                    watching = None
            finally:
                for future in watching or ():
                    future.cancel()

    async def plans(_params: dict[str, Any]) -> Any:
        return _plans()

    async def clusters(_params: dict[str, Any]) -> Any:
        with translated:
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

    async def remove_cluster(params: dict[str, Any]) -> Any:
        name = params["name"]
        with translated:
            d = await directory()
            if name in d.online():
                # A running daemon would register again with its next request.
                raise RpcError(STATE_CONFLICT, "The cluster is online: stop its daemon first",
                               {"status": "online"})
            try:
                removed = await deps.directory.ask(RemoveCluster(name), timeout=deps.timeout)
            except (OSError, BusUnavailable) as exc:
                raise DependencyUnavailable("broker", str(exc)) from exc
        return {"name": name, "removed": removed}

    def answering_account(
        name: str, handler: Any, signature: Signature, summary: str, *codes: tuple[int, str]
    ) -> Method:
        return Method(name, handler, signature, summary=summary, result_name="account",
                      result_schema=schemas.ACCOUNT_REF, errors=(_AUTH_ERROR, *codes))

    table = [
        answering_account(
            "account.create", create,
            Signature((schemas.NAME, schemas.OWNER_EMAIL, schemas.SLUG, schemas.PLAN)),
            "Create an account; returns once its row and event are durable",
            (SLUG_TAKEN, "Slug is taken"), _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.get", get,
            Signature((schemas.GET_ID, schemas.GET_SLUG), constraint=schemas.EXACTLY_ID_OR_SLUG),
            "Get one account by id or by slug (exactly one of them)",
            _NOT_FOUND_ERROR, _UNAVAILABLE_ERROR,
        ),
        Method(
            "account.list", list_, Signature(schemas.LIST),
            summary="List accounts in creation order, cursor-paginated, optionally by status",
            result_name="page", result_schema=schemas.PAGE_SCHEMA,
            errors=(_AUTH_ERROR, _UNAVAILABLE_ERROR),
        ),
        answering_account(
            "account.update", update, Signature(schemas.UPDATE),
            "Change an account's name, owner or plan; the next generation",
            _NOT_FOUND_ERROR, _STATE_ERROR, _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.suspend", suspend, Signature((schemas.ID,)),
            "Suspend an account in every cluster (nothing is deleted)",
            _NOT_FOUND_ERROR, _STATE_ERROR, _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.resume", resume, Signature((schemas.ID,)),
            "Resume a suspended account: its plan applies again",
            _NOT_FOUND_ERROR, _STATE_ERROR, _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.retry", retry, Signature(schemas.RETRY),
            "Clusters where the account failed try again now",
            _NOT_FOUND_ERROR, _STATE_ERROR, _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.wait", wait, Signature(schemas.WAIT),
            "Wait until every online cluster has observed a generation, or a timeout",
            _NOT_FOUND_ERROR, _UNAVAILABLE_ERROR,
        ),
        answering_account(
            "account.delete", delete, Signature((schemas.ID,)),
            "Delete an account; its namespaces are then removed from every cluster",
            _NOT_FOUND_ERROR, _UNAVAILABLE_ERROR,
        ),
        Method(
            "plan.list", plans, Signature(()), summary="The plans an account can be on",
            result_name="plans", result_schema=schemas.PLANS_SCHEMA, errors=(_AUTH_ERROR,),
        ),
        Method(
            "cluster.list", clusters, Signature(()),
            summary="The clusters (durable consumers cluster:NAME) and their progress",
            result_name="clusters", result_schema=schemas.CLUSTERS_SCHEMA,
            errors=(_AUTH_ERROR, _UNAVAILABLE_ERROR),
        ),
        Method(
            "cluster.remove", remove_cluster, Signature(schemas.CLUSTER_REMOVE),
            summary="Forget a decommissioned cluster (its daemon stopped): its consumer stops "
            "holding deleted accounts' tombstones back and leaves cluster.list",
            result_name="removed", result_schema=schemas.CLUSTER_REMOVED_SCHEMA,
            errors=(_AUTH_ERROR, (STATE_CONFLICT, "The cluster is online"), _UNAVAILABLE_ERROR),
        ),
    ]
    methods = {m.name: m for m in table}
    add_discover(methods, title="Fabric management API", components=schemas.COMPONENTS,
                 descriptions=schemas.DESCRIPTIONS)
    return methods


def add_discover(
    methods: dict[str, Method],
    *,
    title: str,
    components: dict[str, Any] | None = None,
    descriptions: dict[str, str] | None = None,
) -> None:
    """Register `rpc.discover` (no key needed), answering from `methods` itself."""

    async def discover(_params: dict[str, Any]) -> Any:
        return openrpc.document(methods, title=title, version="1.0.0", components=components,
                                descriptions=descriptions)

    methods["rpc.discover"] = Method(
        "rpc.discover", discover, Signature(()), summary="This OpenRPC document",
        result_name="OpenRPC Schema", result_schema={"type": "object"}, auth=False,
    )


Handler = Callable[[dict[str, Any]], Awaitable[Any]]
