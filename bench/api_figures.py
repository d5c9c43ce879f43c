"""Figures 1 and 2: account.create and account.get throughput at 16 and 64 clients.

account.create (`create`): closed-loop creates through the API of a
two-cluster `fabric up`, against bare asyncpg running the legacy create
transaction itself: `actors.legacy.db.insert_account`, the very function and
SQL the API's legacy actor runs, on the same PostgreSQL server, in a
database of its own (so the API's outbox relay never sees its rows), with a
pool of as many connections as the API was seen to use for creates. That
number is measured, not assumed: during a warm-up at 64 clients the bench
samples `pg_stat_activity` and counts the backends caught inside the create
statement. Goal: >= 0.6x. The daemons provision every account created here in
the background; the figure waits for that to finish before the next one.

account.get (`get`): closed-loop gets of one ready account by id, against a
bare aiohttp handler in its own process (bench/bare_api.py) answering with
the same account from memory. Goal: >= 0.7x.

Within each run, system and baseline take turns in `slices` slices each
(`bench.load.alternate`), so a machine whose speed moves within seconds weighs
on both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from actors.legacy import db
from bench.context import Bench
from bench.figures import BenchError, Figure, Goal, figure
from bench.load import One, Target, alternate, closed_loop, http_clients
from bench.system import ROOT
from core.envelope import utc_now
from core.events import AccountCreated, to_envelope

CLIENTS = (16, 64)
CREATE_GOAL = Goal(0.6)
GET_GOAL = Goal(0.7)
SAMPLE_INTERVAL = 0.01
BENCH_DATABASE = "fabric_bench_legacy"


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float
    duration: float  # per side and run, in `slices` turns
    slices: int


FULL = Timing(warmup=1.0, duration=4.0, slices=4)
QUICK = Timing(warmup=0.3, duration=0.7, slices=1)


def _create_body(tag: str) -> Callable[[int], bytes]:
    def body(n: int) -> bytes:
        slug = f"c{tag}-{n}"
        return json.dumps({
            "jsonrpc": "2.0", "id": n, "method": "account.create",
            "params": {"name": slug, "owner_email": f"{slug}@bench.example", "slug": slug},
        }).encode()

    return body


def _database_dsn(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def _bare_pool(dsn: str, size: int) -> AsyncIterator[db.Pool]:
    """A pool of `size` on a fresh database of the same server, with the legacy schema."""
    conn = await db.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}"')
        await conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    finally:
        await db.close_connection(conn)
    pool = await db.create_pool(_database_dsn(dsn, BENCH_DATABASE), max_size=size)
    try:
        _ = await db.ensure_schema(pool)
        yield pool
    finally:
        await pool.close()


def _bare_create(pool: db.Pool, tag: str) -> One:
    """The baseline's side: the legacy create transaction on `pool`."""

    async def one(_worker: int, n: int) -> None:
        slug = f"b{tag}-{n}"
        account_id, at = str(uuid.uuid4()), utc_now()
        event = AccountCreated(
            account_id=account_id, slug=slug, name=slug, owner_email=f"{slug}@bench.example",
            namespace=f"acc-{slug}", created_at=at, generation=1,
        )
        await db.insert_account(
            pool, account_id=account_id, slug=slug, name=slug, owner_email=f"{slug}@bench.example",
            namespace=f"acc-{slug}", created_at=datetime.fromisoformat(at),
            event=to_envelope(event, correlation_id=f"bench-{n}", occurred_at=at),
        )

    return one


async def _create_pool_size(dsn: str, stop: asyncio.Event) -> set[int]:
    """Backends caught inside the create statement until `stop`: the API's create connections.
    (The statement opens with a WITH: it is matched by the organization it inserts.)"""
    seen: set[int] = set()
    conn = await db.connect(dsn)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                "AND query ILIKE '%INSERT INTO organizations%'"
            )
            seen.update(int(r["pid"]) for r in rows)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)
    finally:
        await db.close_connection(conn)
    return seen


