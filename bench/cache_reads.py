"""The query cache's read path: what `account.get` asks of the cache actor, in gets/s.

Not a test. Fills a cache with N accounts reported by two clusters, then
times sequential `FindAccount` asks through a `CacheActor` (what one
`account.get` costs the cache: the account, its reports and the known
clusters), and single-event applies (what the domain's read-your-writes
apply costs). SQLite always; PostgreSQL too with `--dsn` (an empty
database of a server you run; the tool creates its own schema and drops it).

    ./bin/fabric bench cache --accounts 100,5000 [--dsn postgresql://...]

Before the known clusters were kept in memory (issue 11), a get ran
`SELECT DISTINCT cluster FROM reports`, so its cost grew with the accounts;
the figures for several sizes show whether it still does.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
import uuid
from pathlib import Path

from actors.api.cache import Applied, ApplyEvents, CacheActor, CacheOpener, FindAccount
from actors.api.cache_pg import PgCache
from actors.api.cache_store import SqliteCache
from actors.legacy import db
from actors.runtime import ActorSystem
from actors.runtime.logging import configure_logging
from core.cache import Change
from core.events import AccountCreated, NamespaceProvisioned

T0 = "2026-01-01T00:00:00.000000Z"
SCHEMA = "fabric_cache_bench"


def _story(n: int) -> tuple[list[str], list[Applied]]:
    ids, items = [], []
    for i in range(n):
        account_id = str(uuid.uuid4())
        ids.append(account_id)
        event = AccountCreated(account_id, f"b{i}", "Bench", "b@x.io", f"acc-b{i}", T0, 1)
        items.append(Applied(Change(event, T0), "bench"))
        for cluster in ("a", "b"):
            report = NamespaceProvisioned(account_id, cluster, f"acc-b{i}", "u", "1", 1)
            items.append(Applied(Change(report, T0), "bench"))
    return ids, items


async def measure(name: str, opener: CacheOpener, accounts: int, reads: int) -> None:
    ids, items = _story(accounts)
    async with ActorSystem(stop_timeout=10.0) as system:
        cache = system.spawn(lambda: CacheActor(opener), name="cache")
        for start in range(0, len(items), 500):
            _ = await cache.ask(ApplyEvents(items[start : start + 500]), timeout=60.0)
        started = time.perf_counter()
        for i in range(reads):
            _ = await cache.ask(FindAccount(account_id=ids[i % len(ids)]))
        get = (time.perf_counter() - started) / reads
        applies = max(1, reads // 10)
        started = time.perf_counter()
        for i in range(applies):
            at = f"2026-01-02T00:00:00.{i:06d}Z"  # each one newer: each one a commit
            report = NamespaceProvisioned(ids[0], "a", "acc-b0", "u", "1", 1)
            _ = await cache.ask(ApplyEvents([Applied(Change(report, at), "bench")]))
        apply = (time.perf_counter() - started) / applies
    print(f"{name:8} accounts={accounts:6}  get: {1 / get:8.0f}/s {get * 1e6:8.1f} us"
          f"  apply: {apply * 1e6:8.1f} us", flush=True)


async def run(sizes: list[int], reads: int, dsn: str | None) -> None:
    for accounts in sizes:
        with tempfile.TemporaryDirectory(prefix="fabric-bench-cache-") as tmp:
            path = Path(tmp) / "cache.sqlite3"
            await measure("sqlite", functools.partial(SqliteCache.open, path), accounts, reads)
        if dsn:
            await _drop_schema(dsn)
            try:
                await measure("postgres", lambda: PgCache.open(dsn, schema=SCHEMA), accounts, reads)
            finally:
                await _drop_schema(dsn)


async def _drop_schema(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await db.close_connection(conn)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fabric bench cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", default="100,5000",
                   help="comma-separated cache sizes to measure (default 100,5000)")
    p.add_argument("--reads", type=int, default=2000, help="gets timed per size (default 2000)")
    p.add_argument("--dsn", help="also measure a PostgreSQL cache in this (scratch) database")
    ns = p.parse_args(argv)
    configure_logging("console", "warning", process="bench")
    sizes = [int(x) for x in ns.accounts.split(",") if x]
    asyncio.run(run(sizes, ns.reads, ns.dsn))
    return 0
