"""`fabric up`'s live status on a terminal: the block, what it shows, and the API it reads.

Contract:
- `show(statuses, ready)` redraws the block from the conductor's latest child
  statuses (nothing is written when nothing changed).
- `follow_system()` (a task the conductor starts once everything is ready)
  reads the system through the API's JSON-RPC with the admin key every
  `interval`: each cluster online and its lag, the accounts counted by status.
  The key is read at each round, so `fabric keys rotate` does not blind it; a
  failed read shows as one line in the block and is retried.
- `announce(text)` prints a line above the block; `close()` erases the block,
  so the stop's log lines follow plainly; `detach()` stops all output (hangup).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

from actors.cli.rpc import RpcClient, RpcError, Unreachable
from actors.cli.terminal import LiveBlock
from actors.cli.watch import Snapshot, read_snapshot
from actors.up.child import ChildStatus
from actors.up.display import ClusterLine, SystemView, live_lines

INTERVAL = 1.0


class LiveStatus:
    def __init__(
        self, block: LiveBlock, api_url: str, key: Callable[[], str | None], state: str,
        *, interval: float = INTERVAL,
    ) -> None:
        self.block = block
        self.api_url = api_url
        self.key = key
        self.state = state
        self.interval = interval
        self.children: Sequence[ChildStatus] = ()
        self.ready = False
        self.system: SystemView | None = None

    def show(self, statuses: Sequence[ChildStatus], ready: bool) -> None:
        self.children = statuses
        self.ready = ready
        self._redraw()

    def announce(self, text: str) -> None:
        self.block.print_above(text)

    async def follow_system(self) -> None:
        # A short timeout: a stuck read must not freeze the view for the client's default 15 s.
        async with RpcClient(self.api_url, None, timeout=max(self.interval * 3, 2.0)) as rpc:
            while True:
                rpc.key = self.key()
                try:
                    self.system = summarise(await read_snapshot(rpc))
                except (Unreachable, RpcError) as exc:
                    self.system = SystemView(error=str(exc))
                except Exception as exc:  # a courtesy view must not crash the conductor
                    self.system = SystemView(error=f"could not read it: {exc!r}")
                self._redraw()
                await asyncio.sleep(self.interval)

    def close(self) -> None:
        # Erased, not closed: a conductor restarted after a crash draws it again.
        self.block.erase()

    def detach(self) -> None:
        self.block.detach()

    def _redraw(self) -> None:
        self.block.draw(live_lines(
            self.children, self.system, api_url=self.api_url, state=self.state, ready=self.ready
        ))


def summarise(snapshot: Snapshot) -> SystemView:
    clusters = tuple(
        ClusterLine(
            name=str(c.get("name", "?")),
            online=c.get("status") == "online",
            lag=c["lag"] if isinstance(c.get("lag"), int) else None,
        )
        for c in snapshot.clusters
    )
    counts = Counter(str(a.get("status", "?")) for a in snapshot.accounts)
    return SystemView(clusters=clusters, accounts=dict(counts), complete=snapshot.complete)
