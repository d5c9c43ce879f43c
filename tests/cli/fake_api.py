"""A tiny stand-in for the API's JSON-RPC endpoint, for testing the operator tool alone.

It records each call and answers from a script: a result, a JSON-RPC error, or
a raw HTTP body. The real API is exercised by tests/system.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.ports import free_port

Handler = Callable[[str, dict[str, Any]], Any]


@dataclass
class FakeApi:
    url: str
    calls: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    handler: Handler = field(default=lambda method, params: None)
    raw: str | None = None


class RpcFail(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data


@asynccontextmanager
async def fake_api() -> AsyncIterator[FakeApi]:
    port = free_port()
    api = FakeApi(url=f"http://127.0.0.1:{port}")

    async def rpc(request: web.Request) -> web.Response:
        if api.raw is not None:
            return web.Response(text=api.raw, status=502)
        body = await request.json()
        api.calls.append((body["method"], body["params"], request.headers.get("Authorization")))
        try:
            result = api.handler(body["method"], body["params"])
        except RpcFail as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        return web.Response(
            text=json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield api
    finally:
        await runner.cleanup()
