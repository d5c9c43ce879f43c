"""The actor system: one root TaskGroup per process, one-for-one supervision.

Every actor runs as a named task in the root group. When an incarnation
crashes, its supervisor logs it, waits a backoff, and starts a fresh instance
from the actor's factory on the same mailbox. A restart budget (N crashes in T
seconds) bounds this: past it the failure escalates, the root group cancels
everything, and the process exits non-zero. Stopping happens in reverse spawn
order, each actor draining its mailbox first, with a timeout after which it is
cancelled.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import structlog

from actors.runtime.actor import Actor, ActorRef, _Cell

M = TypeVar("M")

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Crashes allowed within `window` seconds before escalating, and the backoff between restarts."""

    max_restarts: int = 5
    window: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


class Escalation(RuntimeError):
    """An actor used up its restart budget; the process must stop."""


class ActorSystem:
    """Use as `async with ActorSystem() as system:`; spawn actors inside."""

    def __init__(self, *, stop_timeout: float = 10.0) -> None:
        self._group = asyncio.TaskGroup()
        # Each actor's cell with the task supervising it, in spawn order.
        self._cells: list[tuple[_Cell[object], asyncio.Task[None]]] = []
        self._stop_timeout = stop_timeout
        self._entered = False

    async def __aenter__(self) -> ActorSystem:
        await self._group.__aenter__()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                await self.stop()
            else:
                # The group is failing and cancels every actor: refuse new messages at once.
                for cell, _task in self._cells:
                    cell.closing = True
        finally:
            await self._group.__aexit__(exc_type, exc, tb)

    def spawn(
        self,
        factory: Callable[[], Actor[M]],
        *,
        name: str,
        policy: RestartPolicy | None = None,
    ) -> ActorRef[M]:
        """Start an actor under one-for-one supervision and return its ref."""
        if not self._entered:
            raise RuntimeError("spawn inside `async with ActorSystem()`")
        cell: _Cell[M] = _Cell(name)
        task = self._group.create_task(
            self._supervise(cell, factory, policy or RestartPolicy()), name=name
        )
        self._cells.append((cell, task))  # type: ignore[arg-type]
        return cell.ref

    async def _supervise(
        self, cell: _Cell[M], factory: Callable[[], Actor[M]], policy: RestartPolicy
    ) -> None:
        crashes: list[float] = []
        backoff = policy.backoff_initial
        while True:
            actor = factory()
            actor.name = cell.name
            try:
                await cell.run(actor)
            except asyncio.CancelledError:
                cell.fail_pending("was cancelled")
                raise
            except Exception as exc:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < policy.window] + [now]
                if len(crashes) > policy.max_restarts:
                    log.error(
                        "actor_escalated",
                        actor=cell.name,
                        crashes=len(crashes),
                        window=policy.window,
                        exc_info=exc,
                    )
                    cell.fail_pending("escalated after too many crashes")
                    raise Escalation(
                        f"actor {cell.name} crashed {len(crashes)} times in {policy.window}s"
                    ) from exc
                log.warning("actor_crashed", actor=cell.name, restart_in=backoff, exc_info=exc)
                if cell.closing:
                    cell.fail_pending("crashed while stopping")
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, policy.backoff_max)
                log.info("actor_restarted", actor=cell.name)
                continue
            cell.fail_pending("is stopped")
            return

    async def stop(self) -> None:
        """Stop every actor in reverse spawn order, each draining its mailbox first."""
        for cell, task in reversed(self._cells):
            if cell.finished.is_set():
                continue
            try:
                await cell.request_stop(self._stop_timeout)
            except TimeoutError:
                log.error("actor_stop_timed_out", actor=cell.name, timeout=self._stop_timeout)
                task.cancel()


async def run_until_signalled(
    setup: Callable[[ActorSystem], Awaitable[None]],
    *,
    stop_timeout: float = 10.0,
    ready: Callable[[], None] | None = None,
) -> int:
    """Process main loop: build the actors, run until SIGTERM/SIGINT, stop cleanly.

    Returns the exit code: 0 after a clean stop, 1 when an actor escalated.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        async with ActorSystem(stop_timeout=stop_timeout) as system:
            await setup(system)
            if ready is not None:
                ready()
            await stop.wait()
            log.info("stop_requested")
    except* Escalation as group:
        for exc in group.exceptions:
            log.error("process_escalated", reason=str(exc))
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("process_stopped", exit_code=code)
    return code
