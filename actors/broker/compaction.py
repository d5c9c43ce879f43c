"""Compaction rounds for the broker actor: when one starts, and the hand-offs of a round.

The actor owns the log; the cleaner thread only reads sealed segments and
writes new files. A round goes:

1. on the actor, at most every `clean_interval` (and right after a round, so a
   busy log is cleaned back to back): `EventLog.cleaning_due` (the dirty ratio,
   a tombstone due, or a log at rest with something left) and, if so, a plan;
2. in the cleaner thread: `cleaner.clean` writes the outputs (`Cleaned`);
3. on the actor: `EventLog.apply_cleaning` swaps them in, unless a consumer
   is now behind a tombstone the round drops (then the outputs are discarded
   and the next check tries again);
4. in the cleaner thread: `cleaner.commit` makes the swap durable and final
   (`Committed`); on the actor the round ends.

A failure while writing outputs is logged (`log_cleaning_failed`) and the round
is dropped: the log is untouched. A failure while committing crashes the broker:
recovery completes the round from the files. One round runs at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from actors.broker import cleaner
from actors.broker.cleaner import CleanPlan, CleanResult
from actors.broker.log import EventLog, now_millis
from actors.broker.memory import release_free_heap
from actors.broker.segments import CLEANED, CorruptLog
from actors.broker.settings import BrokerSettings


@dataclass(frozen=True, slots=True)
class Cleaned:
    result: CleanResult | None  # None: writing the outputs failed (logged)
    reason: str
    started: float


@dataclass(frozen=True, slots=True)
class Committed:
    result: CleanResult
    reason: str
    started: float


class Compaction:
    def __init__(
        self, log: EventLog, settings: BrokerSettings, logger: structlog.stdlib.BoundLogger
    ) -> None:
        self._log = log
        self._settings = settings
        self._logger = logger
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-cleaner")
        self._last_check = 0.0
        self.running = False
        self.rounds = 0

    def maybe_start(self, *, floor: int, durable: int) -> Coroutine[Any, Any, Cleaned] | None:
        """A round to run (the caller runs it as a task and hands back its message), or None."""
        now = time.monotonic()
        if self.running or now - self._last_check < self._settings.clean_interval:
            return None
        self._last_check = now
        now_ms = now_millis()
        retention_ms = int(self._settings.tombstone_retention * 1000)
        reason = self._log.cleaning_due(now_ms=now_ms, floor=floor, retention_ms=retention_ms)
        if reason is None:
            return None
        plan = self._log.plan_cleaning(
            now_ms=now_ms, floor=floor, retention_ms=retention_ms, durable=durable
        )
        self.running = True
        return self._clean(plan, reason, now)

    async def _clean(self, plan: CleanPlan, reason: str, started: float) -> Cleaned:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._thread, cleaner.clean, plan)
        except CorruptLog:
            raise  # a sealed segment went bad under us: stop, and refuse to start on it
        except Exception as exc:
            self._logger.error("log_cleaning_failed", reason=reason, error=repr(exc))
            return Cleaned(None, reason, started)
        return Cleaned(result, reason, started)

    def apply(self, message: Cleaned, floor: int) -> Coroutine[Any, Any, Committed] | None:
        """Swap the outputs in; the commit to run next, or None when the round ends here."""
        result = message.result
        if result is None:
            self.running = False
            return None
        if not self._log.apply_cleaning(result, floor):
            cleaner.discard(result)
            self.running = False
            self._logger.info("log_cleaning_deferred", reason="a consumer is behind a dropped tombstone")
            return None
        return self._commit(result, message.reason, message.started)

    async def _commit(self, result: CleanResult, reason: str, started: float) -> Committed:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, cleaner.commit, result, self._log.directory)
        return Committed(result, reason, started)

    def committed(self, message: Committed) -> None:
        self._log.cleaning_committed()
        release_free_heap()  # a round is the broker's biggest transient peak
        self.running = False
        self.rounds += 1
        self._last_check = 0.0  # a busy log may be due again already: look at the next tick
        result = message.result
        self._logger.info(
            "log_cleaned",
            reason=message.reason,
            dropped=result.dropped,
            stubs=result.stubs,
            bytes_before=result.bytes_before,
            bytes_after=result.bytes_after,
            segments=self._log.segments,
            keys=self._log.index.keys,
            tombstones=self._log.index.tombstones,
            seconds=round(time.monotonic() - message.started, 3),
        )

    def shutdown(self) -> None:
        """Wait for a running step: a commit must finish (recovery would complete it anyway).
        Outputs of a round that will not be committed now are removed, not left to recovery."""
        self._thread.shutdown(wait=True)
        for leftover in self._log.directory.glob(f"*{CLEANED}"):
            leftover.unlink()
