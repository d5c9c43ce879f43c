"""The operator tool's API commands: accounts, plans and clusters over JSON-RPC.

Each takes the parsed flags, an open `RpcClient` and the two output streams,
prints the result (a human table, or JSON with `--json`) on `out` and
returns nothing; RPC failures propagate as `RpcError` / `Unreachable` for
`main` to turn into exit codes.

`--wait` (on create, update, suspend, resume, delete) and `account wait`
follow the account with `account.wait` in short steps until every online
cluster has observed the generation (`converged`) or `--timeout` passes,
printing one progress line on `err` whenever a cluster's state changes, then
the final account on `out`. An account that ends anything but ready,
suspended or deleted raises `NotConverged` (after printing it), which
`main` turns into exit code 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from typing import Any, TextIO

from actors.cli import tables
from actors.cli.rpc import RpcClient

LIST_PAGE = 500
WAIT_STEP = 1.0  # seconds per account.wait call: how soon a change shows up while waiting
SETTLED = frozenset({"ready", "suspended", "deleted"})


class NotConverged(Exception):
    """The wait ended (timeout, or every cluster observed it but not all succeeded)."""

    def __init__(self, status: str, timeout: float) -> None:
        super().__init__(f"the account is {status}, not converged (waited up to {timeout:g}s)")
        self.status = status


def emit(result: Any, as_json: bool, human: str, out: TextIO) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
    else:
        print(human, file=out)


def converged(account: Mapping[str, Any], generation: int) -> bool:
    """What `account.wait` answers early for (core.account.has_converged, on the JSON)."""
    if account.get("status") in ("deleting", "deleted"):
        return account.get("status") == "deleted"
    clusters = account.get("clusters")
    online = [c for c in clusters.values() if c.get("online")] if isinstance(clusters, Mapping) else []
    return bool(online) and all(
        c.get("state") != "pending" and int(c.get("observed_generation", 0)) >= generation
        for c in online
    )


async def follow(
    rpc: RpcClient, account: Mapping[str, Any], generation: int | None, timeout: float, err: TextIO
) -> Any:
    """Wait on `account` until it converged at `generation` (default its own) or `timeout`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    goal = generation if generation is not None else int(account.get("generation", 1))
    shown = ""
    current: Any = account
    while True:
        line = tables.progress(current)
        if line != shown:
            print(f"[{loop.time() - start:5.1f}s] {line}", file=err)
            shown = line
        remaining = timeout - (loop.time() - start)
        if converged(current, goal) or remaining <= 0:
            return current
        step = round(min(WAIT_STEP, remaining), 3)
        current = await rpc.call(
            "account.wait", {"id": account["id"], "generation": goal, "timeout": step}
        )


async def _answer(
    args: argparse.Namespace, rpc: RpcClient, result: Any, out: TextIO, err: TextIO,
    *, generation: int | None = None, always_wait: bool = False,
) -> None:
    """Print the result; with --wait (or for `account wait`), follow it to the end first."""
    if not (always_wait or getattr(args, "wait", False)) or not isinstance(result, Mapping):
        emit(result, args.json, tables.account(result), out)
        return
    final = await follow(rpc, result, generation, args.timeout, err)
    emit(final, args.json, tables.account(final), out)
    if final.get("status") not in SETTLED:
        raise NotConverged(str(final.get("status")), args.timeout)


async def account_create(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    params: dict[str, Any] = {"name": args.name, "owner_email": args.email}
    if args.slug:
        params["slug"] = args.slug
    if args.plan:
        params["plan"] = args.plan
    await _answer(args, rpc, await rpc.call("account.create", params), out, err)


async def account_get(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    params = {"slug": args.slug} if args.slug else {"id": args.id}
    result = await rpc.call("account.get", params)
    emit(result, args.json, tables.account(result), out)


async def account_list(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    items: list[Any] = []
    cursor: str | None = None
    limit = LIST_PAGE if args.all else args.limit
    next_cursor: Any = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if args.status:
            params["status"] = args.status
        page = await rpc.call("account.list", params)
        page_items = page.get("items", []) if isinstance(page, dict) else []
        items.extend(page_items)
        next_cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if not args.all or not next_cursor:
            break
        cursor = str(next_cursor)
    result = {"items": items, "next_cursor": None if args.all else next_cursor}
    human = tables.accounts(items)
    if next_cursor and not args.all:
        human += f"\n(more: --all, or account.list with cursor {next_cursor})"
    emit(result, args.json, human, out)


async def account_update(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    params: dict[str, Any] = {"id": args.id}
    for param, value in (("name", args.name), ("owner_email", args.email), ("plan", args.plan)):
        if value is not None:
            params[param] = value
    await _answer(args, rpc, await rpc.call("account.update", params), out, err)


async def account_suspend(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    await _answer(args, rpc, await rpc.call("account.suspend", {"id": args.id}), out, err)


async def account_resume(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    await _answer(args, rpc, await rpc.call("account.resume", {"id": args.id}), out, err)


async def account_retry(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    params: dict[str, Any] = {"id": args.id}
    if args.cluster:
        params["cluster"] = args.cluster
    await _answer(args, rpc, await rpc.call("account.retry", params), out, err)


async def account_wait(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    account = await rpc.call("account.get", {"id": args.id})
    await _answer(args, rpc, account, out, err, generation=args.generation, always_wait=True)


async def account_delete(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    await _answer(args, rpc, await rpc.call("account.delete", {"id": args.id}), out, err)


async def plan_list(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    result = await rpc.call("plan.list", {})
    emit(result, args.json, tables.plans(result if isinstance(result, list) else []), out)


async def cluster_remove(
    args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO
) -> None:
    result = await rpc.call("cluster.remove", {"name": args.name})
    removed = isinstance(result, dict) and result.get("removed")
    text = f"cluster {args.name} removed" if removed else f"cluster {args.name} was not known"
    emit(result, args.json, text, out)


async def cluster_list(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    result = await rpc.call("cluster.list", {})
    emit(result, args.json, tables.clusters(result if isinstance(result, list) else []), out)
