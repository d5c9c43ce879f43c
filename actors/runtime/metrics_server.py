"""`GET /metrics` of one Prometheus registry on `--metrics-listen HOST:PORT`, for any process.

The broker and every daemon use it (the API serves /metrics on its own port).
`serve_metrics` binds first, in the caller's `setup`, so a taken port fails the
process at once with an `OSError` (exit 2 with one line); then an actor owns the
server, so it stops with the actor system. Spawn it first: actors stop in reverse
order, so the endpoint answers until everything else has stopped.

A scrape runs on the event loop, like the actors, so collectors may read actor
state directly (one thread, no await in between): nothing is sampled on a timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from actors.runtime import Actor, ActorRef, ActorSystem, Request

PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class GetMetricsAddress(Request[tuple[str, int]]):
    """The bound host and port (port 0 in the settings picks a free one)."""


MetricsMessage = GetMetricsAddress


class MetricsServer:
    """An aiohttp site in the running loop serving `registry` at /metrics."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] = (host, port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(PATH, self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.address = (self._host, int(addresses[0][1]))

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await asyncio.shield(runner.cleanup())

    async def _metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self._registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


class MetricsServerActor(Actor[MetricsMessage]):
    """Owns a started `MetricsServer` and closes it when stopped."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    async def started(self) -> None:
        host, port = self._server.address
        self.log.info("metrics_listening", host=host, port=port, path=PATH)

    async def stopped(self) -> None:
        await self._server.close()

    async def receive(self, message: MetricsMessage) -> object:
        match message:
            case GetMetricsAddress():
                return self._server.address
            case _:
                assert_never(message)


async def serve_metrics(
    system: ActorSystem, registry: CollectorRegistry, listen: tuple[str, int]
) -> ActorRef[MetricsMessage]:
    """Bind `listen` now (raising `OSError` when it cannot), then hand the server to an actor."""
    server = MetricsServer(registry, *listen)
    await server.start()
    return system.spawn(lambda: MetricsServerActor(server), name="metrics")
