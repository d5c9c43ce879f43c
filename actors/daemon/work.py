"""One reconcile of one account, level-triggered: read the current desired state, act, report.

`AccountWork.run(account_id, attempt)` reads what the store says NOW (not the
event that queued the account), so a missed, repeated or superseded event
costs nothing:

- live -> `Reconciler.ensure` -> `namespace.provisioned` at the desired
  generation;
- a pending tombstone (or an orphan the resync found by label) ->
  `Reconciler.remove` -> `namespace.deleted` at the tombstone's generation;
- nothing known -> nothing to do.

A report is published only when what this process last reported for the
account changed (kind, generation, detail), so a resync that finds nothing to
do says nothing; a restart reports every account once more. Each report has a
fresh event id: a report is a state (the newest record of its key wins), not a
fact to apply once, and a deterministic id would let the bus's dedup window
drop a report that returns to an earlier state (provisioned, failed,
provisioned), leaving the stale one as the key's newest record. A redo after a
crash therefore stores the same state twice, which compaction folds and the
cache ignores. The publish waits for the bus, retrying while it is away.

The answer (`Verdict`) tells the caller's queue what next: `Synced` (forget
the backoff), `Retry` (temporary error: back off; after `failed_after`
attempts in a row the failure is reported with `attempts`, and retries go on),
`Final` (refused: reported at once, retried only at resync or on a new
generation, which also starts the attempt count over), `Poll` (a namespace is
terminating: look again shortly, not a failure).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

import structlog

from actors.daemon import metrics
from actors.daemon.reconcile import (
    Provisioned,
    Reconciler,
    Refused,
    Removed,
    Removing,
    Waiting,
    describe,
)
from actors.daemon.state import Desired, Tombstone
from core.backoff import Backoff, Retry
from core.bus import BusRejected, BusUnavailable, EventPublisher
from core.events import (
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    to_envelope,
)
from core.tenancy import TemporaryKubeError

MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Synced:
    deleted: Tombstone | None = None  # a deletion that is now reported


@dataclass(frozen=True, slots=True)
class TryLater:
    reason: str


@dataclass(frozen=True, slots=True)
class Final:
    reason: str


@dataclass(frozen=True, slots=True)
class Poll:
    reason: str


Verdict = Synced | TryLater | Final | Poll


@dataclass(frozen=True, slots=True)
class Reported:
    kind: str  # provisioned | failed | deleted
    generation: int
    detail: str


class Reports:
    """What this process last reported per account (in memory: a restart reports once more)."""

    def __init__(self) -> None:
        self._last: dict[str, Reported] = {}

    def get(self, account_id: str) -> Reported | None:
        return self._last.get(account_id)

    def set(self, account_id: str, reported: Reported) -> None:
        self._last[account_id] = reported

    def drop(self, account_id: str) -> None:
        self._last.pop(account_id, None)

    def in_sync(self, account_id: str, generation: int) -> bool:
        last = self._last.get(account_id)
        return last is not None and last.kind == "provisioned" and last.generation == generation

    def failed(self) -> int:
        """Accounts whose last report is a failure."""
        return sum(1 for r in self._last.values() if r.kind == "failed")


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where a worker reads the current desired state (the actor's store and orphans)."""

    live: Callable[[str], Desired | None]
    deleting: Callable[[str], Tombstone | None]


class CrashHook:
    """Fault-test hook: die the hard way (SIGKILL, no cleanup) at a named point, once.

    The marker file makes it one-shot across restarts, so a supervisor that restarts us
    with the same environment sees one crash, then the redo.
    """

    def __init__(self, point: str | None, marker: Path) -> None:
        self._point = point
        self._marker = marker

    def __call__(self, point: str, log: structlog.stdlib.BoundLogger) -> None:
        if self._point != point or self._marker.exists():
            return
        self._marker.write_text(point)
        log.warning("crash_point_reached", point=point)
        os.kill(os.getpid(), signal.SIGKILL)


