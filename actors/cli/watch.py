"""`fabric watch`: the clusters and accounts as a live table, like `kubectl get -w`.

    fabric watch [--interval S] [--once] [--json]

Every `--interval` seconds (default 1) it reads `cluster.list` and every page of
`account.list` (at most MAX_ACCOUNTS accounts), then:

- `--once`: prints the two tables (clusters, then accounts) and exits 0.
- on a terminal (a TTY whose TERM is not `dumb`): redraws the tables in place;
  the top line says when they were read, and why they are stale if the last
  read failed.
- otherwise (a pipe, a file, TERM=dumb): prints the tables once, then one line
  per row that was added, changed or went away (`account <row>`, `cluster <row>`,
  `... (gone)`), as `kubectl get -w` does; with `--json`, one JSON object per
  change instead: `{"kind": "account"|"cluster", "type": "ADDED"|"MODIFIED"|"DELETED",
  "object": {...}}` (after one `ADDED` per row for the first read).

Ctrl-C or SIGTERM ends it with 0. The first read failing ends it like any
command (exit 3 unreachable, 1 JSON-RPC error); a read failing later is
reported (on stderr, or on the top line) and retried at the next interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from actors.cli import tables
from actors.cli.rpc import RpcClient, RpcError, Unreachable
from actors.cli.terminal import LiveBlock, is_live

INTERVAL = 1.0
PAGE = 500
MAX_ACCOUNTS = 5000  # a live view, not an export: `account list --all --json` is for that

IGNORED = frozenset({"last_seen"})

Row = Mapping[str, Any]
Change = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the system: every cluster, and the accounts in creation order."""

    clusters: tuple[Row, ...]
    accounts: tuple[Row, ...]
    complete: bool  # False when there were more than MAX_ACCOUNTS accounts

    def rows(self) -> dict[tuple[str, str], Row]:
        """Every row by (kind, key): clusters by name, accounts by id."""
        keyed: dict[tuple[str, str], Row] = {}
        for c in self.clusters:
            keyed[("cluster", str(c.get("name", "")))] = c
        for a in self.accounts:
            keyed[("account", str(a.get("id", "")))] = a
        return keyed


async def read_snapshot(rpc: RpcClient, max_accounts: int = MAX_ACCOUNTS) -> Snapshot:
    clusters = await rpc.call("cluster.list", {})
    accounts: list[Row] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if cursor is not None:
            params["cursor"] = cursor
        page = await rpc.call("account.list", params)
        page = page if isinstance(page, Mapping) else {}
        accounts.extend(a for a in page.get("items", []) if isinstance(a, Mapping))
        cursor = page.get("next_cursor") or None
        if cursor is None or len(accounts) >= max_accounts:
            break
    listed = clusters if isinstance(clusters, list) else []
    return Snapshot(
        clusters=tuple(c for c in listed if isinstance(c, Mapping)),
        accounts=tuple(accounts[:max_accounts]),
        complete=cursor is None,
    )


def render(snapshot: Snapshot) -> list[str]:
    """The two tables, as `--once` prints them and the live view redraws them."""
    lines = tables.clusters(list(snapshot.clusters)).splitlines()
    lines.append("")
    lines.extend(tables.accounts(list(snapshot.accounts)).splitlines())
    if not snapshot.complete:
        lines.append(f"(the first {len(snapshot.accounts)} accounts)")
    return lines


def changes(
    before: Mapping[tuple[str, str], Row], after: Mapping[tuple[str, str], Row]
) -> list[tuple[str, Change, Row]]:
    """What a watcher prints between two reads: rows added, changed, gone (in table order)."""
    found: list[tuple[str, Change, Row]] = []
    for key, row in after.items():
        old = before.get(key)
        if old is None:
            found.append((key[0], "ADDED", row))
        elif _significant(old) != _significant(row):
            found.append((key[0], "MODIFIED", row))
    found.extend((key[0], "DELETED", row) for key, row in before.items() if key not in after)
    return found


