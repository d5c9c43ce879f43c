"""The cache actor: the only owner of this process's handle on the query cache.

It opens an `AccountCache` (SQLite or PostgreSQL: `CacheOpener`, called again
on each restart) and serves it to the rest of the process; it knows nothing
of either store. Store failures arrive as `DependencyUnavailable("cache")`
and go back to the asker.

Writes come from the event driver (a batch of bus deliveries, applied in one
transaction before the driver acks them) and from the domain actor (the
event it just committed, so a create's reply never races its cache row; the
driver's later apply of the same event is a no-op by generation). Writes are
group-committed: an `ApplyEvents` is gathered and queues a flush behind what
is in the mailbox then; every batch gathered until the flush is applied in its
one transaction, and each asker is answered its own part (a failed transaction
fails them all, none of it applied). With 64 clients the domain actors' one-event
applies had queued up one transaction and one trip to the writer's thread
apiece: 7-8 ms p50 per apply gathered against ~50 ms queued alone. A batch is
visible, and its waiters woken, as soon as it commits; the driver's answer
waits for the store's `sync` (it acks the bus next), the mailbox does not. Reads
return plain records; the HTTP side combines them with the cluster directory
into Account views.

`WatchAccount` answers a future resolved the next time an apply changes that
account or a cluster's report on it (actors/api/watchers.py): `account.wait`
parks on it rather than polling. Waiters are woken after the transaction
commits, and all of them when the actor stops. Changes other processes
commit to a shared store (another API replica's event driver applied the
outcome) arrive through the store's `listen` and wake the same waiters and
feeds. `SubscribeChanges` answers a
bounded feed of every account id changed from then on (the console's live
updates); the actor stopping ends it, so its reader starts over.

A read of one account is remembered until a change to it (actors/api/cache_memo.py),
unless other processes write the store too (`shared`: API replicas on one PostgreSQL
cache, whose reads must see each other's commits at once):
a `FindAccount` it can answer never reaches the store, and the API's `account.get`
reads the memo directly, without a trip through the mailbox. Only this actor
writes the memo, in its mailbox, as an Erlang process owns a protected ETS table
that others read; all of it runs on one event loop, so a reader never sees a
change half made.

Reads (`FindAccount`, `ListAccountsPage`) run side by side: each is started in
mailbox order and answered when it completes (`Later`), so many `account.get`s
share the store's round trips instead of queueing one trip at a time. A flush
and every other message that is not a read first wait for the reads in flight,
so no read overlaps a write: a read still shows the store as of some moment
after it was asked.
A durable batch's `sync` (the SQLite WAL's fsync) runs beside the mailbox too,
and later writes do not wait for it: it touches neither the memo nor what a
read shows, and it covers every commit made before it began. (Writes waited
for it among the reads: at 64 clients a create's read-your-writes apply
queued behind the driver's fsyncs.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from actors.api.cache_memo import ReadMemo
from actors.api.watchers import Subscription, Watchers
from actors.runtime import Actor, Later, Request
from core.account import StatusHint
from core.cache import AccountCache, CacheView, Change

CacheOpener = Callable[[], Awaitable[AccountCache]]


@dataclass(frozen=True, slots=True)
class Applied:
    """One change to apply; `event_id` and `seq` only travel to the log lines."""

    change: Change
    event_id: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ApplyEvents(Request[list[bool]]):
    """Apply all of them in one transaction (shared with the batches gathered with it); per
    item, whether the cache changed. Answered once the store has them durably (`sync`),
    unless `durable` is False: the domain's own event, which the event driver brings again
    from the bus, need only be visible."""

    items: Sequence[Applied]
    durable: bool = True


Snapshot = CacheView  # accounts, their reports, the known clusters: what a read answers


@dataclass(frozen=True, slots=True)
class FindAccount(Request[Snapshot]):
    account_id: str | None = None
    slug: str | None = None


@dataclass(frozen=True, slots=True)
class ListAccountsPage(Request[Snapshot]):
    after: int | None
    limit: int
    hint: StatusHint | None = None  # a list by status: what the store may skip


@dataclass(frozen=True, slots=True)
class WatchAccount(Request[asyncio.Future[None]]):
    """A future resolved at the next change of this account (or of a report on it)."""

    account_id: str


@dataclass(frozen=True, slots=True)
class SubscribeChanges(Request[Subscription]):
    """Every account id changed from now on; dropped when `limit` ids are pending."""

    limit: int


@dataclass(frozen=True, slots=True)
class ClaimFeed(Request[bool]):
    """Whether this process's event driver may feed the store now (`AccountCache.claim_feed`)."""