class AccountWork:
    """Shared by every worker of one daemon incarnation."""

    def __init__(
        self,
        *,
        cluster: str,
        reconciler: Reconciler,
        publisher: EventPublisher,
        lookup: Lookup,
        reports: Reports,
        backoff: Backoff,
        failed_after: int,
        crash: CrashHook,
    ) -> None:
        self._cluster = cluster
        self._reconciler = reconciler
        self._publisher = publisher
        self._lookup = lookup
        self._reports = reports
        self._backoff = backoff
        self._failed_after = failed_after
        self._crash = crash
        self._log = structlog.get_logger().bind(cluster=cluster)
        self._metrics = metrics.for_cluster(cluster)
        self._metrics.watch_failed(reports.failed)

    async def run(self, account_id: str, attempt: int) -> Verdict:
        """One pass; `attempt` counts this one among consecutive failed passes (1 = first)."""
        desired = self._lookup.live(account_id)
        started = time.perf_counter()
        if desired is not None:
            verdict = await self._ensure(desired, attempt)
        else:
            tomb = self._lookup.deleting(account_id)
            if tomb is None:
                self._log.debug("account_unknown", account_id=account_id)
                return Synced()
            verdict = await self._remove(tomb, attempt)
        self._metrics.reconcile_took(time.perf_counter() - started, attempt)
        return verdict

    async def _ensure(self, desired: Desired, attempt: int) -> Verdict:
        a = desired.account
        log = self._log.bind(
            account_id=a.account_id, event_id=desired.event_id, namespace=a.namespace,
            generation=a.generation, plan=a.plan, suspended=a.suspended,
        )
        try:
            outcome = await self._reconciler.ensure(desired.tenant)
        except TemporaryKubeError as exc:
            self._metrics.reconciled(metrics.RETRY)
            if attempt >= self._failed_after:
                await self._report_failed(desired, exc.reason, attempt, log)
            return TryLater(exc.reason)
        self._metrics.reconciled(describe(outcome))
        match outcome:
            case Provisioned(uid=uid, resource_version=rv):
                log.info(describe(outcome), uid=uid, resource_version=rv, attempts=attempt)
                self._crash("after_create", log)
                report: DomainEvent = NamespaceProvisioned(
                    a.account_id, self._cluster, a.namespace, uid, rv, a.generation
                )
                await self._publish(
                    a.account_id, report, Reported("provisioned", a.generation, uid),
                    desired.correlation_id, log,
                )
                return Synced()
            case Refused(reason=reason):
                log.warning(describe(outcome), reason=reason, attempts=attempt)
                await self._report_failed(desired, reason, attempt, log)
                return Final(reason)
            case Waiting(reason=reason):
                log.info(describe(outcome), reason=reason)
                return Poll(reason)
            case _:
                assert_never(outcome)

    async def _report_failed(
        self, desired: Desired, reason: str, attempt: int, log: structlog.stdlib.BoundLogger
    ) -> None:
        a = desired.account
        reason = reason[:MAX_REASON]
        report = NamespaceProvisionFailed(
            a.account_id, self._cluster, a.namespace, reason, a.generation, attempt
        )
        await self._publish(
            a.account_id, report, Reported("failed", a.generation, reason),
            desired.correlation_id, log,
        )

    async def _remove(self, tomb: Tombstone, attempt: int) -> Verdict:
        log = self._log.bind(
            account_id=tomb.account_id, event_id=tomb.event_id, namespace=tomb.namespace,
            generation=tomb.generation,
        )
        try:
            outcome = await self._reconciler.remove(tomb.account_id)
        except TemporaryKubeError as exc:
            self._metrics.reconciled(metrics.RETRY)
            return TryLater(exc.reason)
        self._metrics.reconciled(describe(outcome))
        match outcome:
            case Removing(namespaces=names):
                log.info(describe(outcome), namespaces=list(names))
                return Poll(f"namespaces {', '.join(names)} terminating")
            case Removed(namespaces=names):
                log.info(describe(outcome), namespaces=list(names), attempts=attempt)
                self._crash("after_create", log)
                report = NamespaceDeleted(
                    tomb.account_id, self._cluster, tomb.namespace, tomb.generation
                )
                await self._publish(
                    tomb.account_id, report, Reported("deleted", tomb.generation, ""),
                    tomb.correlation_id, log,
                )
                self._reports.drop(tomb.account_id)
                return Synced(deleted=tomb)
            case Refused(reason=reason):
                log.error(describe(outcome), reason=reason)
                return Final(reason)
            case _:
                assert_never(outcome)

    async def _publish(
        self,
        account_id: str,
        report: DomainEvent,
        reported: Reported,
        correlation_id: str,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        if self._reports.get(account_id) == reported:
            return
        envelope = to_envelope(
            report,
            correlation_id=correlation_id,
        )
        retry = Retry(self._backoff)
        while True:
            try:
                receipts = await self._publisher.publish([envelope])
            except BusRejected as exc:
                log.error("outcome_rejected", outcome=envelope.type, reason=str(exc))
                return
            except (BusUnavailable, OSError, TimeoutError) as exc:
                delay = retry.next_delay()
                log.warning("outcome_publish_retried", reason=str(exc), delay=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            break
        receipt = receipts[0] if receipts else None
        log.info(
            "outcome_published",
            outcome=envelope.type,
            outcome_event_id=envelope.event_id,
            outcome_seq=receipt.seq if receipt else None,
            duplicate=receipt.duplicate if receipt else None,
        )
        self._crash("after_publish", log)
        self._reports.set(account_id, reported)