async def run_create(bench: Bench) -> list[Figure]:
    timing = QUICK if bench.quick else FULL
    system = await bench.system()
    target = Target(system.api_url, system.admin_key)
    tag = secrets.token_hex(3)
    stop = asyncio.Event()
    sampler = asyncio.create_task(_create_pool_size(system.dsn, stop), name="bench:pool-sampler")
    try:
        _ = await closed_loop(target, max(CLIENTS), timing.warmup, timing.warmup * 2,
                              _create_body(f"{tag}w"))
    finally:
        stop.set()
        pids = await sampler
    if not pids:
        # A baseline with a guessed pool is no baseline (a create statement renamed, say).
        raise BenchError("no create statement seen in pg_stat_activity during the warm-up: "
                         "the baseline's pool size is unknown")
    pool_size = len(pids)
    pairs: dict[int, list[tuple[float, float]]] = {c: [] for c in CLIENTS}
    async with _bare_pool(system.dsn, pool_size) as pool:
        for run in range(bench.runs):
            for clients in CLIENTS:
                run_tag = f"{tag}r{run}c{clients}"
                async with http_clients(target, clients, _create_body(run_tag)) as api_side:
                    api, bare = await alternate(
                        clients, timing.warmup, timing.duration,
                        [api_side, _bare_create(pool, run_tag)], slices=timing.slices,
                    )
                pairs[clients].append((api, bare))
    start = time.monotonic()
    await system.quiet(timeout=900.0)
    settle = time.monotonic() - start
    note = (f"the API used {len(pids)} PostgreSQL connection(s) for creates (seen in pg_stat_activity"
            f" at 64 clients); the baseline pool has {pool_size}")
    return [
        figure("create", f"account.create, {clients} clients", "creates/s", "higher", pairs[clients],
               f"bare asyncpg, actors.legacy.db.insert_account, pool of {pool_size}, same server",
               CREATE_GOAL, notes=[note, f"the daemons finished provisioning {settle:.1f}s after"],
               bus=system.bus)
        for clients in CLIENTS
    ]


@contextlib.asynccontextmanager
async def _bare_api(account: dict[str, Any]) -> AsyncIterator[str]:
    """bench/bare_api.py in its own process serving `account`; its URL."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="fabric-bench-") as f:
        json.dump(account, f)
        f.flush()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bare_api", f.name,
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                line = await proc.stdout.readline()
            if not line.strip().isdigit():
                raise BenchError(f"bench.bare_api did not start (said {line!r})")
            yield f"http://127.0.0.1:{int(line)}"
        finally:
            if proc.returncode is None:
                proc.terminate()
            _ = await proc.wait()


async def run_get(bench: Bench) -> list[Figure]:
    timing = QUICK if bench.quick else FULL
    system = await bench.system()
    account = await system.create_ready(f"get-{secrets.token_hex(3)}")
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "account.get",
                       "params": {"id": account["id"]}}).encode()
    # The same JSON the API serves for this account, byte for byte in content.
    served = await system.call("account.get", {"id": account["id"]})
    pairs: dict[int, list[tuple[float, float]]] = {c: [] for c in CLIENTS}
    api_target = Target(system.api_url, system.admin_key)
    async with _bare_api(served) as bare_url:
        bare_target = Target(bare_url)
        for _run in range(bench.runs):
            for clients in CLIENTS:
                async with (
                    http_clients(api_target, clients, lambda _n: body) as api_side,
                    http_clients(bare_target, clients, lambda _n: body) as bare_side,
                ):
                    api, bare = await alternate(clients, timing.warmup, timing.duration,
                                                [api_side, bare_side], slices=timing.slices)
                pairs[clients].append((api, bare))
    return [
        figure("get", f"account.get, {clients} clients", "gets/s", "higher", pairs[clients],
               "bare aiohttp handler in its own process, the same account JSON from memory", GET_GOAL,
               bus=system.bus)
        for clients in CLIENTS
    ]