def _significant(row: Row) -> dict[str, Any]:
    # A cluster's heartbeat moves `last_seen` every few seconds: that is no change to report.
    return {k: v for k, v in row.items() if k not in IGNORED}


def change_line(kind: str, change: Change, row: Row) -> str:
    """One row as its table shows it, after its kind: `account  <id> <slug> ready ...`."""
    render_row = tables.clusters if kind == "cluster" else tables.accounts
    text = render_row([row]).splitlines()[-1]
    return f"{kind:<8} {text}{'  (gone)' if change == 'DELETED' else ''}"


def change_json(kind: str, change: Change, row: Row) -> str:
    return json.dumps({"kind": kind, "type": change, "object": row}, sort_keys=True)


async def watch(args: argparse.Namespace, rpc: RpcClient, out: TextIO, err: TextIO) -> None:
    """The `fabric watch` command (errors of the first read propagate as for every command)."""
    first = await read_snapshot(rpc)
    if args.once:
        if args.json:
            print(json.dumps({"clusters": list(first.clusters), "accounts": list(first.accounts)},
                             indent=2, sort_keys=True), file=out)
        else:
            print("\n".join(render(first)), file=out)
        return
    follower = Follower(rpc, out, err, interval=args.interval, as_json=args.json)
    await _until_signalled(follower.run(first))


class Follower:
    """Reads the system every `interval` and shows it: redrawn on a terminal, else as changes."""

    def __init__(
        self, rpc: RpcClient, out: TextIO, err: TextIO, *, interval: float, as_json: bool = False,
        live: bool | None = None,
    ) -> None:
        self.rpc = rpc
        self.out = out
        self.err = err
        self.interval = interval
        self.as_json = as_json
        # JSON is for programs: never redrawn, even on a terminal.
        self.block = LiveBlock(out) if (is_live(out) if live is None else live) and not as_json else None
        self.shown: dict[tuple[str, str], Row] = {}
        self.failure: str | None = None

    async def run(self, first: Snapshot) -> None:
        snapshot = first
        try:
            while True:
                self._show(snapshot)
                await asyncio.sleep(self.interval)
                snapshot = await self._read(snapshot)
        finally:
            if self.block is not None:
                self.block.close(erase=False)

    async def _read(self, last: Snapshot) -> Snapshot:
        try:
            snapshot = await read_snapshot(self.rpc)
        except (Unreachable, RpcError) as exc:
            if self.block is None and str(exc) != self.failure:
                _print(self.err, f"fabric watch: {exc} (retrying every {self.interval:g}s)")
            self.failure = str(exc)
            return last
        if self.failure is not None and self.block is None:
            _print(self.err, "fabric watch: reading again")
        self.failure = None
        return snapshot

    def _show(self, snapshot: Snapshot) -> None:
        rows = snapshot.rows()
        if self.block is not None:
            read_at = time.strftime("%H:%M:%S")
            top = f"Every {self.interval:g}s: fabric watch   {self.rpc.url}   {read_at}"
            if self.failure is not None:
                top += f"   (stale: {self.failure})"
            self.block.draw([top, "", *render(snapshot)])
        elif not self.shown and not self.as_json:
            _print(self.out, "\n".join(render(snapshot)))
        else:
            for kind, change, row in changes(self.shown, rows):
                line = change_json(kind, change, row) if self.as_json else change_line(kind, change, row)
                _print(self.out, line)
        self.shown = rows


def _print(stream: TextIO, text: str) -> None:
    # A reader that went away (`fabric watch | head`) ends nothing but its own output.
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream, flush=True)


async def _until_signalled(work: Awaitable[None]) -> None:
    """Run `work` until it ends or SIGINT/SIGTERM arrives (then cancel it and return)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for pending in (task, waiter):
            pending.cancel()
        _ = await asyncio.gather(task, waiter, return_exceptions=True)
    if task.done() and not task.cancelled():
        task.result()  # what ended the work early (an RpcError...) ends the command
