"""Helpers of the API-key tests: the in-process API on a hand-driven clock, and calls with any key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from actors.api.app import ApiSettings, start_api
from actors.runtime import ActorSystem
from core.bus import BusConnector
from tests.api.harness import RunningApi


@dataclass
class ManualClock:
    """Monotonic seconds that move only when a test says so (rate limits, key-file polling)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def running_api_on(
    settings: ApiSettings, connector: BusConnector, clock: ManualClock
) -> AsyncIterator[RunningApi]:
    async with ActorSystem(stop_timeout=5.0) as system:
        handles = await start_api(system, settings, connector, clock=clock)
        url = await handles.url()
        async with aiohttp.ClientSession() as http:
            yield RunningApi(url, handles, http)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), self
        assert "error" in self.body, self
        error: dict[str, Any] = self.body["error"]
        return error

    @property
    def result(self) -> Any:
        assert self.status == 200, self
        assert isinstance(self.body, dict), self
        assert "result" in self.body, self
        return self.body["result"]


async def send(api: RunningApi, payload: Any, key: str | None) -> Answer:
    """POST any payload with `key` (None: no Authorization header); status, headers and body."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with api.http.post(api.url + "/rpc", data=json.dumps(payload), headers=headers) as response:
        raw = await response.read()
        return Answer(response.status, dict(response.headers), json.loads(raw) if raw else None)


async def call(api: RunningApi, method: str, params: Any, key: str | None, id_: Any = 1) -> Answer:
    return await send(api, {"jsonrpc": "2.0", "method": method, "params": params, "id": id_}, key)


async def issue(api: RunningApi, scope: str, name: str | None = None) -> dict[str, Any]:
    """A new key from `key.create`, made with the admin key: {id, name, scope, created_at, ..., key}."""
    params: dict[str, Any] = {"scope": scope}
    if name is not None:
        params["name"] = name
    issued: dict[str, Any] = (await call(api, "key.create", params, api.key)).result
    return issued


def account_params(slug: str) -> dict[str, str]:
    return {"name": f"Acct {slug}", "owner_email": f"ops@{slug}.example", "slug": slug}
