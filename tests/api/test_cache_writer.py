"""The SQLite cache's writer: small applies on the loop's thread, large ones on the writer's
thread, never two at once; the WAL checkpointed by hand once `sync` finds it past its limit,
and cut back by the next commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import actors.api.cache_store as cache_store
from actors.api.cache_file import SqliteFile
from actors.api.cache_store import INLINE_CHANGES, SqliteCache
from core.cache import Change
from core.events import AccountCreated

AT = "2026-01-01T00:00:00Z"


def created(n: int) -> Change:
    account = f"5f0c3f7e-3c1a-4c55-9d3e-{n:012d}"
    return Change(AccountCreated(account, f"acme-{n}", f"Acme {n}", "ops@acme.example",
                                 f"acc-acme-{n}", AT, 1), AT)


class ThreadSeen:
    """Records the thread each apply of the wrapped file ran on."""

    def __init__(self, file: SqliteFile) -> None:
        self.apply_there = file.apply
        self.threads: list[int] = []
        self.running = 0
        self.overlapped = False

    def apply(self, changes: list[Change]) -> list[bool]:
        self.running += 1
        self.overlapped |= self.running > 1
        self.threads.append(threading.get_ident())
        try:
            return self.apply_there(changes)
        finally:
            self.running -= 1


async def test_small_applies_run_on_the_loop_and_large_ones_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = await SqliteCache.open(tmp_path / "cache.sqlite3")
    seen = ThreadSeen(cache._file)
    monkeypatch.setattr(cache._file, "apply", seen.apply)
    try:
        loop_thread = threading.get_ident()
        assert await cache.apply([created(1)]) == [True]
        big = [created(n) for n in range(2, INLINE_CHANGES + 3)]
        assert await cache.apply(big) == [True] * len(big)
        assert seen.threads[0] == loop_thread
        assert seen.threads[1] != loop_thread
        # Both kinds at once still write one at a time, in the order asked.
        many = [created(n) for n in range(1000, 1000 + INLINE_CHANGES + 1)]
        results = await asyncio.gather(cache.apply(many), cache.apply([created(999)]))
        assert list(results) == [[True] * len(many), [True]]
        assert not seen.overlapped
        assert (await cache.get_by_id(f"5f0c3f7e-3c1a-4c55-9d3e-{999:012d}")) is not None
    finally:
        await cache.close()


async def test_sync_checkpoints_a_grown_wal_and_the_next_commit_cuts_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 64 * 1024
    monkeypatch.setattr(cache_store, "CHECKPOINT_WAL_BYTES", limit)
    path = tmp_path / "cache.sqlite3"
    cache = await SqliteCache.open(path)
    wal = cache._file.wal_path
    try:
        n = 0
        while wal.stat().st_size <= limit:  # commits alone never checkpoint
            n += 1
            await cache.apply([created(n)])
            assert n < 10_000, "the WAL never grew"
        main_before = path.stat().st_size
        await cache.sync()
        assert path.stat().st_size > main_before  # the frames went into the main file
        await cache.apply([created(n + 1)])
        assert wal.stat().st_size <= limit
        assert await cache.get_by_id(f"5f0c3f7e-3c1a-4c55-9d3e-{n + 1:012d}") is not None
    finally:
        await cache.close()
