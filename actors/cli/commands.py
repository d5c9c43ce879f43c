"""The operator tool's API commands: account create/get/list/delete and cluster list.

Each takes the parsed flags and an open `RpcClient`, prints the result (a
human table, or JSON with `--json`) and returns nothing; RPC failures
propagate as `RpcError` / `Unreachable` for `main` to turn into exit codes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from actors.cli import tables
from actors.cli.rpc import RpcClient

LIST_PAGE = 500


def emit(result: Any, as_json: bool, human: str, out: TextIO) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True), file=out)
    else:
        print(human, file=out)


async def account_create(args: argparse.Namespace, rpc: RpcClient, out: TextIO) -> None:
    params: dict[str, Any] = {"name": args.name, "owner_email": args.email}
    if args.slug:
        params["slug"] = args.slug
    result = await rpc.call("account.create", params)
    emit(result, args.json, tables.account(result), out)


async def account_get(args: argparse.Namespace, rpc: RpcClient, out: TextIO) -> None:
    params = {"slug": args.slug} if args.slug else {"id": args.id}
    result = await rpc.call("account.get", params)
    emit(result, args.json, tables.account(result), out)


async def account_list(args: argparse.Namespace, rpc: RpcClient, out: TextIO) -> None:
    items: list[Any] = []
    cursor: str | None = None
    limit = LIST_PAGE if args.all else args.limit
    next_cursor: Any = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
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


async def account_delete(args: argparse.Namespace, rpc: RpcClient, out: TextIO) -> None:
    result = await rpc.call("account.delete", {"id": args.id})
    emit(result, args.json, tables.account(result), out)


async def cluster_list(args: argparse.Namespace, rpc: RpcClient, out: TextIO) -> None:
    result = await rpc.call("cluster.list", {})
    emit(result, args.json, tables.clusters(result if isinstance(result, list) else []), out)
