"""The daemon's actor: routes consumed events to per-account work, resyncs the cluster.

`ClusterDaemon` owns the durable subscription (a reader task tells it each
delivery), the local desired set (`DesiredState`) and the per-account queues.
Events of one account are worked in seq order, one at a time; different
accounts proceed concurrently, so one account stuck on retries never blocks
the others. At most `max_in_flight` deliveries are held at once (the reader
waits for a free slot: backpressure onto the broker). Each event is recorded in
the desired set (fsynced) before its work starts; the work acks it at the end.

Every `resync_seconds` it lists the namespaces and policy objects carrying our
managed-by label and queues work for drift: a live account whose namespace is
missing is re-created, one whose namespace lost a policy object or had a label
changed is repaired, a deleted account's namespace still there is removed. Resync work
goes through the same per-account queue, so it never races an event.

Resources (subscription, publisher, cluster client) come from a factory entered
in `started` and closed in `stopped`; tests pass in-memory fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import assert_never

from actors.daemon.reconcile import DeleteWait, Reconciler
from actors.daemon.retry import Backoff
from actors.daemon.settings import DaemonSettings
from actors.daemon.state import AccountRecord, DesiredState
from actors.daemon.work import EventWork, ResyncWork, Worker, WorkItem
from actors.runtime import Actor
from core.bus import Delivery, EventPublisher, EventSubscription
from core.envelope import InvalidEnvelope
from core.events import (
    AccountCreated,
    AccountDeleted,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    from_envelope,
)
from core.tenancy import (
    CHILD_KINDS,
    ClusterApi,
    KubeError,
    KubeObject,
    check_tenant,
    drift,
    is_terminating,
)


@dataclass(frozen=True, slots=True)
class DaemonPorts:
    subscription: EventSubscription
    publisher: EventPublisher
    cluster: ClusterApi


PortsFactory = Callable[[], AbstractAsyncContextManager[DaemonPorts]]


@dataclass(frozen=True, slots=True)
class Delivered:
    delivery: Delivery
    session: object  # the incarnation that read it; a restarted actor ignores older ones


@dataclass(frozen=True, slots=True)
class WorkDone:
    account_id: str
    seq: int | None
    session: object


@dataclass(frozen=True, slots=True)
class ResyncDue:
    pass


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What a resync saw: our namespaces and, per namespace, the (kind, name) of our objects."""

    namespaces: tuple[KubeObject, ...]
    children: Mapping[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class ResyncListed:
    view: ClusterView | None  # None: listing failed, try next time
    session: object


DaemonMessage = Delivered | WorkDone | ResyncDue | ResyncListed


@dataclass(slots=True)
class _Account:
    queue: deque[WorkItem] = field(default_factory=deque)
    busy: bool = False


class ClusterDaemon(Actor[DaemonMessage]):
    def __init__(self, settings: DaemonSettings, ports: PortsFactory) -> None:
        self._settings = settings
        self._ports_factory = ports
        self._stack = contextlib.AsyncExitStack()
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_cap)
        self._accounts: dict[str, _Account] = {}
        self._held: set[int] = set()
        self._resyncing = False
        self._session = object()

    async def started(self) -> None:
        s = self._settings
        self.log = self.log.bind(cluster=s.cluster)
        self._state = await DesiredState.open(s.state_dir)
        self._stack.push_async_callback(self._state.close)
        if self._state.skipped_lines:
            self.log.warning("state_lines_skipped", count=self._state.skipped_lines)
        ports = await self._stack.enter_async_context(self._ports_factory())
        self._slots = asyncio.Semaphore(s.max_in_flight)
        reconciler = Reconciler(
            ports.cluster,
            s.policy,
            delete_wait=DeleteWait(timeout=s.delete_timeout, cap=min(1.0, s.backoff_cap)),
            max_parallel=s.max_parallel,
        )
        self._ports = ports
        self._worker = Worker(
            cluster=s.cluster,
            reconciler=reconciler,
            publisher=ports.publisher,
            subscription=ports.subscription,
            backoff=self._backoff,
            crash_at=s.crash_at,
            crash_marker=s.state_dir / "crashed-at",
        )
        _ = self.start_task(self._read(), name="reader")
        _ = self.start_task(self._tick(), name="resync-timer")
        self.log.info("daemon_started", consumer=s.consumer, accounts=len(self._state))

    async def stopped(self) -> None:
        await self._stack.aclose()

    async def receive(self, message: DaemonMessage) -> object:
        match message:
            case Delivered(session=session) | WorkDone(session=session) | ResyncListed(
                session=session
            ) if session is not self._session:
                # Sent to a crashed incarnation: its subscription is gone and the new one
                # redelivers every unacked event, so nothing is lost by dropping it.
                pass
            case Delivered(delivery=delivery):
                await self._on_delivery(delivery)
            case WorkDone(account_id=account_id, seq=seq):
                self._on_done(account_id, seq)
            case ResyncDue():
                if not self._resyncing:
                    self._resyncing = True
                    _ = self.start_task(self._list(), name="resync-list")
            case ResyncListed(view=view):
                self._resyncing = False
                if view is not None:
                    self._on_listed(view)
            case _:
                assert_never(message)
        return None

    # consuming ---------------------------------------------------------------------
    async def _read(self) -> None:
        attempt = 0
        while True:
            try:
                async for delivery in self._ports.subscription.deliveries():
                    await self._slots.acquire()
                    self.ref.tell(Delivered(delivery, self._session))
                    attempt = 0
                self.log.warning("subscription_ended")
            except Exception as exc:  # the broker client should retry itself; never crash-loop
                self.log.error("subscription_failed", reason=repr(exc))
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _on_delivery(self, delivery: Delivery) -> None:
        seq, env = delivery.seq, delivery.envelope
        if seq in self._held:
            self._slots.release()  # a redelivery of something already in hand
            return
        log = self.log.bind(event_id=env.event_id, account_id=env.aggregate_id, seq=seq)
        try:
            event = from_envelope(env)
        except InvalidEnvelope as exc:
            log.warning("event_rejected", type=env.type, reason=str(exc))
            await self._ack_now(seq)
            return
        match event:
            case AccountCreated() | AccountDeleted():
                pass
            case NamespaceProvisioned() | NamespaceProvisionFailed() | NamespaceDeleted():
                await self._ack_now(seq)  # daemons' own reports: nothing to do here
                return
            case _:
                assert_never(event)
        created = isinstance(event, AccountCreated)
        await self._state.record(
            AccountRecord(
                account_id=event.account_id,
                slug=event.slug,
                namespace=event.namespace,
                name=event.name if isinstance(event, AccountCreated) else "",
                status="live" if created else "deleted",
                seq=seq,
                event_id=env.event_id,
                correlation_id=env.correlation_id,
            )
        )
        log.info("event_received", type=env.type, namespace=event.namespace)
        self._held.add(seq)
        self._enqueue(EventWork(seq, env, event))

    async def _ack_now(self, seq: int) -> None:
        try:
            await self._ports.subscription.ack(seq)
        except Exception as exc:
            self.log.warning("event_ack_failed", seq=seq, reason=repr(exc))
        self._slots.release()

    # per-account work ----------------------------------------------------------------
    def _enqueue(self, item: WorkItem) -> None:
        account = self._accounts.setdefault(item.account_id, _Account())
        account.queue.append(item)
        if not account.busy:
            self._start_next(item.account_id, account)

    def _start_next(self, account_id: str, account: _Account) -> None:
        """Start the account's next item, or forget the account when its queue is empty."""
        if not account.queue:
            del self._accounts[account_id]
            return
        item = account.queue.popleft()
        account.busy = True
        if isinstance(item, EventWork) and self._superseded(item):
            self.log.info(
                "event_superseded", event_id=item.envelope.event_id, account_id=account_id
            )
            _ = self.start_task(self._ack_superseded(item), name=f"ack-{item.seq}")
        else:
            _ = self.start_task(self._run(item), name=f"work-{account_id}")

    def _superseded(self, item: EventWork) -> bool:
        """An old create of an account the desired set already knows is deleted: skip its effect."""
        if not isinstance(item.event, AccountCreated):
            return False
        rec = self._state.get(item.account_id)
        return rec is not None and rec.status == "deleted" and rec.seq > item.seq

    async def _ack_superseded(self, item: EventWork) -> None:
        with contextlib.suppress(Exception):
            await self._ports.subscription.ack(item.seq)
        self.ref.tell(WorkDone(item.account_id, item.seq, self._session))

    async def _run(self, item: WorkItem) -> None:
        await self._worker.run(item)
        seq = item.seq if isinstance(item, EventWork) else None
        self.ref.tell(WorkDone(item.account_id, seq, self._session))

    def _on_done(self, account_id: str, seq: int | None) -> None:
        if seq is not None and seq in self._held:
            self._held.discard(seq)
            self._slots.release()
        account = self._accounts.get(account_id)
        if account is not None:
            account.busy = False
            self._start_next(account_id, account)

    # resync --------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._settings.resync_seconds)
            self.ref.tell(ResyncDue())

    async def _list(self) -> None:
        selector = self._settings.policy.selector
        cluster = self._ports.cluster
        try:
            namespaces = await cluster.list_objects("Namespace", selector)
            children: dict[str, set[tuple[str, str]]] = {}
            for kind in CHILD_KINDS:
                for obj in await cluster.list_objects(kind, selector):
                    meta = obj.get("metadata") or {}
                    ns, name = meta.get("namespace"), meta.get("name")
                    if isinstance(ns, str) and isinstance(name, str):
                        children.setdefault(ns, set()).add((kind, name))
        except KubeError as exc:
            self.log.warning("resync_failed", reason=exc.reason)
            self.ref.tell(ResyncListed(None, self._session))
            return
        except Exception as exc:
            self.log.error("resync_failed", reason=repr(exc))
            self.ref.tell(ResyncListed(None, self._session))
            return
        view = ClusterView(tuple(namespaces), {k: frozenset(v) for k, v in children.items()})
        self.ref.tell(ResyncListed(view, self._session))

    def _on_listed(self, view: ClusterView) -> None:
        policy = self._settings.policy
        present: dict[str, KubeObject] = {}
        for ns in view.namespaces:
            name = (ns.get("metadata") or {}).get("name")
            if isinstance(name, str):
                present[name] = ns
        recreate = repair = remove = 0
        for rec in self._state:
            if rec.account_id in self._accounts or check_tenant(rec.tenant) is not None:
                continue  # work in hand for it already, or a name we never act on
            found = present.get(rec.namespace)
            if found is not None and is_terminating(found):
                if rec.status == "live":
                    # Deleted by hand and still finalizing: the re-create retries until it
                    # is gone, so it comes back soon after, not one resync later.
                    recreate += 1
                    self._enqueue(ResyncWork(rec))
                continue
            owner = None if found is None else (found["metadata"].get("labels") or {}).get(
                policy.account_label
            )
            if rec.status == "live" and found is None:
                recreate += 1
                self._enqueue(ResyncWork(rec))
            elif rec.status == "live" and found is not None and owner == rec.account_id:
                reason = drift(rec.tenant, policy, found, set(view.children.get(rec.namespace, ())))
                if reason is not None:
                    repair += 1
                    self.log.info(
                        "drift_found", account_id=rec.account_id, namespace=rec.namespace,
                        reason=reason,
                    )
                    self._enqueue(ResyncWork(rec))
            elif rec.status == "deleted" and found is not None and owner == rec.account_id:
                remove += 1
                self._enqueue(ResyncWork(rec))
        report = self.log.info if recreate or repair or remove else self.log.debug
        report(
            "resync_completed", listed=len(present), recreate=recreate, repair=repair,
            remove=remove,
        )
