"""The HTTP face: an aiohttp app inside an actor, with auth, fault injection and a request log.

Every request goes through one middleware: record it, check the bearer token, take a fault
rule if one matches, then route it (discovery, OpenAPI, resources, admin). `ApiError` is
answered as a Status body; any other exception as a 500 InternalError Status, logged in
full, and the process lives on.

Auth: a request that carries `Authorization` must carry `Bearer <token>` (else 401), or the
optional read-only token, which may only read (writes get RBAC's 403 Forbidden). Over plain
http a request without the header is let through, because kubectl never sends credentials
over http; with TLS the header is required (except for /version and health).

Admin (not part of the Kubernetes API, same auth): `POST /_emulator/faults` (a rule, see
control.py), `GET`/`DELETE /_emulator/faults`, `GET /_emulator/requests` (recent requests),
`POST /_emulator/stuck {"namespace": N, "stuck": bool}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from actors.kube_emulator import discovery, errors, paths
from actors.kube_emulator.api import ApiSettings, ResourceApi, flag, json_response
from actors.kube_emulator.control import (
    AddFault,
    ClearFaults,
    ControlMessage,
    FaultBook,
    FaultRule,
    ListFaults,
    RecentRequests,
    RecordRequest,
    TakeFault,
    parse_fault,
)
from actors.kube_emulator.durability import Durability
from actors.kube_emulator.messages import SetStuck, StoreMessage
from actors.runtime import Actor, ActorRef

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PUBLIC = ("/version", "/healthz", "/livez", "/readyz")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
READ_ONLY_USER = "system:serviceaccount:default:viewer"

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    token: str
    version_minor: int = 31
    read_only_token: str | None = None
    tls: ssl.SSLContext | None = None
    api: ApiSettings = field(default_factory=ApiSettings)


def _error(exc: errors.ApiError) -> web.Response:
    response = json_response(exc.status(), exc.code)
    if exc.code == 429:
        response.headers["Retry-After"] = "1"
    return response


class _Dropped(Exception):
    """The response is deliberately never sent (fault injection)."""


class App:
    """Routing and middleware; holds refs to the store and control actors only."""

    def __init__(
        self, settings: ServerSettings, store: ActorRef[StoreMessage],
        control: ActorRef[ControlMessage], durability: Durability, faults: FaultBook,
    ) -> None:
        self.settings = settings
        self.store = store
        self.control = control
        self.faults = faults
        self.closing = False
        self.resources = ResourceApi(store, settings.api, lambda: self.closing, durability)

    def build(self) -> web.Application:
        # One route takes every request, so what a middleware would do is its handler: aiohttp
        # builds a middleware chain per request, which cost more than the work it wrapped.
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        """Authentication, fault injection, the request log and error answers, around `_route`."""
        handler = self._route
        path = request.path
        entry: JSON = {"method": request.method, "path": path, "query": request.query_string,
                       "content_type": request.content_type,
                       "user_agent": request.headers.get("User-Agent", "")}
        admin = path.startswith("/_emulator/")
        try:
            self._authenticate(request)
            rule = None
            if not admin and self.faults.armed:
                rule = await self.control.ask(TakeFault(request.method, path))
            if rule is not None:
                entry["fault"] = rule.mode
                response = await self._inject(request, handler, rule)
            elif request.method == "GET" and flag(request.query.get("watch")):
                # A watch streams for minutes: log it when it starts, not when it ends.
                entry["status"] = 200
                self._record(admin, entry)
                return await handler(request)
            else:
                response = await handler(request)
        except errors.ApiError as exc:
            response = _error(exc)
        except web.HTTPException as exc:  # raised by aiohttp itself, e.g. a body over the limit
            response = _error(errors.from_http(exc.status, exc.text or exc.reason))
        except _Dropped:
            # The transport is already aborted: this response is never written.
            entry["status"] = None
            self._record(admin, entry)
            return web.Response(status=204)
        except Exception as exc:
            log.exception("request_failed", method=request.method, path=path)
            response = _error(errors.ApiError(500, "InternalError",
                                              f"Internal error occurred: {exc}", {}))
        entry["status"] = response.status
        self._record(admin, entry)
        return response

    def _record(self, admin: bool, entry: JSON) -> None:
        if not admin:
            self.control.tell(RecordRequest(entry))

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            if self.settings.tls is None or request.path in _PUBLIC:
                return
            raise errors.unauthorized()
        if header == f"Bearer {self.settings.token}":
            return
        if self.settings.read_only_token and header == f"Bearer {self.settings.read_only_token}":
            self._authorize_read_only(request)
            return
        raise errors.unauthorized()

    @staticmethod
    def _authorize_read_only(request: web.Request) -> None:
        if request.method in ("GET", "HEAD"):
            return
        target = paths.parse(request.path.rstrip("/"))
        if target is None:
            return  # unknown paths answer 404 as for anyone
        verb = _VERBS.get(request.method, request.method.lower())
        if verb == "delete" and target.name is None:
            verb = "deletecollection"
        rtype, name = target.rtype, target.name
        namespace = target.namespace
        if rtype.kind == "Namespace":
            namespace = None
        raise errors.rbac_forbidden(READ_ONLY_USER, verb, rtype, name, namespace)

    async def _inject(
        self, request: web.Request, handler: Handler, rule: FaultRule
    ) -> web.StreamResponse:
        match rule.mode:
            case "error500" | "status":
                return _error(errors.injected(rule.status))
            case "timeout":
                await asyncio.sleep(rule.seconds)
                self._drop(request)
            case "drop_after_apply":
                with contextlib.suppress(errors.ApiError):  # the client hears nothing either way
                    await handler(request)
                self._drop(request)
        raise AssertionError(f"unhandled fault mode {rule.mode}")

    @staticmethod
    def _drop(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise _Dropped()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/_emulator/"):
            return await self._admin(request, path)
        if request.method == "GET":
            static = self._static(request, path)
            if static is not None:
                return json_response(static)
        target = paths.parse(path)
        if target is None:
            raise errors.unknown_path()
        return await self.resources.handle(request, target)

    def _static(self, request: web.Request, path: str) -> JSON | None:
        parts = path.strip("/").split("/")
        if path in _PUBLIC[1:]:
            return {"status": "ok"}
        match parts:
            case ["version"]:
                return discovery.version(self.settings.version_minor)
            case ["api"]:
                return discovery.api_versions(request.host)
            case ["apis"]:
                return discovery.api_group_list()
            case ["api", version]:
                return discovery.api_resource_list("", version) or self._missing()
            case ["apis", group]:
                return discovery.api_group(group) or self._missing()
            case ["apis", group, version]:
                return discovery.api_resource_list(group, version) or self._missing()
            case ["openapi", "v3"]:
                return discovery.openapi_index()
            case ["openapi", "v3", *rest]:
                return discovery.openapi_group_version("/".join(rest)) or self._missing()
            case ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"]:
                raise errors.unknown_path()
        return None

    @staticmethod
    def _missing() -> JSON:
        raise errors.unknown_path()

    async def _admin(self, request: web.Request, path: str) -> web.StreamResponse:
        match (request.method, path):
            case ("POST", "/_emulator/faults"):
                try:
                    rule = parse_fault(await request.json())
                except ValueError as exc:
                    raise errors.bad_request(f"bad fault rule: {exc}")
                await self.control.ask(AddFault(rule))
                return json_response(rule.to_json(), 201)
            case ("GET", "/_emulator/faults"):
                faults: list[JSON] = await self.control.ask(ListFaults())
                return json_response(faults)
            case ("DELETE", "/_emulator/faults"):
                return json_response({"cleared": await self.control.ask(ClearFaults())})
            case ("GET", "/_emulator/requests"):
                recent: list[JSON] = await self.control.ask(RecentRequests())
                return json_response(recent)
            case ("POST", "/_emulator/stuck"):
                try:
                    body = await request.json()
                    name, stuck = body["namespace"], body.get("stuck", True)
                    if not isinstance(name, str) or not isinstance(stuck, bool):
                        raise ValueError("namespace must be a string and stuck a boolean")
                except (ValueError, KeyError, TypeError) as exc:
                    raise errors.bad_request(f"bad stuck request: {exc}")
                await self.resources.ask(SetStuck(name, stuck))
                return json_response({"namespace": name, "stuck": stuck})
        raise errors.unknown_path()


class HttpServer(Actor[None]):
    """Owns the aiohttp runner: bound in `started`, closed in `stopped` (before the store)."""

    def __init__(
        self, settings: ServerSettings, store: ActorRef[StoreMessage],
        control: ActorRef[ControlMessage], on_bound: Callable[[int], None],
        durability: Durability, faults: FaultBook,
    ) -> None:
        self.settings = settings
        self.app = App(settings, store, control, durability, faults)
        self.on_bound = on_bound
        self.runner: web.AppRunner | None = None

    async def started(self) -> None:
        self.runner = web.AppRunner(self.app.build(), access_log=None, shutdown_timeout=0.3)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port,
                           ssl_context=self.settings.tls)
        await site.start()
        port = int(self.runner.addresses[0][1])
        self.log.info("server_started", host=self.settings.host, port=port,
                      tls=self.settings.tls is not None)
        self.on_bound(port)

    async def receive(self, message: None) -> object:
        return None

    async def stopped(self) -> None:
        self.app.closing = True
        if self.runner is not None:
            await self.runner.cleanup()
            self.log.info("server_stopped")
