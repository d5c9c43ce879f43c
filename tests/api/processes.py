"""Real `bin/api` processes for tests, and a reader of the whole broker log."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp

from core.envelope import Envelope
from tests.api.harness import ADMIN_KEY
from tests.support.ports import free_port
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory, Subscriber
from transport.sockets import close_context, new_context

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
        "--state-dir", str(state_dir), *extra, name=name, env=FAST_ENV,
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
    """Every event in the broker's log, read from the start by a throwaway consumer."""
    async with asyncio.timeout(timeout):
        return await _read_log(endpoints)


async def _read_log(endpoints: BrokerEndpoints) -> list[Envelope]:
    ctx = new_context()
    try:
        async with Directory(ctx, endpoints, timeout=2.0) as directory:
            head = await directory.head()
        events: list[Envelope] = []
        if head == 0:
            return events
        async with Subscriber(ctx, endpoints, consumer=f"audit-{uuid.uuid4().hex[:8]}") as sub:
            deliveries = sub.deliveries()
            try:
                async for delivery in deliveries:
                    events.append(delivery.envelope)
                    await sub.ack(delivery.seq)
                    if delivery.seq >= head:
                        break
            finally:
                await deliveries.aclose()  # type: ignore[attr-defined]
        return events
    finally:
        close_context(ctx)
