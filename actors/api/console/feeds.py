"""What the console's live stream reads, as plain callables over the API's actors and methods.

Account views and the cluster list come from the very JSON-RPC handlers the
API serves (`account.get`, `cluster.list`), so the stream shows exactly what
a client calling them would see; changes come from the cache's change feed
(`SubscribeChanges`) and the cluster directory's change signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.api.cache import CacheMessage, SubscribeChanges
from actors.api.clusters import DirectoryMessage, WatchDirectory
from actors.api.jsonrpc import Method, RpcError, decoded
from actors.api.watchers import Subscription
from actors.runtime import ActorRef


@dataclass(frozen=True, slots=True)
class Feeds:
    cache: ActorRef[CacheMessage]
    directory: ActorRef[DirectoryMessage]
    methods: Mapping[str, Method]
    timeout: float = 10.0

    async def subscribe(self, limit: int) -> Subscription:
        return await self.cache.ask(SubscribeChanges(limit), timeout=self.timeout)

    async def directory_moved(self) -> asyncio.Future[None]:
        return await self.directory.ask(WatchDirectory(), timeout=self.timeout)

    async def account(self, account_id: str) -> dict[str, Any] | None:
        """The account's view as `account.get` answers it; None when it cannot be read now."""
        try:
            view = decoded(await self.methods["account.get"].handler({"id": account_id}))
        except RpcError:
            return None
        return view if isinstance(view, dict) else None

    async def clusters(self) -> list[dict[str, Any]] | None:
        """`cluster.list`'s answer; None while the broker has not answered yet."""
        try:
            found = await self.methods["cluster.list"].handler({})
        except RpcError:
            return None
        return found if isinstance(found, list) else None
