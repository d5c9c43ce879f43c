"""The event driver: the durable bus consumer `cache` that keeps the query cache up to date.

It runs the one consumer loop (`actors.runtime.consumer.consume`): each batch
is applied by the cache actor in one transaction, and only then acked, so a
crash anywhere means a redelivery, which the cache's generation guard turns
into no change. Events that changed the cache are logged `event_applied`
(info) and counted; the others (the domain applied its own event already, a
redelivery, an older state) `event_already_applied` (debug).

API replicas on one shared cache (PostgreSQL) feed it one at a time: before
it subscribes, and before each batch, the driver claims the store's feed lease
(`AccountCache.claim_feed`); the others stand by, holding no subscription. On
JetStream, drivers sharing the durable consumer `cache` compete for its
deliveries, and each took the others' for lost ones and reset the consumer
past them: an outcome could go unapplied. The others' waiters still wake: the
store tells every replica what changed.

A cache created empty (first start, a lost file, an old schema replaced)
needs the whole log, but the `cache` consumer's position may be ahead of it:
before its first subscription the driver then removes the consumer through
the directory, so the new subscription starts at the beginning of the log,
and tells the cache it is replayed once that catch-up is done. A crash in
between repeats both, harmlessly.

Given the cluster directory, the driver also times readiness
(`fabric_account_ready_seconds`): for each account a batch's
`namespace.provisioned` changes, it compares the account's status before and
after the apply, and when the apply turned it ready (or suspended, a suspended
account's ready) it observes the time since that generation was committed. A
replay observes nothing (those generations were ready long ago), nor does a
redelivery or a daemon's re-report after a restart (the status was ready before).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import structlog

from actors.api.cache import (
    Applied,
    ApplyEvents,
    CacheMessage,
    ClaimFeed,
    FindAccount,
    MarkReplayed,
    NeedsReplay,
)
from actors.api.clusters import DirectoryMessage, GetDirectory
from actors.api.metrics import ApiMetrics
from actors.runtime import Actor, ActorRef, Request
from actors.runtime.consumer import Received, consume
from core.account import account_view
from core.backoff import Backoff, Retry
from core.bus import BusConnector, EventSubscription
from core.cache import Change
from core.events import NamespaceProvisioned

CACHE_CONSUMER = "cache"


class FeedLost(Exception):
    """This replica no longer holds the shared cache's feed lease."""


@dataclass(frozen=True, slots=True)
class GetApplied(Request[int]):
    """How many events changed the cache since this driver started."""


DriverMessage = GetApplied


class EventDriverActor(Actor[DriverMessage]):
    def __init__(
        self,
        connector: BusConnector,
        cache: ActorRef[CacheMessage],
        metrics: ApiMetrics,
        *,
        consumer: str = CACHE_CONSUMER,
        backoff_max: float = 2.0,
        timeout: float = 30.0,
        directory: ActorRef[DirectoryMessage] | None = None,
    ) -> None:
        self._connector = connector
        self._cache = cache
        self._metrics = metrics
        self._readiness = (
            _Readiness(cache, directory, metrics, timeout) if directory is not None else None
        )
        self._consumer = consumer
        self._backoff = Backoff(initial=0.05, cap=backoff_max)
        self._timeout = timeout
        self._applied = 0
        self._replaying = False
        self._asked = False  # whether the cache said if it needs a replay
        self._reset = False
        self._timing: asyncio.Task[None] | None = None  # the last batch's readiness read

    async def started(self) -> None:
        self._task = self.start_task(self._run(), name="consume")

    async def receive(self, message: DriverMessage) -> object:
        match message:
            case GetApplied():
                return self._applied
            case _:
                assert_never(message)

    async def _run(self) -> None:
        await consume(self._open, self, backoff=self._backoff, log=self.log)

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[EventSubscription]:
        await self._claim_feed()
        if not self._asked:
            # Asked inside the consumer loop, so a cache that is down (a shared PostgreSQL)
            # is retried with the loop's backoff instead of crashing the driver.
            self._replaying = await self._cache.ask(NeedsReplay(), timeout=self._timeout)
            self._asked = True
        if self._replaying and not self._reset:
            async with self._connector.directory() as directory:
                removed = await directory.remove(self._consumer)
            self._reset = True
            self.log.info("cache_consumer_reset", consumer=self._consumer, removed=removed)
        async with self._connector.subscription(self._consumer) as subscription:
            yield subscription

    async def _claim_feed(self) -> None:
        """Wait until this process may feed the cache: at once, unless API replicas share
        it; then while another replica's driver holds the feed, this one stands by, asking
        again with the shared backoff (a feeder that dies frees it at once)."""
        retry = Retry(self._backoff)
        standby = False
        while not await self._cache.ask(ClaimFeed(), timeout=self._timeout):
            if not standby:
                standby = True
                self.log.info("cache_feed_standby", consumer=self._consumer)
            await asyncio.sleep(retry.next_delay())
        if standby:
            self.log.info("cache_feed_claimed", consumer=self._consumer)

    # the consumer loop's sink -----------------------------------------------------------
    async def store(self, events: Sequence[Received]) -> None:
        if not await self._cache.ask(ClaimFeed(), timeout=self._timeout):
            # Lost (its session ended and another replica took it): stop feeding before this
            # batch is applied or acked; the subscription closes and we stand by.
            raise FeedLost("another replica's event driver feeds the shared cache now")
        items = [
            Applied(Change(r.event, r.envelope.occurred_at), r.envelope.event_id, r.seq)
            for r in events
        ]
        if self._timing is not None:
            await self._timing  # it never raises: a failed read skips the observation
            self._timing = None
        timing = None
        if self._readiness is not None and not self._replaying:
            timing = await self._readiness.before(events, self.log)
        changed = await self._cache.ask(ApplyEvents(items), timeout=self._timeout)
        if timing:
            # Off the consumer's way (the ack, the next fetch): the next batch, often another
            # cluster's outcome that makes the account ready, waits only for what is left of
            # this read, which must see the cache between this apply and the next.
            assert self._readiness is not None
            self._timing = self.start_task(
                self._readiness.after(timing, events, changed, datetime.now(UTC), self.log),
                name="ready-timing",
            )
        for received, did in zip(events, changed, strict=True):
            env = received.envelope
            fields = {
                "event_id": env.event_id, "account_id": received.event.account_id,
                "seq": received.seq, "type": env.type,
            }
            if did:
                self._applied += 1
                self._metrics.events_applied.inc()
                self.log.info("event_applied", **fields)
            else:
                self.log.debug("event_already_applied", **fields)

    async def caught_up(self) -> None:
        if self._replaying:
            await self._cache.ask(MarkReplayed(), timeout=self._timeout)
            self._replaying = False
            self.log.info("cache_replayed", consumer=self._consumer)


