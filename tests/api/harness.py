"""The API in-process for tests: the real actors and HTTP server, with an in-memory or real bus.

    async with running_api(fast_settings(pg_dsn, tmp_path), bus.connector()) as api:
        reply = await api.call("account.create", {...})
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp

from actors.api.app import ApiHandles, ApiSettings, start_api
from actors.api.relay import RelaySettings
from actors.runtime import ActorSystem
from core.bus import BusConnector
from core.events import DomainEvent, to_envelope
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

T = TypeVar("T")

ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789abcdef"


@dataclass
class RunningApi:
    url: str
    handles: ApiHandles
    http: aiohttp.ClientSession
    key: str = ADMIN_KEY
    _ids: int = 0

    def headers(self, key: str | None = "") -> dict[str, str]:
        key = self.key if key == "" else key
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    async def post(
        self, body: bytes, *, key: str | None = "", content_type: str = "application/json"
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.url + "/rpc", data=io.BytesIO(body),
            headers={**self.headers(key), "Content-Type": content_type},
        ) as response:
            raw = await response.read()
            return response.status, (None if not raw else _json(raw))

    async def call(self, method: str, params: Any = None, *, key: str | None = "") -> Any:
        """One request; returns the whole response object."""
        self._ids += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._ids}
        if params is not None:
            request["params"] = params
        import json

        status, reply = await self.post(json.dumps(request).encode(), key=key)
        assert status == 200, (status, reply)
        return reply

    async def result(self, method: str, params: Any = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]


def _json(raw: bytes) -> Any:
    import json

    return json.loads(raw)


def fast_settings(dsn: str, state_dir: Path, **overrides: Any) -> ApiSettings:
    settings = ApiSettings(
        legacy_dsn=dsn,
        state_dir=state_dir,
        admin_key=ADMIN_KEY,
        host="127.0.0.1",
        port=0,
        relay=RelaySettings(poll_interval=0.2, backoff_initial=0.02, backoff_max=0.3),
        directory_interval=0.1,
        rpc_timeout=10.0,
        legacy_timeout=2.0,
    )
    return replace(settings, **overrides)


@asynccontextmanager
async def running_api(settings: ApiSettings, connector: BusConnector) -> AsyncIterator[RunningApi]:
    async with ActorSystem(stop_timeout=5.0) as system:
        handles = await start_api(system, settings, connector)
        url = await handles.url()
        async with aiohttp.ClientSession() as http:
            yield RunningApi(url, handles, http)


async def publish_event(bus: FakeBus, event: DomainEvent) -> str:
    """Publish a daemon's event as a daemon would; return its event id."""
    envelope = to_envelope(event, correlation_id="test")
    await bus.publish([envelope])
    return envelope.event_id


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 10.0, message: str = "condition"
) -> T:
    """`wait_until` for an async probe, typed (its signature cannot infer T from a coroutine)."""
    loose: Callable[[], Any] = probe
    return cast(T, await wait_until(loose, timeout=timeout, message=message))
