"""A console client for HTTP-level tests: logs in, then calls with the cookie, as a browser would.

The cookie is carried by hand (the harness's client keeps no cookie for an IP
address): the tests see exactly which cookie and which Origin each request had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from actors.api.access import SESSION_COOKIE
from tests.api.harness import RunningApi


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    set_cookie: str
    body: Any

    def cookie(self) -> str:
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.set_cookie)
        return jar[SESSION_COOKIE].value


async def request(
    api: RunningApi,
    method: str,
    path: str,
    *,
    body: Any = None,
    cookie: str | None = None,
    origin: str | None = "same",
    headers: dict[str, str] | None = None,
) -> Answer:
    """`origin="same"`: the API's own origin, as its page would send; None: no Origin header."""
    sent = dict(headers or {})
    if body is not None:
        sent["Content-Type"] = "application/json"
    if cookie is not None:
        sent["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    if origin is not None:
        sent["Origin"] = api.url if origin == "same" else origin
    data = None if body is None else json.dumps(body).encode()
    async with api.http.request(method, api.url + path, data=data, headers=sent) as response:
        raw = await response.read()
        return Answer(
            response.status,
            dict(response.headers),
            response.headers.get("Set-Cookie", ""),
            json.loads(raw) if raw else None,
        )


async def login(api: RunningApi, key: str) -> str:
    answer = await request(api, "POST", "/console/login", body={"key": key})
    assert answer.status == 200, answer
    return answer.cookie()


async def rpc(
    api: RunningApi, cookie: str, method: str, params: dict[str, Any], *, origin: str | None = "same"
) -> Answer:
    return await request(api, "POST", "/rpc", cookie=cookie, origin=origin,
                         body={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
