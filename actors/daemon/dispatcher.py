"""The daemon's actor: a desired-state store fed by the bus, a work queue, workers, a resync.

Like a Kubernetes controller (client-go informer + work queue):

- Consumption. The one consumer loop (`actors.runtime.consumer`) reads
  `cluster:NAME` with key prefix `account:`; its sink asks this actor to
  record each batch in the `DesiredStore` (one fsync) and the loop acks right
  after, so the position never waits for a cluster: a stuck account cannot
  hold it back and the lag returns to 0. Each changed account is added to the
  `WorkQueue` with its backoff started over: a new generation (an update, or
  `account.retry`, which changes nothing but the generation) is tried at once
  and its failures are counted afresh, refusals included.
- Has-synced. Workers start, and the resync (with its garbage collection)
  runs, only once the store has caught up with the log after this start: a
  fresh daemon never acts on a half-read log, so it never creates a namespace
  for an account deleted later in the log, nor deletes one of a live account
  it has not read yet. At that moment every account in the store is queued
  once (a restart re-checks and re-reports everything), and the resync timer
  starts (its first round one interval later). A store with no journal at
  all (first start, or a lost state dir) first removes its bus consumer, so
  it reads the log from the beginning, not from an old position.
- Workers (`settings.max_parallel`) take account ids from the queue and run
  `work.AccountWork` on them; its verdict forgets, backs off, or polls.
- Resync, every `resync_seconds` (`resync`): list what carries our label and
  queue live accounts with drift, pending deletions, and garbage: a namespace
  of ours whose account is not live gets a tombstone made from it (an
  orphan, kept in memory) and is removed and reported like a deletion.

The store, the orphans and the queue are written only here, in `receive`;
the actor's own worker tasks read them synchronously (one event loop, no
await between reading a snapshot and using it).

Resources (bus connector, cluster client) come from a factory entered in
`started` and closed in `stopped`; tests pass in-memory fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import assert_never

from actors.daemon import metrics
from actors.daemon.queue import QueueShutDown, WorkQueue
from actors.daemon.reconcile import Reconciler
from actors.daemon.resync import ClusterView, list_view, plan
from actors.daemon.settings import DaemonSettings
from actors.daemon.state import DesiredStore, Incoming, Tombstone
from actors.daemon.work import (
    AccountWork,
    CrashHook,
    Final,
    Lookup,
    Poll,
    Reports,
    Synced,
    TryLater,
    Verdict,
)
from actors.runtime import Actor, ActorRef, ActorStopped, Request
from actors.runtime.consumer import Received, consume
from core.backoff import Backoff, Retry
from core.bus import BusConnector
from core.events import ACCOUNT_KEY_PREFIX, AccountCreated, AccountDeleted
from core.tenancy import ClusterApi, KubeError

RECORD_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class DaemonPorts:
    bus: BusConnector
    cluster: ClusterApi


PortsFactory = Callable[[], AbstractAsyncContextManager[DaemonPorts]]


@dataclass(frozen=True, slots=True)
class Record(Request[None]):
    events: tuple[Received, ...]


@dataclass(frozen=True, slots=True)
class JournalStarted(Request[None]):
    """The consumer reads from the beginning now: the store is no longer fresh."""


@dataclass(frozen=True, slots=True)
class CaughtUp:
    pass


@dataclass(frozen=True, slots=True)
class ResyncDue:
    pass


@dataclass(frozen=True, slots=True)
class ResyncListed:
    view: ClusterView | None  # None: listing failed, try next time


@dataclass(frozen=True, slots=True)
class DeletionReported:
    tombstone: Tombstone


DaemonMessage = Record | JournalStarted | CaughtUp | ResyncDue | ResyncListed | DeletionReported


class _Sink:
    """The consumer loop's sink: the actor records the batch; then the loop acks it."""

    def __init__(self, ref: ActorRef[DaemonMessage]) -> None:
        self._ref = ref

    async def store(self, events: Sequence[Received]) -> None:
        await self._ref.ask(Record(tuple(events)), timeout=RECORD_TIMEOUT)

    async def caught_up(self) -> None:
        self._ref.tell(CaughtUp())


