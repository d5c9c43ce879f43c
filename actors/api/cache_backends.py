"""Which query cache a process uses: SQLite in its state dir (default) or a shared PostgreSQL.

`bin/api --cache-dsn postgresql://...` (FABRIC_CACHE_DSN) picks PostgreSQL
(actors/api/cache_pg.py), so several API replicas serve the same accounts;
without it each process keeps its own SQLite file (actors/api/cache_store.py).
The opener is what the cache actor calls at each (re)start; the rebuild
target is what `--rebuild-cache` fills and swaps in.
"""

from __future__ import annotations

from pathlib import Path

from actors.api.cache import CacheOpener
from actors.api.cache_pg import PgCache, PgRebuild
from actors.api.cache_store import SqliteCache, SqliteRebuild
from actors.api.rebuild import RebuildTarget
from core.cache import AccountCache

CACHE_FILE = "cache.sqlite3"


def cache_opener(state_dir: Path, cache_dsn: str | None) -> CacheOpener:
    async def open_cache() -> AccountCache:
        if cache_dsn:
            return await PgCache.open(cache_dsn)
        return await SqliteCache.open(state_dir / CACHE_FILE)

    return open_cache


def rebuild_target(state_dir: Path, cache_dsn: str | None) -> RebuildTarget:
    return PgRebuild(cache_dsn) if cache_dsn else SqliteRebuild(state_dir / CACHE_FILE)
