"""Actors: private state, a mailbox, `tell` and `ask`.

The contract (after pykka, without threads or proxies):

- An actor owns its state; the only way in is a message through its mailbox,
  handled one at a time by `receive`.
- `tell(msg)` enqueues and returns. `ask(req)` enqueues and awaits the reply,
  with a timeout. A `Request[R]` message declares its reply type `R`.
- An exception raised while handling an `ask` goes back to the asker; the actor
  lives on. An exception while handling a `tell`, or in a task the actor started
  with `start_task`, is a crash: the actor stops and its supervisor decides.
- `stop()` is a message: what was queued before it is handled first. Once stop
  is requested, `tell` and `ask` fail at once with `ActorStopped`.

The mailbox outlives a crash, so refs stay valid across supervised restarts;
only the message being handled when the actor crashed is lost (its asker gets
the exception).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import structlog

M = TypeVar("M")
R = TypeVar("R")

DEFAULT_ASK_TIMEOUT = 10.0


class Request(Generic[R]):
    """Base for messages that expect a reply of type R (use with `ask`)."""

    __slots__ = ()


class Later:
    """What `receive` returns for a reply that is ready after it: the mailbox moves on meanwhile.

    For work that may overlap the next messages (reads an actor runs side by side);
    the actor itself decides what may overlap. The asker gets the future's result or
    exception; a cancelled future answers `ActorStopped`. A tell's `Later` is dropped.
    """

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future


class ActorStopped(RuntimeError):
    """The actor is stopping or stopped and takes no more messages."""


class AskTimeout(TimeoutError):
    """An ask got no reply within its timeout."""


@dataclass(slots=True)
class _Envelope:
    message: object
    reply: asyncio.Future[object] | None


@dataclass(slots=True)
class _Stop:
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Actor(Generic[M]):
    """Subclass and implement `receive`. Override `started`/`stopped` for setup and teardown."""

    name: str = "actor"
    log: structlog.stdlib.BoundLogger
    ref: ActorRef[M]

    async def started(self) -> None:
        """Called before the first message (also after each restart)."""

    async def receive(self, message: M) -> object:
        """Handle one message; the return value is the reply to an ask."""
        raise NotImplementedError

    async def stopped(self) -> None:
        """Called once the mailbox is drained or the actor crashed; release resources here."""

    def start_task(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run a background task owned by this actor; if it fails, the actor crashes."""
        return self.ref.cell.start_task(coro, name=f"{self.name}:{name}")


