"""Both query caches behind one face, so one suite runs against each (ids `sqlite`, `postgres`).

    caches = SqliteCaches(tmp_path) | PgCaches(dsn)
    cache = await caches.fresh()            # an empty cache of its own
    other = await caches.another(cache)     # a second handle on the same store (another process)
    state = await caches.state(changes, 2)  # what a fresh cache fed these (2 per batch) holds
    caches.break_reports(cache, monkeypatch)   # writing a report now fails mid-batch
    await caches.close()                    # every cache it opened
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from actors.api.cache_pg import PgCache
from actors.api.cache_store import SqliteCache
from core.cache import AccountCache, Change

Dump = dict[str, list[tuple[Any, ...]]]


class Caches(Protocol):
    kind: str

    async def fresh(self) -> AccountCache: ...

    async def another(self, cache: AccountCache) -> AccountCache: ...

    async def state(self, changes: Sequence[Change], batch: int = 1) -> Dump: ...

    def break_reports(self, cache: AccountCache, monkeypatch: pytest.MonkeyPatch) -> None: ...

    async def close(self) -> None: ...


async def dump(cache: AccountCache) -> Dump:
    assert isinstance(cache, SqliteCache | PgCache)
    return await cache.dump()


async def feed(cache: AccountCache, changes: Sequence[Change], batch: int = 1) -> None:
    for start in range(0, len(changes), batch):
        _ = await cache.apply(changes[start : start + batch])


class _Opened:
    def __init__(self) -> None:
        self.opened: list[AccountCache] = []

    def keep(self, cache: AccountCache) -> AccountCache:
        self.opened.append(cache)
        return cache

    async def close(self) -> None:
        for cache in reversed(self.opened):
            await cache.close()
        self.opened.clear()


class SqliteCaches(_Opened):
    kind = "sqlite"

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory
        self._files = 0

    async def fresh(self) -> AccountCache:
        self._files += 1
        return self.keep(await SqliteCache.open(self._directory / f"cache-{self._files}.sqlite3"))

    async def another(self, cache: AccountCache) -> AccountCache:
        assert isinstance(cache, SqliteCache)
        return self.keep(await SqliteCache.open(cache.path))

    async def state(self, changes: Sequence[Change], batch: int = 1) -> Dump:
        cache = await SqliteCache.open(":memory:")  # no fsync: many of these per test
        try:
            await feed(cache, changes, batch)
            return await cache.dump()
        finally:
            await cache.close()

    def break_reports(self, cache: AccountCache, monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(*_args: object) -> bool:
            raise sqlite3.OperationalError("disk I/O error")

        assert isinstance(cache, SqliteCache)
        monkeypatch.setattr(cache._file, "_report", crash)


class PgCaches(_Opened):
    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self._schemas = 0
        self._scratch: PgCache | None = None

    async def fresh(self) -> AccountCache:
        self._schemas += 1
        return self.keep(await PgCache.open(self.dsn, schema=f"cache_{self._schemas}"))

    async def another(self, cache: AccountCache) -> AccountCache:
        assert isinstance(cache, PgCache)
        return self.keep(await PgCache.open(self.dsn, schema=cache.schema))

    async def state(self, changes: Sequence[Change], batch: int = 1) -> Dump:
        # One scratch schema emptied each time: a schema per call would be slow.
        if self._scratch is None:
            fresh = await self.fresh()
            assert isinstance(fresh, PgCache)
            self._scratch = fresh
        scratch = self._scratch
        async with scratch._connection() as conn:
            await conn.execute(
                f"TRUNCATE {scratch.schema}.accounts, {scratch.schema}.reports, "
                f"{scratch.schema}.clusters RESTART IDENTITY"
            )
        scratch._invalidate()
        await feed(self._scratch, changes, batch)
        return await self._scratch.dump()

    def break_reports(self, cache: AccountCache, monkeypatch: pytest.MonkeyPatch) -> None:
        async def crash(*_args: object) -> bool:
            raise ConnectionResetError("the server closed the connection")

        assert isinstance(cache, PgCache)
        monkeypatch.setattr(cache, "_report", crash)
