"""`fabric`: the operator's tool (what `./bin/fabric <anything but test|bench>` runs).

    fabric up [--state-dir DIR] [--port 8080] [--clusters a,b] [--kubeconfig NAME=PATH]
    fabric status
    fabric keys show|rotate
    fabric keys create --scope admin|write|read [--name NAME] [--keys-file PATH]
    fabric keys list [--keys-file PATH]
    fabric keys revoke ID [--keys-file PATH]
    fabric account create NAME --email E [--slug S] [--plan P] [--wait [--timeout S]]
    fabric account get ID | --slug S
    fabric account list [--limit N] [--all] [--status STATUS]
    fabric account update ID [--name N] [--email E] [--plan P] [--wait [--timeout S]]
    fabric account suspend ID [--wait [--timeout S]]
    fabric account resume ID [--wait [--timeout S]]
    fabric account retry ID [--cluster C] [--wait [--timeout S]]
    fabric account wait ID [--generation G] [--timeout S]
    fabric account delete ID [--wait [--timeout S]]
    fabric plan list
    fabric cluster list
    fabric cluster remove NAME
    fabric watch [--interval S] [--once]
    fabric nats config --clusters a,b --server-name N [--listen H:P] [--routes URLS] [--out FILE]

Common flags: --url, --key, --state-dir, --json (before or after the sub-command).
`--wait` (and `account wait`) prints a line on stderr each time a cluster's
state changes, then the final account.
Exit codes: 0 ok, 1 the server answered with a JSON-RPC error (code and
message printed) or a `keys` or `nats` command could not be done (reason printed),
2 usage, 3 the API could not be reached or gave no usable answer, 4 a wait
ended before the account converged (the timeout passed, or a cluster
failed): the account is printed as it was then.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from actors.api.keystore import check_name
from actors.api.scopes import SCOPES, parse_scope
from actors.cli import commands, keys, nats, status, target, watch
from actors.cli.commands import NotConverged
from actors.cli.rpc import RpcClient, RpcError, Unreachable
from actors.runtime.loop import run as run_loop
from actors.up import options
from actors.up.layout import Layout
from core.account import STATUSES

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_CONVERGED = 4
WAIT_TIMEOUT = 60.0

Command = Callable[[argparse.Namespace, RpcClient, TextIO, TextIO], Awaitable[None]]


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
        "Exit codes: 0 ok, 1 JSON-RPC error, 2 usage, 3 API unreachable, "
        "4 a wait ended before the account converged.",
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

    account = sub.add_parser("account", parents=[common],
                             help="create, change, wait for, list and delete accounts")
    acc = account.add_subparsers(dest="action", required=True, metavar="ACTION")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true",
                         help="follow the clusters until they converge (exit 4 if they do not)")
    waiting.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT,
                         help=f"how long --wait waits, in seconds (default {WAIT_TIMEOUT:g})")
    create = acc.add_parser("create", parents=[common, waiting], help="create an account")
    create.add_argument("name")
    create.add_argument("--email", required=True, help="the owner's email address")
    create.add_argument("--slug", help="DNS label for the account (default: from the name)")
    create.add_argument("--plan", help="the plan (see `fabric plan list`; default standard)")
    create.set_defaults(run=commands.account_create)
    get = acc.add_parser("get", parents=[common], help="show one account by id or --slug")
    get.add_argument("id", nargs="?")
    get.add_argument("--slug")
    get.set_defaults(run=commands.account_get)
    lst = acc.add_parser("list", parents=[common], help="list accounts in creation order")
    lst.add_argument("--limit", type=int, default=50, help="page size, 1..500 (default 50)")
    lst.add_argument("--all", action="store_true", help="follow cursors to the end")
    lst.add_argument("--status", choices=STATUSES, help="only accounts with this status")
    lst.set_defaults(run=commands.account_list)
    update = acc.add_parser("update", parents=[common, waiting],
                            help="change an account's name, owner or plan")
    update.add_argument("id")
    update.add_argument("--name", help="a new display name")
    update.add_argument("--email", help="a new owner's email address")
    update.add_argument("--plan", help="a new plan (see `fabric plan list`)")
    update.set_defaults(run=commands.account_update)
    for action, run, text in (
        ("suspend", commands.account_suspend, "suspend an account (nothing is deleted)"),
        ("resume", commands.account_resume, "resume a suspended account"),
        ("delete", commands.account_delete, "delete an account"),
    ):
        p = acc.add_parser(action, parents=[common, waiting], help=text)
        p.add_argument("id")
        p.set_defaults(run=run)
    retry = acc.add_parser("retry", parents=[common, waiting],
                           help="make the clusters where the account failed try again now")
    retry.add_argument("id")
    retry.add_argument("--cluster", help="only this cluster")
    retry.set_defaults(run=commands.account_retry)
    wait = acc.add_parser("wait", parents=[common],
                          help="wait until every online cluster has observed a generation")
    wait.add_argument("id")
    wait.add_argument("--generation", type=_generation,
                      help="the generation to wait for (default: the current one)")
    wait.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT,
                      help=f"seconds to wait at most (default {WAIT_TIMEOUT:g})")
    wait.set_defaults(run=commands.account_wait)

    plan = sub.add_parser("plan", parents=[common], help="the plans an account can be on")
    pl = plan.add_subparsers(dest="action", required=True, metavar="ACTION")
    pl.add_parser("list", parents=[common], help="list the plans").set_defaults(
        run=commands.plan_list
    )

    cluster = sub.add_parser("cluster", parents=[common], help="clusters and their daemons")
    cl = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    cl.add_parser("list", parents=[common], help="list clusters").set_defaults(
        run=commands.cluster_list
    )
    remove = cl.add_parser(
        "remove", parents=[common],
        help="forget a decommissioned cluster (stop its daemon first): its position stops "
        "holding deleted accounts' tombstones back",
    )
    remove.add_argument("name")
    remove.set_defaults(run=commands.cluster_remove)

    watch_p = sub.add_parser("watch", parents=[common],
                             help="a live table of clusters and accounts (like kubectl get -w)")
    watch_p.add_argument("--interval", type=_seconds, default=watch.INTERVAL,
                         help=f"seconds between reads (default {watch.INTERVAL:g})")
    watch_p.add_argument("--once", action="store_true", help="print the tables once and exit")
    watch_p.set_defaults(run=watch.watch)

    nats_p = sub.add_parser("nats", parents=[common],
                            help="an operator's own NATS cluster for `fabric up --bus jetstream`")
    nats_sub = nats_p.add_subparsers(dest="action", required=True, metavar="ACTION")
    nats.add_arguments(nats_sub.add_parser(
        "config", parents=[common],
        help="print one node's nats-server config: our users, their passwords and permissions",
    ))
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, 86400], not {text!r}")
    return value


def _generation(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


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
    if (args.command == "account" and args.action == "update"
            and args.name is None and args.email is None and args.plan is None):
        parser.error("account update: give at least one of --name, --email, --plan")
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
            await run(args, rpc, out, err)
    except NotConverged as exc:
        print(f"fabric: {exc}", file=err)
        return EXIT_NOT_CONVERGED
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
    if args.command == "nats":
        return nats.config(args, Layout.at(state), sys.stdout, sys.stderr)
    return run_loop(run_api_command(args))
