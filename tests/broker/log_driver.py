"""Driving an `EventLog` directly in tests: keyed appends, whole cleaning rounds, full reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from actors.broker import cleaner
from actors.broker.cleaner import CleanResult, Step
from actors.broker.index import DedupWindow
from actors.broker.log import Append, EventLog

DAY_MS = 24 * 3600 * 1000


def eid(n: int) -> bytes:
    return uuid.UUID(int=n).bytes


def open_log(directory: Path, *, segment_bytes: int = 600, window: int = 1) -> EventLog:
    return EventLog.open(directory, segment_bytes=segment_bytes, dedup=DedupWindow(count=window))


def clean_round(
    log: EventLog,
    *,
    now_ms: int = 0,
    floor: int | None = None,
    retention_ms: int = DAY_MS,
    step: Step = cleaner.no_step,
) -> CleanResult | None:
    """One whole round as the broker runs it (the log synced first); None if apply refused it."""
    EventLog.sync_fds(log.take_dirty())
    floor = log.head if floor is None else floor
    plan = log.plan_cleaning(now_ms=now_ms, floor=floor, retention_ms=retention_ms, durable=log.head)
    result = cleaner.clean(plan, step)
    if not log.apply_cleaning(result, floor):
        cleaner.discard(result)
        return None
    cleaner.commit(result, log.directory, step)
    log.cleaning_committed()
    return result


def read_all(log: EventLog) -> list[tuple[int, bytes, bytes]]:
    got: list[tuple[int, bytes, bytes]] = []
    while chunk := log.read(got[-1][0] if got else 0, 1000, log.head):
        got += chunk
    return got


def newest_by_key(records: list[tuple[int, bytes, bytes]]) -> dict[bytes, tuple[int, bytes]]:
    out: dict[bytes, tuple[int, bytes]] = {}
    for seq, key, env in records:
        out[key] = (seq, env)
    return out


@dataclass
class Writer:
    """Appends keyed updates and remembers what it wrote (the model a log is checked against)."""

    log: EventLog
    written: list[tuple[int, bytes, bytes, bool]] = field(default_factory=list)  # seq, key, env, tomb
    counter: int = 0

    def put(self, key: str, *, tombstone: bool = False, now_ms: int = 0) -> int:
        self.counter += 1
        env = f"{key}#{self.counter}{'-gone' if tombstone else ''}".encode()
        (seq,) = self.log.append([Append(eid(self.counter), key.encode(), tombstone, env)], now_ms)
        self.written.append((seq, key.encode(), env, tombstone))
        return seq

    def updates(self, count: int, keys: int, *, now_ms: int = 0) -> None:
        for i in range(count):
            self.put(f"account:k{i % keys}", now_ms=now_ms)

    def newest(self) -> dict[bytes, tuple[int, bytes]]:
        return newest_by_key([(seq, key, env) for seq, key, env, _t in self.written])
