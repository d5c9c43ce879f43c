"""The SQLite query cache (stdlib sqlite3), the default: one file per API process.

Implements `core.cache.AccountCache` (read its contract: generation-guarded,
order-free, one transaction per batch). Only the cache actor holds an
instance; the rebuild holds its own on a fresh file. Two connections: the
writer lives on one dedicated worker thread (applies, the replay mark,
checkpoints: a commit may checkpoint the WAL, and a write may wait for a lock),
one call at a time in the order they were made; `sync` fsyncs the WAL on
another thread (actors/api/cache_file.py says why commits are not fsynced).
Reads run on the event loop's own thread, on a second connection: in WAL
mode a reader never waits for the writer and sees every commit made before it
began, and one account's read is an index lookup in a file the page cache
holds (35 us here) where a trip to the worker thread and back cost ~170 us of
CPU and ~250 us of latency on a loaded 2-core machine; an outcome on its way to
`account.wait` passed through several. Any sqlite3 error (disk full, a
corrupt or locked file) is `DependencyUnavailable("cache")`; nothing of the
batch was applied.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from actors.api.cache_file import SCHEMA_VERSION as SCHEMA_VERSION  # what the file records
from actors.api.cache_file import SqliteFile, remove_files
from actors.runtime.files import fsync_dir, fsync_path
from core.account import AccountRecord, ClusterReport
from core.cache import CacheView, Change, ChangeListener
from core.errors import DependencyUnavailable

T = TypeVar("T")
log = structlog.get_logger()


class SqliteCache:
    """The async `AccountCache`: writes on the writer connection's thread, reads on the loop's."""

    shared = False  # one file per API process

    def __init__(
        self, file: SqliteFile, reader: SqliteFile | None, executor: ThreadPoolExecutor
    ) -> None:
        self._file = file
        self._reader = reader
        self._executor = executor

    @classmethod
    async def open(cls, path: Path | str) -> SqliteCache:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-cache")
        try:
            file = await _on(executor, SqliteFile, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        if file.recreated:
            log.warning("cache_recreated", path=str(file.path), reason="old schema")
        if str(path) == ":memory:":  # a second connection would open another, empty database
            return cls(file, None, executor)
        try:
            reader = SqliteFile(file.path)  # the schema is in place: it only connects
        except BaseException:
            await _on(executor, file.close)
            executor.shutdown(wait=False)
            raise
        return cls(file, reader, executor)

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def recreated(self) -> bool:
        return self._file.recreated

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        """A write, on the writer's thread."""
        try:
            return await _on(self._executor, call, *args)
        except sqlite3.Error as exc:
            # The caller learns the cache is unavailable; nothing was applied (one transaction).
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, call: Callable[..., T], *args: Any) -> T:
        """A read (`call` a `SqliteFile` method), here on the loop's thread; on the writer's
        thread for an in-memory database, which only its own connection sees."""
        if self._reader is None:
            return await self._run(call, self._file, *args)
        try:
            return call(self._reader, *args)
        except sqlite3.Error as exc:
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        return await self._run(self._file.apply, list(changes))

    async def sync(self) -> None:
        try:
            await asyncio.to_thread(fsync_path, self._file.wal_path)
        except OSError as exc:
            raise DependencyUnavailable("cache", f"fsync of the WAL failed: {exc}") from exc

    async def claim_feed(self) -> bool:
        return True  # this process is the file's only writer

    async def needs_replay(self) -> bool:
        return await self._read(SqliteFile.needs_replay)

    async def mark_replayed(self) -> None:
        await self._run(self._file.mark_replayed)

    async def get_by_id(self, account_id: str) -> AccountRecord | None:
        return await self._read(SqliteFile.get_by_id, account_id)

    async def get_by_slug(self, slug: str) -> AccountRecord | None:
        return await self._read(SqliteFile.get_by_slug, slug)

    async def list_after(self, after: int | None, limit: int) -> list[AccountRecord]:
        return await self._read(SqliteFile.list_after, after, limit)

    async def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]:
        return await self._read(SqliteFile.reports, list(account_ids))

    async def known_clusters(self) -> list[str]:
        return await self._read(SqliteFile.known_clusters)

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        return await self._read(SqliteFile.find, account_id, slug)

    async def page(self, after: int | None, limit: int) -> CacheView:
        return await self._read(SqliteFile.page, after, limit)

    async def ping(self) -> None:
        await self._run(self._file.ping)

    async def listen(self, changed: ChangeListener) -> None:
        """Nothing to listen to: a file's other writers (rare) are seen by the next read."""

    async def checkpoint(self) -> None:
        await self._run(self._file.checkpoint)

    async def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        return await self._read(SqliteFile.dump)

    async def close(self) -> None:
        try:
            if self._reader is not None:
                self._reader.close()
            await _on(self._executor, self._file.close)
        finally:
            self._executor.shutdown(wait=False)


async def _on(executor: ThreadPoolExecutor, call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(call, *args)
    )


class SqliteRebuild:
    """Where `rebuild_cache` builds a fresh SQLite cache: a file beside it, renamed over it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fresh_path = path.with_name(path.name + ".rebuild")
        self._fresh: SqliteCache | None = None

    async def open_fresh(self) -> SqliteCache:
        remove_files(self._fresh_path)
        self._fresh = await SqliteCache.open(self._fresh_path)
        return self._fresh

    async def promote(self) -> None:
        fresh, self._fresh = self._fresh, None
        assert fresh is not None, "open_fresh first"
        await fresh.checkpoint()  # everything in the main file: it alone is moved
        await fresh.close()
        for stale in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            stale.unlink(missing_ok=True)
        os.replace(self._fresh_path, self.path)
        fsync_dir(self.path.parent)

    async def open_live(self) -> SqliteCache:
        return await SqliteCache.open(self.path)
