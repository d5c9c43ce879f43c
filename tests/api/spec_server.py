"""The JSON-RPC layer served over real HTTP with a test-only method table (the spec's §7 methods)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from actors.api.access import Gate
from actors.api.auth import KeyRing
from actors.api.http import build_app
from actors.api.jsonrpc import Dispatcher, Method
from actors.api.methods import add_discover
from actors.api.metrics import ApiMetrics
from actors.api.params import Param, Signature

NUMBER = {"type": "number"}


def spec_table() -> dict[str, Method]:
    async def subtract(p: dict[str, Any]) -> Any:
        return p["minuend"] - p["subtrahend"]

    async def sum_(p: dict[str, Any]) -> Any:
        return sum(p.values())

    async def nothing(_p: dict[str, Any]) -> Any:
        return None

    async def get_data(_p: dict[str, Any]) -> Any:
        return ["hello", 5]

    def optional(*names: str) -> tuple[Param, ...]:
        return tuple(Param(n, NUMBER, required=False) for n in names)

    table = {
        m.name: m
        for m in (
            Method("subtract", subtract,
                   Signature((Param("minuend", NUMBER), Param("subtrahend", NUMBER)), "either"),
                   auth=False),
            Method("sum", sum_, Signature(optional("a", "b", "c"), "by-position"), auth=False),
            Method("notify_hello", nothing, Signature(optional("n"), "by-position"), auth=False),
            Method("update", nothing, Signature(optional("a", "b", "c", "d", "e"), "by-position"),
                   auth=False),
            Method("get_data", get_data, Signature(()), auth=False),
        )
    }
    add_discover(table, title="spec examples")
    return table


@asynccontextmanager
async def spec_server() -> AsyncIterator[str]:
    async def ready() -> dict[str, str]:
        return {}

    app = build_app(Dispatcher(spec_table()), Gate(KeyRing("k")), ApiMetrics(), ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/rpc"
    finally:
        await runner.cleanup()
