"""One actor per child process: start it, keep its pid file current, probe it, restart it.

Contract:
- `Launch` starts the process if it is not running (idempotent).
- When the process exits without being asked to, it is restarted after a
  backoff (doubling from `backoff_initial` up to `backoff_max`; reset once a
  run lasted `stable_after` seconds), with the same argv: the same addresses.
- `DIR/run/NAME.pid` holds the current pid while a process runs.
- The process runs in its own session (process group), so a Ctrl-C at the
  terminal reaches only `fabric up`, which stops children in order; stopping
  sends `stop_signal` to the group, then SIGKILL after `stop_timeout`.
- It dies with `fabric up` (Linux): should `up` itself die without stopping
  it (SIGKILL, a crash), the kernel sends it `stop_signal` (see `_die_with_us`).
- `GetStatus` answers with a `ChildStatus` snapshot (state, pid, restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, assert_never

from actors.runtime import Actor, Request
from actors.up.layout import Layout, remove_file, write_pid
from actors.up.plan import ChildSpec
from actors.up.probes import ProbeResult, run_probe

ChildState = Literal["idle", "starting", "ready", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class Timing:
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    stable_after: float = 10.0
    stop_timeout: float = 10.0
    probe_interval: float = 0.2
    probe_interval_ready: float = 1.0


@dataclass(frozen=True, slots=True)
class ChildStatus:
    name: str
    state: ChildState
    pid: int | None
    restarts: int
    last_exit: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class Launch:
    pass


@dataclass(frozen=True, slots=True)
class GetStatus(Request[ChildStatus]):
    pass


@dataclass(frozen=True, slots=True)
class _Exited:
    generation: int
    returncode: int


@dataclass(frozen=True, slots=True)
class _RestartDue:
    generation: int


@dataclass(frozen=True, slots=True)
class _Probed:
    generation: int
    result: ProbeResult


ChildMessage = Launch | GetStatus | _Exited | _RestartDue | _Probed


class ChildActor(Actor[ChildMessage]):
    def __init__(self, spec: ChildSpec, layout: Layout, timing: Timing) -> None:
        self.spec = spec
        self.layout = layout
        self.timing = timing
        self.process: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.state: ChildState = "idle"
        self.restarts = 0
        self.backoff = timing.backoff_initial
        self.started_at = 0.0
        self.last_exit: int | None = None
        self.detail = ""
        self.probe_task: asyncio.Task[None] | None = None

    async def receive(self, message: ChildMessage) -> object:
        match message:
            case Launch():
                if self.state in ("idle", "stopped"):
                    await self._spawn()
                return None
            case GetStatus():
                return ChildStatus(
                    self.spec.name,
                    self.state,
                    self.process.pid if self.process and self.process.returncode is None else None,
                    self.restarts,
                    self.last_exit,
                    self.detail,
                )
            case _Exited(generation=gen, returncode=rc):
                if gen == self.generation:
                    self._on_exit(rc)
                return None
            case _RestartDue(generation=gen):
                if gen == self.generation and self.state == "restarting":
                    self.restarts += 1
                    self.log.info("child_restarted", child=self.spec.name, restarts=self.restarts)
                    await self._spawn()
                return None
            case _Probed(generation=gen, result=result):
                if gen == self.generation and self.state in ("starting", "ready"):
                    self._on_probe(result)
                return None
            case _:
                assert_never(message)

    async def _spawn(self) -> None:
        self.generation += 1
        gen = self.generation
        env = {**os.environ, **self.spec.env()}
        log_path = self.layout.log_file(self.spec.name)
        with log_path.open("ab") as log:
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self.spec.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=self.layout.root,
                    start_new_session=True,
                    preexec_fn=_die_with_us(self.spec.stop_signal),
                )
            except OSError as exc:
                # A missing executable is not worth a crash loop of the actor: treat as an exit.
                self.log.error("child_start_failed", child=self.spec.name, error=str(exc))
                self.process = None
                self._on_exit(-1)
                return
        self.state = "starting"
        self.detail = ""
        self.started_at = time.monotonic()
        write_pid(self.layout, self.spec.name, self.process.pid)
        self.log.info("child_started", child=self.spec.name, pid=self.process.pid)
        process = self.process
        _ = self.start_task(self._watch(gen, process), name=f"watch-{gen}")
        if self.probe_task is not None:
            self.probe_task.cancel()
        self.probe_task = self.start_task(self._probe_loop(gen), name=f"probe-{gen}")

    def _on_exit(self, returncode: int) -> None:
        self.last_exit = returncode
        if self.probe_task is not None:
            self.probe_task.cancel()
            self.probe_task = None
        remove_file(self.layout.pid_file(self.spec.name))
        ran_for = time.monotonic() - self.started_at
        if ran_for >= self.timing.stable_after:
            self.backoff = self.timing.backoff_initial
        delay = self.backoff
        self.backoff = min(self.backoff * 2, self.timing.backoff_max)
        self.state = "restarting"
        self.detail = f"exited with {returncode}, restarting in {delay:.1f}s"
        self.log.warning(
            "child_exited", child=self.spec.name, returncode=returncode, restart_in=delay,
            log_file=str(self.layout.log_file(self.spec.name)),
        )
        _ = self.start_task(self._restart_after(self.generation, delay), name="restart-timer")

    def _on_probe(self, result: ProbeResult) -> None:
        if result.ok and self.state == "starting":
            self.log.info("child_ready", child=self.spec.name)
        self.state = "ready" if result.ok else "starting"
        self.detail = result.detail

    async def _watch(self, generation: int, process: asyncio.subprocess.Process) -> None:
        rc = await process.wait()
        self.ref.tell(_Exited(generation, rc))

    async def _restart_after(self, generation: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self.ref.tell(_RestartDue(generation))

    async def _probe_loop(self, generation: int) -> None:
        interval = self.timing.probe_interval
        while True:
            result = await run_probe(self.spec.probe)
            self.ref.tell(_Probed(generation, result))
            interval = self.timing.probe_interval_ready if result.ok else self.timing.probe_interval
            await asyncio.sleep(interval)

    async def stopped(self) -> None:
        """Stop the process: its stop signal to the group, SIGKILL after the timeout."""
        process = self.process
        self.state = "stopped"
        if process is None or process.returncode is not None:
            remove_file(self.layout.pid_file(self.spec.name))
            return
        self.log.info("child_stopping", child=self.spec.name, pid=process.pid)
        _signal_group(process.pid, self.spec.stop_signal)
        try:
            rc = await asyncio.wait_for(process.wait(), self.timing.stop_timeout)
        except TimeoutError:
            self.log.warning("child_stop_timed_out", child=self.spec.name, pid=process.pid)
            _signal_group(process.pid, signal.SIGKILL)
            rc = await process.wait()
        # Whatever the child left in its group (postgres backends, a wrapper's child) goes too.
        _signal_group(process.pid, signal.SIGKILL)
        remove_file(self.layout.pid_file(self.spec.name))
        self.log.info("child_stopped", child=self.spec.name, returncode=rc)


_PR_SET_PDEATHSIG = 1


def _die_with_us(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec that makes the kernel send `sig` to the child when this process dies.

    Why PR_SET_PDEATHSIG rather than a lifeline pipe: a pipe only works for children
    that watch it, and postgres and nats-server are not ours to change; the kernel
    signal reaches any program and needs nothing from it. Why `stop_signal`, not
    SIGKILL: each child then stops as cleanly as in an ordered stop (postgres's fast
    shutdown, our processes' SIGTERM); one that hangs is the next `up`'s leftover to
    clear. Two caveats handled here: the signal fires when the forking *thread* ends,
    so it is only armed for children started from the main thread (where the event
    loop of `fabric up` runs); and `up` may die between fork and prctl, so the child
    checks it still has the parent it was forked by. Elsewhere than Linux: None (the
    leftover sweep of the next `up` remains).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    # Resolved before the fork: the child runs no lookup, import or allocation of its own.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    signum = int(sig)

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return arm


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