@dataclass(frozen=True, slots=True)
class NeedsReplay(Request[bool]):
    pass


@dataclass(frozen=True, slots=True)
class MarkReplayed(Request[None]):
    pass


@dataclass(frozen=True, slots=True)
class PingCache(Request[None]):
    pass


@dataclass(frozen=True, slots=True)
class _Flush:
    """Apply the batches gathered since the first that found none gathering."""


@dataclass(frozen=True, slots=True)
class _Gathered:
    items: Sequence[Applied]
    durable: bool
    answer: asyncio.Future[list[bool]]


@dataclass(frozen=True, slots=True)
class _ChangedElsewhere:
    """Accounts another writer of a shared store changed (None: any of them may have)."""

    account_ids: tuple[str, ...] | None


CacheMessage = (
    ApplyEvents | FindAccount | ListAccountsPage | WatchAccount | ClaimFeed | NeedsReplay
    | MarkReplayed | PingCache | SubscribeChanges | _Flush | _ChangedElsewhere
)


class CacheActor(Actor[CacheMessage]):
    def __init__(self, open_cache: CacheOpener, memo: ReadMemo | None = None) -> None:
        """`memo`: given when others read it too (the API's `account.get`); it outlives a
        restart of the actor, which empties it on the way down and up."""
        self._open = open_cache
        self._store: AccountCache | None = None
        self._watchers = Watchers()
        self._reads: set[asyncio.Task[object]] = set()
        self._syncs: set[asyncio.Task[object]] = set()
        self._gathered: list[_Gathered] = []
        self._memo = memo if memo is not None else ReadMemo()

    async def started(self) -> None:
        self._memo.clear()
        self._store = await self._open()
        self._listener = self.start_task(self._store.listen(self._changed_elsewhere), name="listen")

    async def stopped(self) -> None:
        # Nothing applies changes until the next start: the memo would go stale.
        self._memo.clear()
        self._watchers.close()
        gathered, self._gathered = self._gathered, []
        for batch in gathered:
            batch.answer.cancel()  # never applied: its asker gets ActorStopped
        beside = (*self._reads, *self._syncs)
        for task in beside:
            task.cancel()  # its asker gets ActorStopped; the store is about to close
        if beside:
            await asyncio.wait(beside)
        if self._store is not None:
            await self._store.close()

    def _changed_elsewhere(self, account_ids: Sequence[str] | None) -> None:
        # Called by the store outside `receive`: the watchers are only touched in the mailbox.
        self.ref.tell(_ChangedElsewhere(None if account_ids is None else tuple(account_ids)))

    def _read(self, read: Coroutine[Any, Any, object]) -> Later:
        return self._beside(read, self._reads)

    @staticmethod
    def _beside(work: Coroutine[Any, Any, object], tasks: set[asyncio.Task[object]]) -> Later:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return Later(task)

    async def _remembered(self, read: Awaitable[Snapshot]) -> Snapshot:
        # Within the read's task: no write runs before it is remembered (writes settle first).
        view = await read
        self._memo.remember(view)
        return view

    @staticmethod
    async def _synced(
        store: AccountCache, waiting: list[tuple[asyncio.Future[list[bool]], list[bool]]]
    ) -> None:
        try:
            await store.sync()
        except asyncio.CancelledError:
            for answer, _ in waiting:
                answer.cancel()
            raise
        except Exception as exc:
            for answer, _ in waiting:
                _settle(answer, exc)
            return
        for answer, changed in waiting:
            _settle(answer, changed)

    async def _flush(self, store: AccountCache) -> None:
        """One transaction for every batch gathered; each asker gets its own part of the answer."""
        group, self._gathered = self._gathered, []
        group = [batch for batch in group if not batch.answer.done()]  # asker gone: not applied
        if not group:
            return
        items = [item for batch in group for item in batch.items]
        changed: list[bool] | None = None
        try:
            changed = await store.apply([item.change for item in items])
        except asyncio.CancelledError:
            for batch in group:
                batch.answer.cancel()  # the actor is stopping: its askers get ActorStopped
            raise
        except Exception as exc:
            for batch in group:
                _settle(batch.answer, exc)
            return
        finally:
            if changed is not None and len(changed) == len(items):
                for item, did in zip(items, changed, strict=True):
                    self._memo.applied(item.change, did)
            else:  # failed, or half-way through telling us: whatever the store holds now
                for item in items:
                    self._memo.changed(item.change.event)
        for item, did in zip(items, changed, strict=True):
            if did:
                self.log.debug(
                    "cache_event_applied", event_id=item.event_id, seq=item.seq,
                    account_id=item.change.event.account_id,
                )
                self._watchers.notify(item.change.event.account_id)
        durable: list[tuple[asyncio.Future[list[bool]], list[bool]]] = []
        start = 0
        for batch in group:
            part = changed[start : start + len(batch.items)]
            start += len(batch.items)
            if batch.durable:
                durable.append((batch.answer, part))
            else:
                _settle(batch.answer, part)
        if durable:
            # The askers (the event driver) ack the bus when answered, so they are answered
            # once the batch is durable; the mailbox, and the readers woken above, go on
            # meanwhile.
            _ = self._beside(self._synced(store, durable), self._syncs)

    async def _settle(self) -> None:
        """Wait for the reads in flight (their outcomes go to their askers)."""
        if self._reads:
            await asyncio.wait(tuple(self._reads))

    async def receive(self, message: CacheMessage) -> object:
        store = self._store
        assert store is not None
        match message:
            case FindAccount(account_id, slug):
                if store.shared:
                    return self._read(store.find(account_id, slug))
                known = self._memo.find(account_id, slug)
                if known is not None:
                    return known
                return self._read(self._remembered(store.find(account_id, slug)))
            case ListAccountsPage(after, limit, hint):
                return self._read(store.page(after, limit, hint))
            case WatchAccount(account_id):
                # Needs no store: a read in flight that misses a change is followed by its notify.
                return self._watchers.watch(account_id)
            case ClaimFeed():
                # Touches no data (a lease on a connection of its own): no need to wait for the
                # reads in flight, and the driver asks it before every batch.
                return await store.claim_feed()
            case ApplyEvents(items, durable):
                # Gathered, and applied with every batch that arrives before the flush this
                # one queues behind what is in the mailbox now (group commit): the domain
                # actors' read-your-writes applies, one event each, cost a transaction and a
                # trip to the writer's thread apiece and queued up behind each other.
                if not self._gathered:
                    self.ref.tell(_Flush())
                answer: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
                answer.add_done_callback(_retrieve)
                self._gathered.append(_Gathered(items, durable, answer))
                return Later(answer)
        await self._settle()
        match message:
            case _Flush():
                await self._flush(store)
                return None
            case FindAccount() | ListAccountsPage() | WatchAccount() | ClaimFeed() | ApplyEvents():
                raise AssertionError("handled above")
            case SubscribeChanges(limit):
                return self._watchers.subscribe(limit)
            case NeedsReplay():
                return await store.needs_replay()
            case MarkReplayed():
                await store.mark_replayed()
                return None
            case PingCache():
                await store.ping()
                return None
            case _ChangedElsewhere(account_ids):
                if account_ids is None:
                    # Changes may have been missed: wake every waiter to re-read, and end the
                    # feeds, whose readers start over from a fresh read (as after a restart).
                    self._memo.clear()
                    self._watchers.close()
                for account_id in account_ids or ():
                    self._memo.forget(account_id)
                    self._watchers.notify(account_id)
                return None
            case _:
                assert_never(message)


def _settle(answer: asyncio.Future[list[bool]], outcome: list[bool] | Exception) -> None:
    if answer.done():
        return
    if isinstance(outcome, Exception):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)


def _retrieve(answer: asyncio.Future[list[bool]]) -> None:
    # An asker that gave up leaves the answer unread: not an unretrieved exception.
    if not answer.cancelled():
        _ = answer.exception()