_READY = ("ready", "suspended")


class _Readiness:
    """Observes `fabric_account_ready_seconds` around one batch's apply (see the docstring).

    Metrics never hold the consumer back: a failed read skips the observation."""

    def __init__(
        self, cache: ActorRef[CacheMessage], directory: ActorRef[DirectoryMessage],
        metrics: ApiMetrics, timeout: float,
    ) -> None:
        self._cache = cache
        self._directory = directory
        self._metrics = metrics
        self._timeout = timeout

    async def before(
        self, events: Sequence[Received], log: structlog.stdlib.BoundLogger
    ) -> dict[str, bool]:
        """Whether each account a `namespace.provisioned` of the batch is on is ready now."""
        ids = {r.event.account_id for r in events if isinstance(r.event, NamespaceProvisioned)}
        out: dict[str, bool] = {}
        for account_id in ids:
            state = await self._status(account_id, log)
            if state is not None:
                out[account_id] = state[0] in _READY
        return out

    async def after(
        self, ready_before: dict[str, bool], events: Sequence[Received], changed: Sequence[bool],
        applied_at: datetime, log: structlog.stdlib.BoundLogger,
    ) -> None:
        touched = {
            r.event.account_id for r, did in zip(events, changed, strict=True)
            if did and isinstance(r.event, NamespaceProvisioned)
        }
        for account_id in touched:
            if ready_before.get(account_id, True):
                continue
            state = await self._status(account_id, log, applied_at)
            if state is not None and state[0] in _READY:
                self._metrics.ready_seconds.observe(state[1])

    async def _status(
        self, account_id: str, log: structlog.stdlib.BoundLogger, at: datetime | None = None
    ) -> tuple[str, float] | None:
        """The account's status and the seconds from its generation's commit to `at` (now)."""
        try:
            directory = await self._directory.ask(GetDirectory(), timeout=self._timeout)
            snapshot = await self._cache.ask(FindAccount(account_id=account_id), timeout=self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("ready_timing_skipped", account_id=account_id, reason=repr(exc))
            return None
        if not snapshot.records:
            return None
        record = snapshot.records[0]
        known = set(snapshot.clusters) | set(directory.cluster_names())
        view = account_view(record, snapshot.reports.get(record.id, []), known, directory.online())
        try:
            committed = datetime.fromisoformat(record.updated_at)
        except ValueError:
            return None
        if committed.tzinfo is None:
            committed = committed.replace(tzinfo=UTC)
        return view.status, max(0.0, ((at or datetime.now(UTC)) - committed).total_seconds())
