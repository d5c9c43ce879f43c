"""The console's HTTP routes, mounted on the API's aiohttp application.

| route | meaning |
| --- | --- |
| `GET /` | the page (static/index.html); it calls the routes below and `POST /rpc` |
| `GET /console/static/NAME` | its script and style sheet |
| `POST /console/login` | `{"key"}` (JSON) -> session cookie + `{key_id, key_name, scope}`; 401 |
| `POST /console/logout` | ends the session, clears the cookie (204) |
| `GET /console/session` | `{key_id, key_name, scope}` of the session, or 401 |
| `GET /console/events` | live updates (actors/api/console/events.py) |

The cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when the request
came over TLS. Login pays like any keyed request: a wrong key counts against
the caller's address (the API's guessing limit) and a limited caller gets 429
with `Retry-After`. Login also refuses a foreign Origin (login CSRF). Pages
carry a strict Content-Security-Policy: scripts and styles from this origin only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from actors.api.access import SESSION_COOKIE, Gate
from actors.api.auth import Principal
from actors.api.console.events import EventStreams
from actors.api.console.feeds import Feeds
from actors.api.console.guard import origin_checked, origin_problem, refusal
from actors.api.console.sessions import ConsoleSettings, SessionStore

log = structlog.get_logger()

MAX_LOGIN_BODY = 4096
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _asset(name: str) -> bytes:
    return resources.files("actors.api.console").joinpath("static", name).read_bytes()


def _who(principal: Principal) -> dict[str, str]:
    return {"key_id": principal.key_id, "key_name": principal.key_name, "scope": principal.scope}


@dataclass(frozen=True, slots=True)
class Console:
    sessions: SessionStore
    gate: Gate
    feeds: Feeds
    settings: ConsoleSettings
    interval: float  # the cluster directory's: how often the clusters panel may change

    def mount(self, app: web.Application) -> web.Application:
        """Add the console's routes to the API's application (its `/rpc` is `origin_checked`)."""
        streams = EventStreams(self.sessions, self.feeds, self.settings, self.interval)
        page = _asset("index.html")
        assets = {name: _asset(name) for name in ASSETS}

        async def index(_request: web.Request) -> web.Response:
            return web.Response(body=page, content_type="text/html", charset="utf-8",
                                headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

        async def static(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in assets:
                raise web.HTTPNotFound()
            return web.Response(body=assets[name], content_type=ASSETS[name], charset="utf-8",
                                headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

        async def session(request: web.Request) -> web.Response:
            principal = self._principal(request)
            if principal is None:
                return web.json_response({"error": "not logged in"}, status=401,
                                         headers={"Cache-Control": "no-store"})
            return web.json_response(_who(principal), headers={"Cache-Control": "no-store"})

        async def shutdown(_app: web.Application) -> None:
            streams.stop_all()

        app.on_shutdown.append(shutdown)
        app.router.add_get("/", index)
        app.router.add_get("/console/static/{name}", static)
        app.router.add_post("/console/login", self._login)
        app.router.add_post("/console/logout", origin_checked(self._logout))
        app.router.add_get("/console/session", session)
        app.router.add_get("/console/events", streams.handle)
        return app

    def _principal(self, request: web.Request) -> Principal | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            return None
        found = self.sessions.identify(session_id)
        return found if isinstance(found, Principal) else None

    async def _login(self, request: web.Request) -> web.StreamResponse:
        problem = origin_problem(request, required=False)
        if problem is not None:
            log.warning("console_origin_refused", path=request.path, remote=request.remote)
            return refusal(403, problem)
        if request.content_type != "application/json":
            # A cross-site form cannot send JSON without a CORS preflight, which we never grant.
            return refusal(415, "Content-Type must be application/json")
        body = await request.content.read(MAX_LOGIN_BODY + 1)
        if len(body) > MAX_LOGIN_BODY:
            return refusal(413, f"body too large (at most {MAX_LOGIN_BODY} bytes)")
        key = _key_of(body)
        if key is None:
            return refusal(400, 'expected {"key": "<API key>"}')
        if not key.strip():
            return web.json_response({"error": "enter an API key", "reason": "missing"}, status=401)
        access = self.gate.access(f"Bearer {key.strip()}", request.remote)
        wait = access.admit(1)
        if wait is not None:
            return web.json_response({"error": "too many attempts; try again later"}, status=429,
                                     headers={"Retry-After": str(wait)})
        principal = access.identity
        if not isinstance(principal, Principal):
            return web.json_response({"error": "wrong or revoked API key", "reason": principal},
                                     status=401)
        response = web.json_response(_who(principal), headers={"Cache-Control": "no-store"})
        response.set_cookie(SESSION_COOKIE, self.sessions.open(principal), path="/", httponly=True,
                            samesite="Strict", secure=request.secure)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            self.sessions.close(session_id)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/", samesite="Strict", secure=request.secure)
        return response


def _key_of(body: bytes) -> str | None:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    key: str = data["key"]
    return key
