"""`GET /console/events` over HTTP: what a logged-in page hears, and when the stream ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from actors.api.access import SESSION_COOKIE
from actors.api.keystore import create_key, revoke_key
from tests.api.harness import ADMIN_KEY, RunningApi
from tests.console.client import login, request
from tests.support.fake_bus import FakeBus


class EventReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def next(self, timeout: float = 10.0) -> tuple[str, Any]:
        """The next event (name, parsed data); comments and `retry:` lines are skipped."""
        name, data = "message", ""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self._response.content.readline()).decode()
                if line == "":
                    raise EOFError("the stream ended")
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    data = line[len("data: "):]
                elif line == "" and data:
                    return name, json.loads(data)

    async def until(self, name: str, timeout: float = 10.0) -> Any:
        while True:
            got, data = await self.next(timeout)
            if got == name:
                return data


@asynccontextmanager
async def stream(api: RunningApi, cookie: str) -> AsyncIterator[EventReader]:
    async with api.http.get(api.url + "/console/events",
                            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield EventReader(response)


async def test_the_stream_says_hello_lists_clusters_and_sends_each_changed_account(
    api: RunningApi, bus: FakeBus
) -> None:
    cookie = await login(api, ADMIN_KEY)
    async with stream(api, cookie) as events:
        assert await events.until("hello") == {"scope": "admin"}
        clusters = await events.until("clusters")
        assert [(c["name"], c["status"]) for c in clusters] == [("a", "online")]
        await api.result("account.create", {"name": "Acme", "owner_email": "o@acme.example", "slug": "acme"})
        view = await events.until("account")
        assert view["slug"] == "acme", view
        assert view["clusters"]["a"]["state"] == "pending", view
        bus.set_online("cluster:a", False)
        moved = await events.until("clusters")
        assert [(c["name"], c["status"]) for c in moved] == [("a", "offline")]


async def test_the_stream_ends_when_its_key_is_revoked(api: RunningApi) -> None:
    keys_file = api.handles.gate.keys.keys_file
    assert keys_file is not None
    issued = create_key(keys_file, "read", "viewer")
    cookie = await login(api, issued.secret)
    async with stream(api, cookie) as events:
        await events.until("hello")
        revoke_key(keys_file, issued.stored.id)
        assert await events.until("ended") == {"reason": "session"}


async def test_the_stream_needs_a_session(api: RunningApi) -> None:
    assert (await request(api, "GET", "/console/events")).status == 401
    assert (await request(api, "GET", "/console/events", cookie="made-up")).status == 401