class ClusterDaemon(Actor[DaemonMessage]):
    def __init__(self, settings: DaemonSettings, ports: PortsFactory) -> None:
        self._settings = settings
        self._ports_factory = ports
        self._stack = contextlib.AsyncExitStack()
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_cap)
        self._poll = min(1.0, settings.backoff_cap)
        self._orphans: dict[str, Tombstone] = {}
        self._reports = Reports()
        self._synced = False
        self._resyncing = False

    async def started(self) -> None:
        s = self._settings
        self.log = self.log.bind(cluster=s.cluster)
        self._crash = CrashHook(s.crash_at, s.state_dir / "crashed-at")
        self._store = await DesiredStore.open(s.state_dir)
        self._stack.push_async_callback(self._store.close)
        if self._store.skipped_lines:
            self.log.warning("state_lines_skipped", count=self._store.skipped_lines)
        ports = await self._stack.enter_async_context(self._ports_factory())
        self._bus, self._cluster = ports.bus, ports.cluster
        publisher = await self._stack.enter_async_context(self._bus.publisher())
        self._queue = WorkQueue(self._backoff)
        self._stack.callback(self._queue.shut_down)
        metrics.for_cluster(s.cluster).started(queue_depth=self._queue.__len__)
        self._work = AccountWork(
            cluster=s.cluster,
            reconciler=Reconciler(self._cluster, s.policy),
            publisher=publisher,
            lookup=Lookup(self._store.get, self._deleting),
            reports=self._reports,
            backoff=self._backoff,
            failed_after=s.failed_after,
            crash=self._crash,
        )
        _ = self.start_task(self._consume(), name="consumer")
        self.log.info(
            "daemon_started", consumer=s.consumer, accounts=len(self._store),
            deleting=len(self._store.deleting), fresh=self._store.fresh,
        )

    async def stopped(self) -> None:
        await self._stack.aclose()

    async def receive(self, message: DaemonMessage) -> object:
        match message:
            case Record(events=events):
                await self._record(events)
            case JournalStarted():
                await self._store.create()
            case CaughtUp():
                self._on_caught_up()
            case ResyncDue():
                if self._synced and not self._resyncing:
                    self._resyncing = True
                    _ = self.start_task(self._list(), name="resync-list")
            case ResyncListed(view=view):
                self._resyncing = False
                if view is not None:
                    self._on_listed(view)
            case DeletionReported(tombstone=tomb):
                if self._orphans.get(tomb.account_id) is tomb:
                    del self._orphans[tomb.account_id]
                await self._store.forget_deletion(tomb.account_id, tomb.generation)
                self.log.debug(
                    "tombstone_dropped", account_id=tomb.account_id, generation=tomb.generation
                )
            case _:
                assert_never(message)
        return None

    def _deleting(self, account_id: str) -> Tombstone | None:
        return self._store.deleting.get(account_id) or self._orphans.get(account_id)

    # consuming ---------------------------------------------------------------------
    async def _consume(self) -> None:
        s = self._settings
        if self._store.fresh:
            await self._read_from_the_beginning()
        await consume(
            lambda: self._bus.subscription(s.consumer, key_prefix=ACCOUNT_KEY_PREFIX),
            _Sink(self.ref),
            backoff=self._backoff,
            log=self.log,
        )

    async def _read_from_the_beginning(self) -> None:
        """No journal: whatever position the bus kept for us belongs to a store we no longer
        have. Drop the consumer so the subscription starts at the beginning of the log."""
        retry = Retry(self._backoff)
        while True:
            try:
                async with self._bus.directory() as directory:
                    existed = await directory.remove(self._settings.consumer)
                break
            except Exception as exc:
                delay = retry.next_delay()
                self.log.warning("consumer_reset_retried", reason=repr(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
        self.log.info("consumer_reset", consumer=self._settings.consumer, existed=existed)
        await self.ref.ask(JournalStarted())

    async def _record(self, events: Sequence[Received]) -> None:
        incoming: list[Incoming] = []
        for received in events:
            env, event = received.envelope, received.event
            match event:
                case AccountCreated() | AccountDeleted():
                    incoming.append(Incoming(event, env.event_id, env.correlation_id))
                    self.log.info(
                        "event_received", event_id=env.event_id, account_id=event.account_id,
                        seq=received.seq, type=env.type, generation=event.generation,
                    )
                case _:
                    self.log.debug("event_ignored", event_id=env.event_id, type=env.type)
        changes = self._store.stage(incoming)
        for change in changes:
            self._orphans.pop(change.account_id, None)
            # Before any await: no worker may see the new generation with the old backoff.
            self._queue.forget(change.account_id)
            # Workers start on the staged state while the journal's fsync runs: it was a
            # millisecond of every change's way to its cluster. Safe, because the batch is
            # acked only once this returns, after the fsync: a crash before it redelivers
            # the events, and every write a worker made is one the redelivery makes again
            # (idempotently). A worker's own journal lines (a reported deletion) come as
            # messages to this actor, which is busy here until the fsync is done, so they
            # follow these lines in the journal.
            self._queue.add(change.account_id)
        await self._store.commit()
        self._crash("after_store", self.log)
        if len(changes) < len(incoming):
            self.log.debug("events_superseded", count=len(incoming) - len(changes))

    def _on_caught_up(self) -> None:
        if self._synced:
            return
        self._synced = True
        metrics.for_cluster(self._settings.cluster).caught_up()
        for desired in self._store:
            self._queue.add(desired.account_id)
        for account_id in list(self._store.deleting):
            self._queue.add(account_id)
        for n in range(self._settings.max_parallel):
            _ = self.start_task(self._worker(), name=f"worker-{n}")
        _ = self.start_task(self._tick(), name="resync-timer")
        self.log.info(
            "store_synced", accounts=len(self._store), deleting=len(self._store.deleting)
        )

    # workers -----------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            try:
                account_id = await self._queue.get()
            except QueueShutDown:
                return
            try:
                self._settle(account_id, await self._run(account_id))
            finally:
                self._queue.done(account_id)

    async def _run(self, account_id: str) -> Verdict:
        attempt = self._queue.failures(account_id) + 1
        try:
            return await self._work.run(account_id, attempt)
        except Exception as exc:  # a bug or a surprising answer: retry, never crash the daemon
            self.log.error(
                "reconcile_crashed", account_id=account_id, attempt=attempt, exc_info=exc
            )
            return TryLater(repr(exc))

    def _settle(self, account_id: str, verdict: Verdict) -> None:
        match verdict:
            case Synced(deleted=tomb):
                self._queue.forget(account_id)
                if tomb is not None:
                    with contextlib.suppress(ActorStopped):
                        self.ref.tell(DeletionReported(tomb))
            case TryLater(reason=reason):
                attempt = self._queue.failures(account_id) + 1
                delay = self._queue.add_rate_limited(account_id)
                self.log.warning(
                    "kube_retry_scheduled", account_id=account_id, reason=reason,
                    attempt=attempt, delay=round(delay, 3),
                )
            case Final():
                self._queue.forget(account_id)
            case Poll():
                self._queue.add_after(account_id, self._poll)
            case _:
                assert_never(verdict)

    # resync --------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_seconds)
            self.ref.tell(ResyncDue())

    async def _list(self) -> None:
        try:
            view: ClusterView | None = await list_view(self._cluster, self._settings.policy)
        except KubeError as exc:
            self.log.warning("resync_failed", reason=exc.reason)
            view = None
        except Exception as exc:
            self.log.error("resync_failed", reason=repr(exc))
            view = None
        self.ref.tell(ResyncListed(view))

    def _on_listed(self, view: ClusterView) -> None:
        found = plan(
            view,
            self._settings.policy,
            live=self._store,
            deleting=self._store.deleting.keys() | self._orphans.keys(),
            pending=self._queue.pending,
            in_sync=self._reports.in_sync,
        )
        for d in found.drift:
            self.log.info("drift_found", account_id=d.account_id, namespace=d.namespace, reason=d.reason)
        for orphan in found.orphans:
            self._orphans[orphan.account_id] = orphan
            self.log.info("orphan_found", account_id=orphan.account_id, namespace=orphan.namespace)
        for account_id in found.queue:
            self._queue.add(account_id)
        report = self.log.info if found.drift or found.garbage else self.log.debug
        report(
            "resync_completed", listed=len(view.namespaces), repair=len(found.drift),
            garbage=found.garbage,
        )
