"""The actor runtime's contract: ask/tell, errors to the asker, stop drains, supervision."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from actors.runtime import (
    Actor,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    Escalation,
    Request,
    RestartPolicy,
)
from tests.support.wait import wait_until


@dataclass(frozen=True, slots=True)
class Add:
    amount: int


@dataclass(frozen=True, slots=True)
class Total(Request[int]):
    pass


@dataclass(frozen=True, slots=True)
class Divide(Request[float]):
    by: int


@dataclass(frozen=True, slots=True)
class Crash:
    pass


@dataclass(frozen=True, slots=True)
class Block(Request[None]):
    release: asyncio.Event
    entered: asyncio.Event


Msg = Add | Total | Divide | Crash | Block


class Counter(Actor[Msg]):
    """Counts; `starts` is shared by the test only to observe restarts from outside."""

    def __init__(self, starts: list[int] | None = None, stops: list[int] | None = None) -> None:
        self.total = 0
        self.starts = starts if starts is not None else []
        self.stops = stops if stops is not None else []

    async def started(self) -> None:
        self.starts.append(1)

    async def stopped(self) -> None:
        self.stops.append(self.total)

    async def receive(self, message: Msg) -> object:
        match message:
            case Add(amount):
                self.total += amount
                return None
            case Total():
                return self.total
            case Divide(by):
                return self.total / by
            case Crash():
                raise RuntimeError("told to crash")
            case Block(release, entered):
                entered.set()
                await release.wait()
                return None


async def test_an_ask_after_tells_sees_every_told_message_handled_first() -> None:
    async with ActorSystem() as system:
        counter = system.spawn(Counter, name="counter")
        for _ in range(100):
            counter.tell(Add(1))
        assert await counter.ask(Total()) == 100


async def test_failed_ask_raises_in_caller_and_actor_lives_on() -> None:
    async with ActorSystem() as system:
        counter = system.spawn(Counter, name="counter")
        counter.tell(Add(6))
        with pytest.raises(ZeroDivisionError):
            await counter.ask(Divide(0))
        assert await counter.ask(Divide(2)) == 3.0
        assert counter.alive


async def test_ask_times_out_with_a_clear_error() -> None:
    release, entered = asyncio.Event(), asyncio.Event()
    async with ActorSystem() as system:
        counter = system.spawn(Counter, name="slow")
        blocked = asyncio.create_task(counter.ask(Block(release, entered)))
        await entered.wait()
        with pytest.raises(AskTimeout, match="slow did not answer Total"):
            await counter.ask(Total(), timeout=0.05)
        release.set()
        await blocked


async def test_stop_drains_the_mailbox_first() -> None:
    stops: list[int] = []
    async with ActorSystem() as system:
        counter = system.spawn(lambda: Counter(stops=stops), name="counter")
        for _ in range(50):
            counter.tell(Add(2))
        await counter.stop(timeout=5)
    assert stops == [100]


async def test_ask_and_tell_after_stop_fail_clearly() -> None:
    async with ActorSystem() as system:
        counter = system.spawn(Counter, name="counter")
        await counter.stop(timeout=5)
        with pytest.raises(ActorStopped, match="counter is stopped"):
            await counter.ask(Total())
        with pytest.raises(ActorStopped):
            counter.tell(Add(1))
        assert not counter.alive


async def test_crash_restarts_the_actor_with_fresh_state_on_the_same_ref() -> None:
    starts: list[int] = []
    policy = RestartPolicy(max_restarts=3, window=10, backoff_initial=0.001, backoff_max=0.01)
    async with ActorSystem() as system:
        counter = system.spawn(lambda: Counter(starts=starts), name="counter", policy=policy)
        counter.tell(Add(5))
        counter.tell(Crash())
        await wait_until(lambda: len(starts) == 2, timeout=5, message="restart")
        assert await counter.ask(Total()) == 0


async def test_crash_budget_exhausted_escalates_and_stops_the_system() -> None:
    starts: list[int] = []
    policy = RestartPolicy(max_restarts=2, window=10, backoff_initial=0.001, backoff_max=0.01)
    survivor_stops: list[int] = []

    async def crash_three_times() -> None:
        async with ActorSystem() as system:
            system.spawn(lambda: Counter(stops=survivor_stops), name="bystander")
            counter = system.spawn(lambda: Counter(starts=starts), name="flaky", policy=policy)
            for attempt in range(1, 4):
                await wait_until(lambda: len(starts) >= attempt, timeout=5, message="started")  # noqa: B023
                counter.tell(Crash())
            await asyncio.Event().wait()  # the escalation cancels this

    with pytest.raises(ExceptionGroup) as caught:
        await crash_three_times()
    assert caught.group_contains(Escalation, match="flaky crashed 3 times")
    assert len(starts) == 3
    assert survivor_stops == [0], "the bystander ran its teardown when the system stopped"


async def test_crash_in_an_actor_task_restarts_the_actor() -> None:
    starts: list[int] = []

    class Looper(Counter):
        async def started(self) -> None:
            await super().started()
            if len(self.starts) == 1:
                _ = self.start_task(self._boom(), name="boom")

        async def _boom(self) -> None:
            raise RuntimeError("background loop failed")

    policy = RestartPolicy(max_restarts=3, window=10, backoff_initial=0.001, backoff_max=0.01)
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Looper(starts=starts), name="looper", policy=policy)
        await wait_until(lambda: len(starts) == 2, timeout=5, message="restart after task crash")
        assert await ref.ask(Total()) == 0


async def test_system_stops_actors_in_reverse_spawn_order() -> None:
    order: list[str] = []

    class Named(Actor[Add]):
        async def receive(self, message: Add) -> object:
            return None

        async def stopped(self) -> None:
            order.append(self.name)

    async with ActorSystem() as system:
        for name in ("first", "second", "third"):
            system.spawn(Named, name=name)
    assert order == ["third", "second", "first"]


async def test_an_asker_cancelled_mid_ask_gets_cancelled_and_the_actor_serves_on() -> None:
    release, entered = asyncio.Event(), asyncio.Event()
    async with ActorSystem() as system:
        counter = system.spawn(Counter, name="counter")
        ask = asyncio.create_task(counter.ask(Block(release, entered)))
        await entered.wait()
        ask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ask
        release.set()
        assert await counter.ask(Total()) == 0


async def test_an_ask_cancelled_while_still_queued_is_never_handled() -> None:
    release, entered = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    class Recording(Counter):
        async def receive(self, message: Msg) -> object:
            if isinstance(message, Divide):
                handled.append(message.by)
            return await super().receive(message)

    async with ActorSystem() as system:
        ref = system.spawn(Recording, name="recording")
        blocked = asyncio.create_task(ref.ask(Block(release, entered)))
        await entered.wait()
        queued = asyncio.create_task(ref.ask(Divide(1)))
        await wait_until(lambda: len(ref.cell.mailbox) == 1, timeout=5, message="ask queued")
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await blocked
        assert await ref.ask(Total()) == 0
    assert handled == []  # nobody awaited its answer: no work done for it


async def test_an_actor_that_does_not_stop_in_time_is_cancelled() -> None:
    never, entered = asyncio.Event(), asyncio.Event()
    stops: list[int] = []
    async with ActorSystem(stop_timeout=0.05) as system:
        stuck = system.spawn(lambda: Counter(stops=stops), name="stuck")
        blocked = asyncio.create_task(stuck.ask(Block(never, entered)))
        await entered.wait()
    # The system's exit cancelled the stuck actor: its asker fails, its teardown ran.
    with pytest.raises(ActorStopped):
        await blocked
    assert stops == [0]
    assert not stuck.alive
