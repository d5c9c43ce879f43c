"""The account.get baseline: a bare aiohttp handler answering with the same account from memory.

    python -m bench.bare_api ACCOUNT_JSON_FILE

Serves POST /rpc on a free loopback port in its own process (as the API runs
in its own), prints the port on stdout, and runs until SIGTERM. Per request
it does what any JSON-RPC server must at least do: read and parse the body,
and serialise the reply (the account, held in memory as a dict) with the
caller's id. No key check, no cache, no validation: the floor.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web


def app(account: dict[str, Any]) -> web.Application:
    async def rpc(request: web.Request) -> web.Response:
        call = json.loads(await request.read())
        reply = {"jsonrpc": "2.0", "result": account, "id": call.get("id")}
        return web.Response(body=json.dumps(reply).encode(), content_type="application/json")

    application = web.Application()
    application.router.add_post("/rpc", rpc)
    return application


async def serve(account: dict[str, Any]) -> None:
    runner = web.AppRunner(app(account), access_log=None)
    await runner.setup()
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        print(sock.getsockname()[1], flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.bare_api ACCOUNT_JSON_FILE", file=sys.stderr)
        return 2
    asyncio.run(serve(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
