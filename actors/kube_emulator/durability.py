"""Group commit for the store: the changes made while one journal write is in flight share the next.

The store applies a change in memory at once and queues its journal record
(`mark`); its flusher writes whatever has queued in one append and fsync
(`begin` ... `end`), then publishes those changes' watch events. Nobody hears
of a change before it is durable: every reply, read or write, first waits
(`settled`) until everything the store had done when it answered is on disk,
so a read never shows what a crash could still lose, as etcd never serves an
uncommitted revision. Requests that arrive together cost one fsync instead of
one each; one request alone costs what it did before.

One event loop, no locks. A failed write fails every reply waiting on it (the
store reloads what is durable and answers 500, as before).
"""

from __future__ import annotations

import asyncio


class Durability:
    def __init__(self) -> None:
        self._gathering: asyncio.Future[None] | None = None  # changes not yet being written
        self._writing: asyncio.Future[None] | None = None  # the group being written now

    def mark(self) -> None:
        """A change was made in memory: the next group holds it."""
        if self._gathering is None:
            self._gathering = asyncio.get_running_loop().create_future()
            # Retrieved here, so a failure nobody happened to wait for is not reported as lost.
            self._gathering.add_done_callback(_retrieve)

    def begin(self) -> None:
        """The flusher took every change marked so far and is writing them."""
        self._writing, self._gathering = self._gathering, None

    def end(self, error: BaseException | None = None) -> None:
        """The group being written is durable (or, with `error`, lost)."""
        writing, self._writing = self._writing, None
        _settle(writing, error)

    def fail_all(self, error: BaseException) -> None:
        """Memory went back to what is durable: whatever was marked is lost too."""
        self.end(error)
        gathering, self._gathering = self._gathering, None
        _settle(gathering, error)

    async def settled(self) -> None:
        """Return once every change marked before this call is durable; raise if it was lost."""
        group = self._gathering or self._writing
        if group is not None:
            # Shielded: a caller that goes away must not cancel the others' group.
            await asyncio.shield(group)


def _settle(group: asyncio.Future[None] | None, error: BaseException | None) -> None:
    if group is None or group.done():
        return
    if error is None:
        group.set_result(None)
    else:
        group.set_exception(error)


def _retrieve(group: asyncio.Future[None]) -> None:
    if not group.cancelled():
        group.exception()
