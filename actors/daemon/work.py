"""One unit of the daemon's work, carried through to the end: reconcile, report, ack.

A work item is either a consumed event (AccountCreated / AccountDeleted with
its broker seq) or a resync finding (a live account's namespace is missing, a
deleted account's namespace is still there). `Worker.run` reconciles it,
retrying temporary Kubernetes errors with capped, jittered backoff for as long
as it takes (it is cancelled at shutdown, which hands the event back unacked);
publishes the outcome event and waits for the bus to confirm it (retrying while
the bus is unavailable); and only then acks the event. A crash anywhere before
the ack means a redo, which is harmless: reconcile is idempotent and the
outcome event's id is derived from the source event, so the bus deduplicates it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

import structlog

from actors.daemon.reconcile import (
    EnsureOutcome,
    Provisioned,
    Reconciler,
    Refused,
    Removed,
    RemoveOutcome,
    describe,
)
from actors.daemon.retry import Backoff
from actors.daemon.state import AccountRecord
from core.bus import BusRejected, BusUnavailable, EventPublisher, EventSubscription
from core.envelope import Envelope
from core.events import (
    AccountCreated,
    AccountDeleted,
    DomainEvent,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    to_envelope,
)
from core.tenancy import TemporaryKubeError, Tenant, outcome_event_id

MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class EventWork:
    seq: int
    envelope: Envelope
    event: AccountCreated | AccountDeleted

    @property
    def account_id(self) -> str:
        return self.event.account_id


@dataclass(frozen=True, slots=True)
class ResyncWork:
    record: AccountRecord

    @property
    def account_id(self) -> str:
        return self.record.account_id


WorkItem = EventWork | ResyncWork


def tenant_of(event: AccountCreated | AccountDeleted) -> Tenant:
    name = event.name if isinstance(event, AccountCreated) else ""
    return Tenant(event.account_id, event.slug, event.namespace, name)


class Worker:
    """Stateless between items; shared by every account's work of one daemon."""

    def __init__(
        self,
        *,
        cluster: str,
        reconciler: Reconciler,
        publisher: EventPublisher,
        subscription: EventSubscription,
        backoff: Backoff,
        crash_at: str | None = None,
        crash_marker: Path | None = None,
    ) -> None:
        self._cluster = cluster
        self._reconciler = reconciler
        self._publisher = publisher
        self._subscription = subscription
        self._backoff = backoff
        self._crash_at = crash_at
        self._crash_marker = crash_marker

    async def run(self, item: WorkItem) -> None:
        match item:
            case EventWork(seq=seq, envelope=env, event=event):
                log = structlog.get_logger().bind(
                    cluster=self._cluster, event_id=env.event_id, account_id=event.account_id,
                    seq=seq, namespace=event.namespace,
                )
                outcome = await self._reconcile(item, log)
                self._maybe_crash("after_create", log)
                report = self._report_event(event, env.event_id, env.correlation_id, outcome)
                await self._publish(report, log)
                self._maybe_crash("after_publish", log)
                await self._ack(seq, log)
            case ResyncWork(record=rec):
                log = structlog.get_logger().bind(
                    cluster=self._cluster, event_id=rec.event_id, account_id=rec.account_id,
                    namespace=rec.namespace, resync=True,
                )
                outcome = await self._reconcile(item, log)
                change = self._report_resync(rec, outcome)
                if change is not None:
                    await self._publish(change, log)
            case _:
                assert_never(item)

    def _maybe_crash(self, point: str, log: structlog.stdlib.BoundLogger) -> None:
        """Fault-test hook: die the hard way (SIGKILL, no cleanup) at a named point, once.

        The marker file makes it one-shot across restarts, so a supervisor that restarts us
        with the same environment sees one crash, then the redo.
        """
        if self._crash_at != point:
            return
        if self._crash_marker is not None:
            if self._crash_marker.exists():
                return
            self._crash_marker.write_text(point)
        log.warning("crash_point_reached", point=point)
        os.kill(os.getpid(), signal.SIGKILL)

    async def _reconcile(
        self, item: WorkItem, log: structlog.stdlib.BoundLogger
    ) -> EnsureOutcome | RemoveOutcome:
        attempt = 0
        while True:
            try:
                outcome = await self._once(item)
            except TemporaryKubeError as exc:
                delay = self._backoff.delay(attempt)
                log.warning("kube_retry_scheduled", reason=exc.reason, attempt=attempt, delay=delay)
            except Exception as exc:  # a bug or a surprising answer: retry, never crash the daemon
                delay = self._backoff.delay(attempt)
                log.error("reconcile_crashed", attempt=attempt, delay=delay, exc_info=exc)
            else:
                event_name = {
                    "created": "namespace_created",
                    "updated": "namespace_updated",
                    "refused": "namespace_refused",
                    "removed": "namespace_removed",
                }[describe(outcome)]
                log.info(event_name, **_fields(outcome), attempts=attempt + 1)
                return outcome
            attempt += 1
            await asyncio.sleep(delay)

    async def _once(self, item: WorkItem) -> EnsureOutcome | RemoveOutcome:
        match item:
            case EventWork(event=AccountCreated() as event):
                return await self._reconciler.ensure(tenant_of(event))
            case EventWork(event=AccountDeleted() as event):
                return await self._reconciler.remove(tenant_of(event))
            case ResyncWork(record=rec) if rec.status == "live":
                return await self._reconciler.ensure(rec.tenant)
            case ResyncWork(record=rec):
                return await self._reconciler.remove(rec.tenant)
        raise AssertionError(f"unhandled work item {item!r}")

    def _report_event(
        self,
        event: AccountCreated | AccountDeleted,
        source_id: str,
        correlation_id: str,
        outcome: EnsureOutcome | RemoveOutcome,
    ) -> Envelope:
        acc, ns, cluster = event.account_id, event.namespace, self._cluster
        report: DomainEvent
        match outcome:
            case Provisioned(uid=uid, resource_version=rv):
                report, kind = NamespaceProvisioned(acc, cluster, ns, uid, rv), "provisioned"
            case Refused(reason=reason):
                report = NamespaceProvisionFailed(acc, cluster, ns, reason[:MAX_REASON])
                kind = "failed"
            case Removed():
                report, kind = NamespaceDeleted(acc, cluster, ns), "deleted"
            case _:
                assert_never(outcome)
        return to_envelope(
            report,
            correlation_id=correlation_id,
            event_id=outcome_event_id(source_id, cluster, kind),
        )

    def _report_resync(
        self, rec: AccountRecord, outcome: EnsureOutcome | RemoveOutcome
    ) -> Envelope | None:
        """Report only what changed: a re-created namespace (new uid) or a removed leftover."""
        acc, ns, cluster = rec.account_id, rec.namespace, self._cluster
        report: DomainEvent
        match outcome:
            case Provisioned(created=False) | Removed(existed=False):
                return None
            case Provisioned(uid=uid, resource_version=rv):
                report = NamespaceProvisioned(acc, cluster, ns, uid, rv)
                event_id = outcome_event_id(rec.event_id, cluster, "provisioned", uid)
            case Refused(reason=reason):
                report = NamespaceProvisionFailed(acc, cluster, ns, reason[:MAX_REASON])
                event_id = outcome_event_id(rec.event_id, cluster, "failed", reason)
            case Removed():
                # Same id as the deletion's own report: the bus keeps one of them.
                report = NamespaceDeleted(acc, cluster, ns)
                event_id = outcome_event_id(rec.event_id, cluster, "deleted")
            case _:
                assert_never(outcome)
        return to_envelope(report, correlation_id=rec.correlation_id, event_id=event_id)

    async def _publish(self, envelope: Envelope, log: structlog.stdlib.BoundLogger) -> None:
        attempt = 0
        while True:
            try:
                receipts = await self._publisher.publish([envelope])
            except BusRejected as exc:
                log.error("outcome_rejected", outcome=envelope.type, reason=str(exc))
                return
            except (BusUnavailable, OSError, TimeoutError) as exc:
                delay = self._backoff.delay(attempt)
                log.warning("outcome_publish_retried", reason=str(exc), delay=delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            receipt = receipts[0] if receipts else None
            log.info(
                "outcome_published",
                outcome=envelope.type,
                outcome_event_id=envelope.event_id,
                outcome_seq=receipt.seq if receipt else None,
                duplicate=receipt.duplicate if receipt else None,
            )
            return

    async def _ack(self, seq: int, log: structlog.stdlib.BoundLogger) -> None:
        try:
            await self._subscription.ack(seq)
        except Exception as exc:  # a lost ack is a harmless redelivery later
            log.warning("event_ack_failed", reason=repr(exc))
            return
        log.info("event_acked")


def _fields(outcome: EnsureOutcome | RemoveOutcome) -> dict[str, object]:
    match outcome:
        case Provisioned(uid=uid, resource_version=rv):
            return {"uid": uid, "resource_version": rv}
        case Refused(reason=reason):
            return {"reason": reason}
        case Removed(existed=existed):
            return {"existed": existed}
        case _:
            assert_never(outcome)
