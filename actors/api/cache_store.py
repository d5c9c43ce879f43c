"""The SQLite query cache (stdlib sqlite3), the default: one file per API process.

Implements `core.cache.AccountCache` (read its contract: generation-guarded,
order-free, one transaction per batch). Only the cache actor holds an
instance; the rebuild holds its own on a fresh file. Two connections:

- The writer: one call at a time, in the order they were made (a lock). A small
  apply (the domain actor's one event, the driver's live batch) runs on the
  event loop's own thread: a commit that does not fsync (below) is tens of
  microseconds, where the trip to a worker thread and back cost ~250 us of
  CPU per apply, four of them on every account's way to ready (the create's own
  event, the driver's copy of it, two clusters' outcomes): 1 ms of the API's
  7.9 ms per create-to-ready, measured. A large apply (a replay's pages), the
  replay mark and checkpoints run on one dedicated worker thread, so they never
  stall the loop. The connection checkpoints only by hand: `sync` starts a
  checkpoint (on the worker thread) once the WAL has grown past
  `CHECKPOINT_WAL_BYTES`, SQLite's own default, instead of whichever commit
  crossed it doing so on the loop. It is SQLite's passive checkpoint, which never
  waits for a reader.
- Reads, on the event loop's thread: in WAL mode a reader never waits for the
  writer and sees every commit made before it began, and one account's read is
  an index lookup in a file the page cache holds (35 us here).

`sync` fsyncs the WAL on another thread (actors/api/cache_file.py says why
commits are not fsynced). Any sqlite3 error (disk full, a corrupt or locked
file) is `DependencyUnavailable("cache")`; nothing of the batch was applied.
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
from core.account import AccountRecord, ClusterReport, StatusHint
from core.cache import CacheView, Change, ChangeListener
from core.errors import DependencyUnavailable

T = TypeVar("T")
log = structlog.get_logger()

INLINE_CHANGES = 64  # an apply of at most this many changes runs on the loop's thread
CHECKPOINT_WAL_BYTES = 1000 * 4096  # SQLite's autocheckpoint: 1,000 pages


class SqliteCache:
    """The async `AccountCache`: writes on the writer connection's thread, reads on the loop's."""

    shared = False  # one file per API process

    def __init__(
        self, file: SqliteFile, reader: SqliteFile | None, executor: ThreadPoolExecutor
    ) -> None:
        self._file = file
        self._reader = reader
        self._executor = executor
        self._writing = asyncio.Lock()
        self._checkpointing = False

    @classmethod
    async def open(cls, path: Path | str) -> SqliteCache:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-cache")
        try:
            file = await _on(executor, functools.partial(SqliteFile, path, any_thread=True))
            await _on(executor, file.checkpoint_by_hand, CHECKPOINT_WAL_BYTES)
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

    async def _run(self, call: Callable[..., T], *args: Any, here: bool = False) -> T:
        """A call on the writer's connection: on the loop's thread when `here`, else on the
        writer's; never two at once."""
        async with self._writing:
            try:
                if here:
                    return call(*args)
                return await _on(self._executor, call, *args)
            except sqlite3.Error as exc:
                # The caller learns the cache is unavailable; nothing was applied (one transaction).
                raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, call: Callable[..., T], *args: Any) -> T:
        """A read (`call` a `SqliteFile` method), here on the loop's thread; on the writer's
        connection for an in-memory database, which only that connection sees."""
        if self._reader is None:
            return await self._run(call, self._file, *args, here=True)
        try:
            return call(self._reader, *args)
        except sqlite3.Error as exc:
            raise DependencyUnavailable("cache", f"{type(exc).__name__}: {exc}") from exc

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        return await self._run(self._file.apply, list(changes), here=len(changes) <= INLINE_CHANGES)

    async def sync(self) -> None:
        try:
            await asyncio.to_thread(fsync_path, self._file.wal_path)
        except OSError as exc:
            raise DependencyUnavailable("cache", f"fsync of the WAL failed: {exc}") from exc
        if not self._checkpointing and self._wal_bytes() > CHECKPOINT_WAL_BYTES:
            self._checkpointing = True
            try:
                await self._run(functools.partial(self._file.checkpoint, wait=False))
            finally:
                self._checkpointing = False

    def _wal_bytes(self) -> int:
        try:
            return self._file.wal_path.stat().st_size
        except OSError:
            return 0  # an in-memory database, or no WAL yet

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

    async def list_after(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> list[AccountRecord]:
        return await self._read(SqliteFile.list_after, after, limit, hint)

    async def reports(self, account_ids: list[str]) -> dict[str, list[ClusterReport]]:
        return await self._read(SqliteFile.reports, list(account_ids))

    async def known_clusters(self) -> list[str]:
        return await self._read(SqliteFile.known_clusters)

    async def find(self, account_id: str | None, slug: str | None) -> CacheView:
        return await self._read(SqliteFile.find, account_id, slug)

    async def page(
        self, after: int | None, limit: int, hint: StatusHint | None = None
    ) -> CacheView:
        return await self._read(SqliteFile.page, after, limit, hint)

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
            await self._run(self._file.close)
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