class ActorRef(Generic[M]):
    """The handle others hold. Safe to share; it never exposes the actor's state."""

    __slots__ = ("cell",)

    def __init__(self, cell: _Cell[M]) -> None:
        self.cell = cell

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def alive(self) -> bool:
        return not self.cell.closing

    def tell(self, message: M) -> None:
        self.cell.enqueue(_Envelope(message, None))

    async def ask(self, message: Request[R], timeout: float = DEFAULT_ASK_TIMEOUT) -> R:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[object] = loop.create_future()
        self.cell.enqueue(_Envelope(message, reply))
        # One future and one timer: a shield and an `asyncio.timeout` cost three times the
        # whole round trip to an idle actor (33 us). The awaited future is the reply itself,
        # so a cancelled asker cancels it and the actor skips it unless already handling it,
        # and an expired one is answered with the timeout: either way the actor's answer
        # finds it done and is dropped.
        timer = loop.call_later(timeout, _expire, reply, self.name, message, timeout)
        try:
            return cast(R, await reply)
        finally:
            timer.cancel()

    def ask_nowait(
        self, message: Request[R], timeout: float = DEFAULT_ASK_TIMEOUT
    ) -> asyncio.Future[R]:
        """`ask`, queued now: the future is the reply, to await later (cancelling it skips
        the message as a cancelled `ask` does). For an asker that must not wait in its own
        mailbox turn yet wants its message in line before anything it does next."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[object] = loop.create_future()
        self.cell.enqueue(_Envelope(message, reply))
        timer = loop.call_later(timeout, _expire, reply, self.name, message, timeout)
        reply.add_done_callback(lambda _: timer.cancel())
        return cast(asyncio.Future[R], reply)

    async def stop(self, timeout: float | None = None) -> None:
        """Ask the actor to stop after what is already queued; wait until it has."""
        await self.cell.request_stop(timeout)

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"


def _expire(reply: asyncio.Future[object], name: str, message: object, timeout: float) -> None:
    if not reply.done():
        reply.set_exception(
            AskTimeout(f"{name} did not answer {type(message).__name__} within {timeout}s")
        )


class _Cell(Generic[M]):
    """Runtime side of one actor: mailbox, current instance, its tasks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mailbox: collections.deque[_Envelope | _Stop] = collections.deque()
        self._wake: asyncio.Future[None] | None = None  # set while the loop waits for mail
        self.closing = False
        self.finished = asyncio.Event()
        self.ref: ActorRef[M] = ActorRef(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: asyncio.Future[BaseException] | None = None
        self._stop: _Stop | None = None

    def enqueue(self, envelope: _Envelope | _Stop) -> None:
        if self.closing and isinstance(envelope, _Envelope):
            raise ActorStopped(f"actor {self.name} is stopped")
        self._put(envelope)

    def _put(self, item: _Envelope | _Stop) -> None:
        self.mailbox.append(item)
        self._wakeup()

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def request_stop(self, timeout: float | None) -> None:
        if not self.closing:
            self.closing = True
            self._stop = _Stop()
            self._put(self._stop)
        if self.finished.is_set():
            return
        await asyncio.wait_for(self.finished.wait(), timeout)

    def start_task(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crash is not None and not self._crash.done():
            self._crash.set_result(exc)
            self._wakeup()

    async def run(self, actor: Actor[M]) -> None:
        """Run one incarnation until stopped (returns) or crashed (raises)."""
        actor.ref = self.ref
        actor.log = structlog.get_logger().bind(actor=self.name)
        self._crash = asyncio.get_running_loop().create_future()
        try:
            await actor.started()
            await self._loop(actor)
        finally:
            await self._cancel_tasks()
            with contextlib.suppress(Exception):
                await actor.stopped()
        assert self._stop is not None
        if not self._stop.done.done():
            self._stop.done.set_result(None)

    async def _loop(self, actor: Actor[M]) -> None:
        assert self._crash is not None
        crash = self._crash
        mailbox = self.mailbox
        while True:
            if crash.done():
                raise crash.result()
            if not mailbox:
                await self._idle()
                continue
            envelope = mailbox.popleft()
            if isinstance(envelope, _Stop):
                return
            await self._handle(actor, envelope)

    async def _idle(self) -> None:
        """Wait until a message arrives or one of the actor's tasks crashed.

        One future, set by whichever comes first (`_put`, `_task_done`): the message stays
        in the mailbox until the loop takes it, so a crash never reorders it.
        """
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def _handle(self, actor: Actor[M], envelope: _Envelope) -> None:
        message = cast(M, envelope.message)
        reply = envelope.reply
        if reply is not None and reply.done():
            return  # the asker gave up (timeout or cancel): do not do work nobody awaits
        try:
            result = await actor.receive(message)
        except asyncio.CancelledError:
            if reply is not None and not reply.done():
                reply.set_exception(ActorStopped(f"actor {self.name} was cancelled"))
            raise
        except Exception as exc:
            if reply is None:
                raise
            if not reply.done():
                reply.set_exception(exc)
            return
        if isinstance(result, Later):
            if reply is not None:
                result.future.add_done_callback(functools.partial(self._answer_later, reply))
            return
        if reply is not None and not reply.done():
            reply.set_result(result)

    def _answer_later(self, reply: asyncio.Future[object], done: asyncio.Future[Any]) -> None:
        if reply.done():
            return
        if done.cancelled():
            reply.set_exception(ActorStopped(f"actor {self.name} was cancelled"))
        elif (exc := done.exception()) is not None:
            reply.set_exception(exc)
        else:
            reply.set_result(done.result())

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def fail_pending(self, reason: str) -> None:
        """After the final stop or escalation: every queued ask fails, nothing hangs."""
        self.closing = True
        while self.mailbox:
            item = self.mailbox.popleft()
            if isinstance(item, _Envelope) and item.reply is not None and not item.reply.done():
                item.reply.set_exception(ActorStopped(f"actor {self.name} {reason}"))
            elif isinstance(item, _Stop) and not item.done.done():
                item.done.set_result(None)
        self.finished.set()
