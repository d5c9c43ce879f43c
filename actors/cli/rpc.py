"""The operator tool's JSON-RPC 2.0 client: one call per request, errors sorted by what happened.

- `RpcError(code, message, data)`: the server answered with a JSON-RPC error.
- `Unreachable(reason)`: no usable answer (connection refused, timeout,
  a non-JSON or non-JSON-RPC body). The call may or may not have happened.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp

DEFAULT_TIMEOUT = 15.0


class RpcError(Exception):
    """The server answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"error {self.code}: {self.message}"


class Unreachable(Exception):
    """The API gave no usable answer; the reason says why."""


class RpcClient:
    """`async with RpcClient(url, key) as rpc: await rpc.call("account.list", {})`."""

    def __init__(self, url: str, key: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/") + "/rpc"
        self.key = key
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RpcClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        assert self._session is not None, "use RpcClient in `async with`"
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            async with self._session.post(self.url, json=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            raise Unreachable(f"no answer from {self.url} within {self.timeout}s")
        except aiohttp.ClientError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}")
        return _result(text, status, self.url)


def _result(text: str, status: int, url: str) -> Any:
    try:
        reply = json.loads(text)
    except ValueError:
        raise Unreachable(f"{url} answered HTTP {status} without JSON: {text[:200]!r}")
    if not isinstance(reply, dict):
        raise Unreachable(f"{url} answered HTTP {status} with something that is not a JSON-RPC reply")
    error = reply.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        raise RpcError(
            code if isinstance(code, int) else -32603,
            str(error.get("message", "")),
            error.get("data"),
        )
    if "result" not in reply:
        raise Unreachable(f"{url} answered HTTP {status} with neither result nor error")
    return reply["result"]
