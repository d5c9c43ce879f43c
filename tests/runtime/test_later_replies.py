"""`Later`: an actor answers an ask after `receive` returned, and its mailbox moves on meanwhile."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from actors.runtime import Actor, ActorSystem, Request
from actors.runtime.actor import Later


@dataclass(frozen=True)
class Slow(Request[str]):
    fail: bool = False


@dataclass(frozen=True)
class Release(Request[None]):
    pass


class Deferring(Actor[Slow | Release]):
    def __init__(self) -> None:
        self.pending: list[tuple[asyncio.Future[str], bool]] = []

    async def receive(self, message: Slow | Release) -> object:
        if isinstance(message, Slow):
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.pending.append((future, message.fail))
            return Later(future)
        for future, fail in self.pending:
            future.set_exception(ValueError("no")) if fail else future.set_result("done")
        return None


async def test_a_later_reply_reaches_its_asker_after_the_next_message_is_handled() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Deferring, name="deferring")
        ok = asyncio.create_task(ref.ask(Slow()))
        bad = asyncio.create_task(ref.ask(Slow(fail=True)))
        await asyncio.sleep(0)  # one step: both asks enqueue, in order, before the release
        await ref.ask(Release())  # handled while both asks are still unanswered
        assert await ok == "done"
        with pytest.raises(ValueError, match="no"):
            await bad
