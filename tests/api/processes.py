"""Real `bin/api` processes for tests, and a reader of the whole broker log."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from core.bus import ConsumerInfo
from core.envelope import Envelope
from tests.api.harness import ADMIN_KEY
from tests.support.keys import api_keys, client_flags
from tests.support.ports import free_port
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until
from transport.connector import BrokerConnector
from transport.endpoints import BrokerEndpoints

FAST_ENV = {
    "FABRIC_ADMIN_KEY": ADMIN_KEY,
    "FABRIC_RELAY_POLL_SECONDS": "0.2",
    "FABRIC_RETRY_BACKOFF_MAX": "0.3",
    "FABRIC_DIRECTORY_INTERVAL": "0.2",
}


async def start_api_process(
    procs: ProcessGroup,
    *,
    dsn: str,
    endpoints: BrokerEndpoints,
    state_dir: Path,
    port: int | None = None,
    name: str = "api",
    extra: tuple[str, ...] = (),
) -> tuple[Proc, str]:
    port = port or free_port()
    proc = await procs.start(
        "api", "--listen", f"127.0.0.1:{port}", "--legacy-dsn", dsn, "--broker", str(endpoints),
        *client_flags("api"), "--state-dir", str(state_dir), *extra, name=name, env=FAST_ENV,
    )
    url = f"http://127.0.0.1:{port}"
    await wait_healthy(url, proc)
    return proc, url


async def wait_healthy(url: str, proc: Proc) -> None:
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            assert proc.running, f"api exited: {proc.log_text()[-2000:]}"
            async with http.get(url + "/healthz") as response:
                return response.status == 200

        _ = await wait_until(healthy, timeout=30, message="api /healthz")


async def read_log(endpoints: BrokerEndpoints, timeout: float = 15.0) -> list[Envelope]:
    """Every record the broker's (compacted) log holds, read from the start by a throwaway consumer."""
    async with asyncio.timeout(timeout):
        return await _read_log(BrokerConnector(endpoints, keys=api_keys(), timeout=2.0))


async def _read_log(connector: BrokerConnector) -> list[Envelope]:
    consumer = f"cache-audit-{uuid.uuid4().hex[:8]}"  # a consumer the api identity may read
    events: list[Envelope] = []
    try:
        async with connector.subscription(consumer) as subscription:
            batches = subscription.batches()
            try:
                async for batch in batches:
                    events += [d.envelope for d in batch.deliveries]
                    if batch.caught_up:
                        break
            finally:
                aclose = getattr(batches, "aclose", None)  # an async generator: end it now
                if aclose is not None:
                    await aclose()
    finally:
        async with connector.directory() as directory:
            await directory.remove(consumer)  # a registered reader would hold tombstones back
    return events


async def consumers(endpoints: BrokerEndpoints) -> dict[str, ConsumerInfo]:
    async with BrokerConnector(endpoints, keys=api_keys(), timeout=2.0).directory() as directory:
        return {c.name: c for c in await directory.consumers()}


class Client:
    """A JSON-RPC client of one real `bin/api`, with the admin key."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self._id = 0

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The whole reply (a result or an error); HTTP status must be 200."""
        self._id += 1
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._id}
        async with self.http.post(
            self.url + "/rpc", json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as response:
            assert response.status == 200
            reply: dict[str, Any] = await response.json()
            return reply

    async def result(self, method: str, params: dict[str, Any]) -> Any:
        """The call's result; an error reply fails the test."""
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]
