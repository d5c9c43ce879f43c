"""Waiters on a key's next change: what `account.wait` parks on instead of polling.

The actor that owns some state (the cache, the cluster directory) holds a
`Watchers` and calls `notify(key)` after it changes that key; an asker gets
a future from `watch(key)` that is resolved at the next `notify` of it (or
of everything: `notify_all`, also called when the owner stops, so no waiter
outlives the state it waits on). A waiter registers before it reads, so a
change between its read and its wait is never missed. A waiter that gives
up cancels its future, which drops it at once.

A `Subscription` (from `subscribe(limit)`) is the other way to listen: it
receives every key notified from then on, in order, each key pending at most
once (a burst of changes to one account is one entry). It is bounded: a
reader that falls `limit` keys behind is dropped (`ended` says `overflow`)
rather than let memory grow; it is expected to start again from a fresh
read. `close()` (the owner stopping) wakes every waiter and ends every
subscription with `closed`.

Everything runs on the one event loop: the futures are resolved by the
owner's actor, awaited by the request handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

ANY = "*"  # the key of "anything changed"

Ending = Literal["overflow", "closed"]


class Subscription:
    """Every key notified after it was made, until it ends; iterate with `await next()`."""

    def __init__(self, limit: int, forget: Callable[[Subscription], None]) -> None:
        self._limit = max(1, limit)
        self._forget = forget
        self._pending: dict[str, None] = {}  # insertion-ordered, each key once
        self._wake = asyncio.Event()
        self.ended: Ending | None = None

    def offer(self, key: str) -> None:
        if self.ended is not None or key in self._pending:
            return
        if len(self._pending) >= self._limit:
            self.end("overflow")
            return
        self._pending[key] = None
        self._wake.set()

    async def next(self) -> str | None:
        """The next key, or None once it has ended (pending keys of an ended one are dropped)."""
        while self.ended is None:
            if self._pending:
                key = next(iter(self._pending))
                del self._pending[key]
                return key
            self._wake.clear()
            await self._wake.wait()
        return None

    def end(self, why: Ending = "closed") -> None:
        if self.ended is None:
            self.ended = why
            self._pending.clear()
            self._forget(self)
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)


class Watchers:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._subscriptions: set[Subscription] = set()

    def watch(self, key: str = ANY) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        future.add_done_callback(lambda done: self._forget(key, done))
        return future

    def subscribe(self, limit: int) -> Subscription:
        subscription = Subscription(limit, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    def notify(self, key: str) -> None:
        """Wake the waiters on `key` and those on anything; tell every subscription."""
        for subscription in tuple(self._subscriptions):  # one may end (overflow) meanwhile
            subscription.offer(key)
        for name in (key, ANY):
            for future in self._waiting.pop(name, set()):
                if not future.done():
                    future.set_result(None)

    def notify_all(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        """The owner stops: wake every waiter and end every subscription."""
        self.notify_all()
        for subscription in tuple(self._subscriptions):
            subscription.end("closed")

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def __len__(self) -> int:
        return sum(len(f) for f in self._waiting.values())

    def _forget(self, key: str, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiting[key]
