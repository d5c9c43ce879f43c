"""The conductor: starts `fabric up`'s children stage by stage, then watches them.

Contract:
- Stages start in order; a stage is launched once every child of the stages
  before it is ready (probes), so the api finds its database and broker and
  a daemon finds its kubeconfig.
- When all children are ready it writes DIR/ready, prints the API URL and a
  status table on stdout; afterwards each state change is one line. With a
  `LiveStatus` (stdout is a terminal) it redraws that block at each tick
  instead, announces the API URL above it, and starts the live status's read
  of the system through the API.
- It re-sends `Launch` to an idle child (one whose actor was restarted after
  a crash), so every child keeps running while `fabric up` does.
- Stopping it removes DIR/ready; the children's actors, spawned before it,
  are stopped after it in reverse start order by the actor system.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import TextIO, assert_never

from actors.runtime import Actor, ActorRef
from actors.runtime.files import write_atomic
from actors.up.child import ChildMessage, ChildStatus, GetStatus, Launch
from actors.up.display import change_line, progress_line, status_table
from actors.up.layout import Layout, remove_file
from actors.up.status import LiveStatus

WATCH_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Staged:
    name: str
    stage: int
    ref: ActorRef[ChildMessage]


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


ConductorMessage = _Tick


class Conductor(Actor[ConductorMessage]):
    def __init__(
        self, children: list[Staged], layout: Layout, api_url: str, out: TextIO = sys.stdout,
        *, live: LiveStatus | None = None,
    ) -> None:
        self.children = children
        self.layout = layout
        self.api_url = api_url
        self.out = out
        self.live = live
        self.stages = sorted({c.stage for c in children})
        self.launched_stage = -1
        self.ready = False
        self.last: dict[str, ChildStatus] = {}
        self.last_progress = ""

    async def started(self) -> None:
        _ = self.start_task(self._ticker(), name="ticker")

    async def _ticker(self) -> None:
        while True:
            self.ref.tell(_Tick())
            await asyncio.sleep(WATCH_INTERVAL)

    async def receive(self, message: ConductorMessage) -> object:
        match message:
            case _Tick():
                await self._tick()
                return None
            case _:
                assert_never(message)

    async def _tick(self) -> None:
        statuses = [await c.ref.ask(GetStatus()) for c in self.children]
        by_name = {s.name: s for s in statuses}
        for child in self.children:
            if child.stage <= self.launched_stage and by_name[child.name].state == "idle":
                child.ref.tell(Launch())
        if not self.ready:
            self._advance(statuses)
        elif self.live is None:
            for s in statuses:
                before = self.last.get(s.name)
                if before is not None and (before.state, before.pid) != (s.state, s.pid):
                    self._print(change_line(before, s))
        self.last = by_name
        if self.live is not None:
            self.live.show(statuses, self.ready)

    def _advance(self, statuses: list[ChildStatus]) -> None:
        stage_of = {c.name: c.stage for c in self.children}
        launched = [s for s in statuses if stage_of[s.name] <= self.launched_stage]
        if all(s.state == "ready" for s in launched):
            later = [st for st in self.stages if st > self.launched_stage]
            if later:
                self.launched_stage = later[0]
                for child in self.children:
                    if child.stage == self.launched_stage:
                        child.ref.tell(Launch())
            else:
                self.ready = True
                write_atomic(self.layout.ready_file, self.api_url + "\n")
                announcement = f"Fabric is up. API: {self.api_url}  (state: {self.layout.root})"
                if self.live is None:
                    self._print(status_table(statuses))
                    self._print(announcement)
                else:
                    self.live.announce(announcement)
                    _ = self.start_task(self.live.follow_system(), name="system-status")
                self.log.info("system_ready", api=self.api_url)
                return
        if self.live is not None:
            return
        line = progress_line(statuses)
        if line != self.last_progress:
            self.last_progress = line
            self._print(line)

    def _print(self, line: str) -> None:
        # The display is a courtesy: a closed terminal or pipe must not stop the supervisor.
        with contextlib.suppress(OSError, ValueError):
            print(line, file=self.out, flush=True)

    async def stopped(self) -> None:
        remove_file(self.layout.ready_file)
        if self.live is not None:
            # The children stop after this actor; their log lines follow without the block.
            self.live.close()
