"""The HTTP front end (the one aiohttp server module): /rpc, /healthz, /readyz, /metrics.

Transport rules before JSON-RPC sees a byte: POST only (405, `Allow: POST`),
`Content-Type: application/json` (415), bodies over `max_body` bytes are 413,
whether announced by Content-Length or discovered while streaming. Each of
these also carries a JSON-RPC-shaped error body. Every JSON-RPC reply is 200
with a JSON body; nothing to reply is 204 with no body; a caller over its
rate limit gets 429 with `Retry-After` (whole seconds) and a -32029 body
(actors/api/access.py decides, per key and per remote address). The server runs under
an actor with `AppRunner` + `TCPSite`, so it lives in our own task tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, assert_never

from aiohttp import web

from actors.api.access import SESSION_COOKIE, Gate
from actors.api.console.guard import origin_checked
from actors.api.jsonrpc import INVALID_REQUEST, Dispatcher, encode, error_object
from actors.api.metrics import CONTENT_TYPE, ApiMetrics
from actors.runtime import Actor, Request

MAX_BODY = 1024 * 1024
JSON = "application/json"
ACCEPTED_TYPES = frozenset({JSON, "application/json-rpc", "application/jsonrequest"})

Probe = Callable[[], Awaitable[dict[str, str]]]


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    body = encode(error_object(INVALID_REQUEST, "Invalid Request", {"reason": reason}))
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


async def _read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None when it is over `cap` bytes (stop reading at once)."""
    if request.content_length is not None:
        if request.content_length > cap:
            return None
        # Announced and small enough: one read, not a chunk loop (aiohttp still stops a body
        # longer than announced, and the app's client_max_size caps it anyway).
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    dispatcher: Dispatcher,
    gate: Gate,
    metrics: ApiMetrics,
    readiness: Probe,
    *,
    max_body: int = MAX_BODY,
) -> web.Application:
    app = web.Application(client_max_size=max_body + 1)

    async def rpc(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _error(405, "use POST", {"Allow": "POST"})
        if request.content_type not in ACCEPTED_TYPES:
            return _error(415, f"Content-Type must be {JSON}")
        body = await _read_capped(request, max_body)
        if body is None:
            return _error(413, f"body too large (at most {max_body} bytes)")
        access = gate.access(request.headers.get("Authorization"), request.remote,
                             request.cookies.get(SESSION_COOKIE))
        reply = await dispatcher.handle(body, access)
        if reply.body is None:
            return web.Response(status=204)
        headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else None
        return web.Response(status=reply.status, body=reply.body, content_type=JSON, headers=headers)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await readiness()
        down = sorted(name for name, state in checks.items() if state != "ok")
        body: dict[str, Any] = {"ready": not down, "down": down, "checks": checks}
        return web.json_response(body, status=503 if down else 200)

    async def metrics_view(_request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app.router.add_route("*", "/rpc", origin_checked(rpc))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


@dataclass(frozen=True, slots=True)
class GetAddress(Request[tuple[str, int]]):
    pass


HttpMessage = GetAddress


class HttpActor(Actor[HttpMessage]):
    """Serves `app` on host:port (port 0 picks a free one; ask GetAddress for it)."""

    def __init__(self, app_factory: Callable[[], web.Application], host: str, port: int) -> None:
        self._app_factory = app_factory
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] = (host, port)

    async def started(self) -> None:
        self._runner = web.AppRunner(
            self._app_factory(), access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self._address = (self._host, int(addresses[0][1]))
        self.log.info("http_started", host=self._address[0], port=self._address[1])

    async def stopped(self) -> None:
        if self._runner is not None:
            await asyncio.shield(self._runner.cleanup())

    async def receive(self, message: HttpMessage) -> object:
        match message:
            case GetAddress():
                return self._address
            case _:
                assert_never(message)
