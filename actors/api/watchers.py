"""Waiters on a key's next change: what `account.wait` parks on instead of polling.

The actor that owns some state (the cache, the cluster directory) holds a
`Watchers` and calls `notify(key)` after it changes that key; an asker gets
a future from `watch(key)` that is resolved at the next `notify` of it (or
of everything: `notify_all`, also called when the owner stops, so no waiter
outlives the state it waits on). A waiter registers before it reads, so a
change between its read and its wait is never missed. A waiter that gives
up cancels its future, which drops it at once.

Everything runs on the one event loop: the futures are resolved by the
owner's actor, awaited by the request handlers.
"""

from __future__ import annotations

import asyncio

ANY = "*"  # the key of "anything changed"


class Watchers:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def watch(self, key: str = ANY) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        future.add_done_callback(lambda done: self._forget(key, done))
        return future

    def notify(self, key: str) -> None:
        """Wake the waiters on `key` and those on anything."""
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

    def __len__(self) -> int:
        return sum(len(f) for f in self._waiting.values())

    def _forget(self, key: str, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiting[key]
