"""`fabric`: the operator's tool (what `./bin/fabric <anything but test|bench>` runs).

    fabric up [--state-dir DIR] [--port 8080] [--clusters a,b] [--kubeconfig NAME=PATH]
    fabric status
    fabric keys show|rotate
    fabric keys create --scope admin|write|read [--name NAME] [--keys-file PATH]
    fabric keys list [--keys-file PATH]
    fabric keys revoke ID [--keys-file PATH]
    fabric account create NAME --email E [--slug S]
    fabric account get ID | --slug S
    fabric account list [--limit N] [--all]
    fabric account delete ID
    fabric cluster list

Common flags: --url, --key, --state-dir, --json (before or after the sub-command).
Exit codes: 0 ok, 1 the server answered with a JSON-RPC error (code and
message printed) or a `keys` command could not be done (reason printed),
2 usage, 3 the API could not be reached or gave no usable answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from actors.api.keystore import check_name
from actors.api.scopes import SCOPES, parse_scope
from actors.cli import commands, keys, status, target
from actors.cli.rpc import RpcClient, RpcError, Unreachable
from actors.up import options
from actors.up.layout import Layout

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

Command = Callable[[argparse.Namespace, RpcClient, TextIO], Awaitable[None]]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--url", help="API base URL (default: from the state dir, else :8080)")
    common.add_argument("--key", help="API key (default: FABRIC_API_KEY, else the state dir's admin.key)")
    common.add_argument("--state-dir", help="state dir of `fabric up` (default: .fabric)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="fabric",
        parents=[common],
        description="Fabric operator tool: run the system locally and manage accounts.",
        epilog="Also: `fabric test` (the test suite) and `fabric bench` (benchmarks). "
        "Exit codes: 0 ok, 1 JSON-RPC error, 2 usage, 3 API unreachable.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run the whole system locally, supervised")
    options.add_arguments(up)

    sub.add_parser("status", parents=[common], help="what `fabric up` runs (from the state dir)")

    keys_p = sub.add_parser("keys", parents=[common], help="manage the API keys")
    keys_sub = keys_p.add_subparsers(dest="action", required=True, metavar="ACTION")
    keys_sub.add_parser("show", parents=[common], help="print the admin key")
    keys_sub.add_parser("rotate", parents=[common],
                        help="write a new admin key (the api of a running `up` restarts)")
    key_file = argparse.ArgumentParser(add_help=False)
    key_file.add_argument("--keys-file",
                          help="the key file (default: FABRIC_API_KEYS_FILE, else STATE_DIR/api/keys.json)")
    key_create = keys_sub.add_parser("create", parents=[common, key_file],
                                     help="issue an API key; prints its secret once")
    key_create.add_argument("--scope", required=True, type=_scope, metavar="{" + ",".join(SCOPES) + "}",
                            help="read: reads; write: also the account methods; admin: also keys")
    key_create.add_argument("--name", type=_key_name, help="a label (default: the key's id)")
    keys_sub.add_parser("list", parents=[common, key_file], help="list the API keys (no secrets)")
    key_revoke = keys_sub.add_parser("revoke", parents=[common, key_file],
                                     help="revoke an API key (a running API refuses it at once)")
    key_revoke.add_argument("id")

    account = sub.add_parser("account", parents=[common], help="create, get, list, delete accounts")
    acc = account.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = acc.add_parser("create", parents=[common], help="create an account")
    create.add_argument("name")
    create.add_argument("--email", required=True, help="the owner's email address")
    create.add_argument("--slug", help="DNS label for the account (default: from the name)")
    create.set_defaults(run=commands.account_create)
    get = acc.add_parser("get", parents=[common], help="show one account by id or --slug")
    get.add_argument("id", nargs="?")
    get.add_argument("--slug")
    get.set_defaults(run=commands.account_get)
    lst = acc.add_parser("list", parents=[common], help="list accounts in creation order")
    lst.add_argument("--limit", type=int, default=50, help="page size, 1..500 (default 50)")
    lst.add_argument("--all", action="store_true", help="follow cursors to the end")
    lst.set_defaults(run=commands.account_list)
    delete = acc.add_parser("delete", parents=[common], help="delete an account")
    delete.add_argument("id")
    delete.set_defaults(run=commands.account_delete)

    cluster = sub.add_parser("cluster", parents=[common], help="clusters and their daemons")
    cl = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    cl.add_parser("list", parents=[common], help="list clusters").set_defaults(
        run=commands.cluster_list
    )
    return parser


def _scope(text: str) -> str:
    try:
        return parse_scope(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key_name(text: str) -> str:
    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "account" and args.action == "get" and bool(args.id) == bool(args.slug):
        parser.error("account get: give exactly one of ID or --slug")
    if args.command == "account" and args.action == "list" and not 1 <= args.limit <= 500:
        parser.error("account list: --limit must be between 1 and 500")
    for name, default in (("url", None), ("key", None), ("state_dir", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


async def run_api_command(
    args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    layout = Layout.at(target.state_dir(args.state_dir))
    url = target.api_url(args.url, layout)
    if not _is_http_url(url):
        print(f"fabric: the API URL {url!r} is not an http:// or https:// URL "
              "(--url or FABRIC_URL)", file=err)
        return EXIT_USAGE
    key = target.api_key(args.key, layout)
    run: Command = args.run
    try:
        async with RpcClient(url, key) as rpc:
            await run(args, rpc, out)
    except RpcError as exc:
        print(f"fabric: {exc}", file=err)
        if exc.data is not None:
            print(f"fabric: details: {exc.data}", file=err)
        return EXIT_RPC_ERROR
    except Unreachable as exc:
        print(f"fabric: {exc}", file=err)
        return EXIT_UNREACHABLE
    return EXIT_OK


def run_keys_command(args: argparse.Namespace, layout: Layout, out: TextIO, err: TextIO) -> int:
    if args.action == "show":
        return keys.show(layout, out, err)
    if args.action == "rotate":
        return keys.rotate(layout, out, err)
    path = keys.keys_file(getattr(args, "keys_file", None), layout)
    if args.action == "create":
        return keys.create(path, parse_scope(args.scope), args.name, args.json, out, err)
    if args.action == "list":
        return keys.list_(path, args.json, out, err)
    return keys.revoke(path, args.id, out, err)


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    state = target.state_dir(args.state_dir)
    if args.command == "up":
        # Imported here: only `up` needs the supervisor, the client commands start quicker.
        from actors.up import main as up_main

        return up_main.run(args, state)
    if args.command == "status":
        return status.status(Layout.at(state), args.json, sys.stdout)
    if args.command == "keys":
        return run_keys_command(args, Layout.at(state), sys.stdout, sys.stderr)
    return asyncio.run(run_api_command(args))
