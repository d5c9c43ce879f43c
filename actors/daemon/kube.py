"""The one home of kubernetes_asyncio: `KubeCluster` implements `core.tenancy.ClusterApi`.

kubernetes_asyncio gives the `Configuration` (kubeconfig or in-cluster; never
the global default), the TLS context and the credentials (`update_params_for_auth`,
so refreshed tokens apply); each call is then one plain-JSON request on one
long-lived aiohttp session, with a client-side timeout so a hung API server
becomes a temporary error. That timeout is one sweep over the requests in
flight (`Deadlines`), not aiohttp's per-request timer: arming and
cancelling a timer handle per request was ~5-13 us of a request's ~130-190 us
of client CPU. The URL is the normalised host plus a path built from
Kubernetes names (DNS labels), taken as already encoded, so it is not parsed
and re-encoded per request. Not `ApiClient.call_api`: its typed models garble
some answers (e.g. delete_namespace), and its session trusts the environment,
which costs two thread-pool hand-offs per request (proxy variables and
~/.netrc read again each time): about a third of the daemon's CPU under load.
The environment's proxy for the API server is read once, at `async with`.

Failures are translated here, once: 409 with body reason AlreadyExists ->
`AlreadyExists` (unless the object is being deleted: `NamespaceTerminating`,
as is a 403 NamespaceTerminating); 404 on GET/DELETE -> absent; 5xx, 429, 409
Conflict, 404 on a write (something vanished mid-reconcile), timeouts and
connection errors -> `TemporaryKubeError`; any other 4xx (and a 404 for a path
the server does not serve) -> `PermanentKubeError` carrying the Kubernetes
reason and message.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from yarl import URL

from actors.daemon.metrics import ClusterMetrics
from core.tenancy import (
    AlreadyExists,
    KubeObject,
    NamespaceTerminating,
    ObjectRef,
    PermanentKubeError,
    TemporaryKubeError,
    ref_of,
)

USER_AGENT = "fabric-daemon/0.1"

# kind -> (API prefix, plural); namespaced kinds get /namespaces/{ns} inserted.
_KINDS: dict[str, tuple[str, str]] = {
    "Namespace": ("/api/v1", "namespaces"),
    "ResourceQuota": ("/api/v1", "resourcequotas"),
    "LimitRange": ("/api/v1", "limitranges"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}


class KubeConfigError(ValueError):
    """The kubeconfig (or in-cluster config) cannot be loaded."""


async def load_configuration(
    kubeconfig: Path | None, context: str | None = None
) -> client.Configuration:
    """A fresh Configuration from a kubeconfig file (its `context`, default the current one),
    or in-cluster settings when no file is given."""
    cfg = client.Configuration()
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            if not await asyncio.to_thread(kubeconfig.is_file):
                raise KubeConfigError(f"kubeconfig {kubeconfig} does not exist")
            await config.load_kube_config(
                config_file=str(kubeconfig), context=context, client_configuration=cfg
            )
    except KubeConfigError:
        raise
    except Exception as exc:
        # One line whatever the loader raised (YAML errors span several lines).
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "in-cluster config"
        raise KubeConfigError(f"{where}: not usable ({detail})")
    return cfg


def _path(ref: ObjectRef, *, with_name: bool = True) -> str:
    try:
        prefix, plural = _KINDS[ref.kind]
    except KeyError:
        raise PermanentKubeError(f"kind {ref.kind} is not managed by the daemon")
    ns = f"/namespaces/{ref.namespace}" if ref.namespace is not None else ""
    name = f"/{ref.name}" if with_name else ""
    return f"{prefix}{ns}/{plural}{name}"


class Deadlines:
    """A client-side timeout for every request in flight, kept by one sweep.

    `track()` around a request records its task and start; while any is in flight a
    sweep runs every `timeout / SWEEPS` seconds and cancels the tasks whose request has
    run `timeout` or longer, so a request ends between `timeout` and `timeout * (1 +
    1 / SWEEPS)`. `expired(task)` then tells the request's own `except CancelledError`
    that the cancellation was the deadline's (and takes it back, as `asyncio.timeout`
    does), not its caller's.
    """

    SWEEPS = 4

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started: dict[asyncio.Task[Any], float] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def track(self) -> _Tracked:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Kubernetes request outside a task")
        return _Tracked(self, task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the deadline cancelled `task` (taken back): False for any other cancellation."""
        if task not in self._cancelled:
            return False
        self._cancelled.discard(task)
        return task.uncancel() == 0

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _start(self, task: asyncio.Task[Any]) -> None:
        loop = task.get_loop()
        self._started[task] = loop.time()
        if self._sweep is None:
            self._sweep = loop.call_later(self.timeout / self.SWEEPS, self._run_sweep, loop)

    def _end(self, task: asyncio.Task[Any]) -> None:
        del self._started[task]
        self._cancelled.discard(task)

    def _run_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        late = loop.time() - self.timeout
        for task, started in self._started.items():
            if started <= late and task not in self._cancelled:
                self._cancelled.add(task)
                _ = task.cancel()
        if self._started:
            self._sweep = loop.call_later(self.timeout / self.SWEEPS, self._run_sweep, loop)


class _Tracked:
    """`with deadlines.track() as task:` (a class, not a generator: it runs per request)."""

    __slots__ = ("_deadlines", "_task")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[Any]) -> None:
        self._deadlines = deadlines
        self._task = task

    def __enter__(self) -> asyncio.Task[Any]:
        self._deadlines._start(self._task)
        return self._task

    def __exit__(self, *exc: object) -> None:
        self._deadlines._end(self._task)


class KubeCluster:
    """`async with KubeCluster(cfg, timeout=5.0) as cluster:` inside the running loop."""

    def __init__(
        self, configuration: client.Configuration, *, timeout: float,
        metrics: ClusterMetrics | None = None,
    ) -> None:
        self._cfg = configuration
        self._deadlines = Deadlines(timeout)
        self._metrics = metrics
        self._api: client.ApiClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._extra: dict[str, Any] = {}  # per-request options fixed at start (proxy, SNI name)
        self._base = ""  # the host, normalised once: every request's URL is this plus a path
        self._static_auth: dict[str, str] | None = None

    async def __aenter__(self) -> KubeCluster:
        self._api = client.ApiClient(self._cfg)
        # The client's own session (trust_env=True) is closed with it; ours shares its
        # connector (TLS context, pool limit) without reading the environment per request.
        self._session = aiohttp.ClientSession(
            connector=self._api.rest_client.pool_manager.connector, connector_owner=False,
            trust_env=False, read_bufsize=2**21,
            timeout=aiohttp.ClientTimeout(),  # `Deadlines` keeps the requests' timeout
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self._extra = _request_options(self._cfg)
        self._base = str(URL(str(self._cfg.host))).rstrip("/")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._deadlines.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def create(self, obj: KubeObject) -> KubeObject:
        ref = ref_of(obj)
        return await self._call("POST", _path(ref, with_name=False), ref, body=obj)

    async def read(self, ref: ObjectRef) -> KubeObject | None:
        try:
            return await self._call("GET", _path(ref), ref)
        except _NotFound:
            return None

    async def patch(self, obj: KubeObject) -> KubeObject:
        ref = ref_of(obj)
        # Merge patch: lists (subjects, policyTypes, limits) are replaced, maps merged.
        return await self._call(
            "PATCH", _path(ref), ref, body=obj, content_type="application/merge-patch+json"
        )

    async def delete(self, ref: ObjectRef) -> None:
        try:
            await self._call("DELETE", _path(ref), ref, body={"propagationPolicy": "Background"})
        except _NotFound:
            return

    async def list_objects(self, kind: str, label_selector: str) -> list[KubeObject]:
        ref = ObjectRef(kind, "")
        answer = await self._call(
            "GET", _path(ref, with_name=False), ref, query=[("labelSelector", label_selector)]
        )
        items = answer.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def _auth_headers(self) -> dict[str, str]:
        """The credentials' headers. A configuration with a refresh hook (an exec plugin, a
        rotated service-account token) is asked on every request, as the client does; a
        static one once, since asking builds its whole auth table each time."""
        assert self._api is not None
        if self._static_auth is not None:
            return self._static_auth
        headers: dict[str, str] = {}
        await self._api.update_params_for_auth(headers, [], ["BearerToken"])
        if self._cfg.refresh_api_key_hook is None:
            self._static_auth = headers
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        ref: ObjectRef,
        *,
        body: KubeObject | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> KubeObject:
        if self._api is None or self._session is None:
            raise RuntimeError("KubeCluster used outside `async with`")
        headers = {"Content-Type": content_type, **await self._auth_headers()}
        # Metrics: every Kubernetes request passes here, so this is the one place that times
        # and counts them (`metrics.kube_request`); keep it at the request choke point.
        started, failure = time.perf_counter(), None
        try:
            with self._deadlines.track() as task:
                try:
                    async with self._session.request(
                        method, URL(self._base + path, encoded=True), params=query,
                        headers=headers, data=None if body is None else orjson.dumps(body),
                        **self._extra,
                    ) as resp:
                        data = await resp.read()
                        if not 200 <= resp.status <= 299:
                            refusal = ApiException(status=resp.status, reason=resp.reason)
                            refusal.body = data
                            raise refusal
                except asyncio.CancelledError:
                    if not self._deadlines.expired(task):
                        raise
                    failure = "timeout"
                    raise TemporaryKubeError(
                        f"{method} {path} timed out after {self._deadlines.timeout}s"
                    ) from None
        except ApiException as exc:
            failure = str(exc.status or 0)
            raise _translate(exc, method, ref)
        except TimeoutError as exc:  # raised below aiohttp: the session itself sets no timeout
            failure = "timeout"
            raise TemporaryKubeError(f"{method} {path} timed out: {exc!r}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            failure = "connection"
            raise TemporaryKubeError(f"{method} {path} failed: {exc!r}") from exc
        finally:
            if self._metrics is not None:
                resource = _KINDS.get(ref.kind, ("", ref.kind))[1]
                self._metrics.kube_request(method, resource, failure, time.perf_counter() - started)
        try:
            answer: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise TemporaryKubeError(f"{method} {path} answered with a non-object body")
        return answer


class _NotFound(Exception):
    pass


def _request_options(cfg: client.Configuration) -> dict[str, Any]:
    """What every request carries beyond its own: the proxy (the configured one, else the
    environment's for this host, read once) and the TLS server name when one is set."""
    options: dict[str, Any] = {}
    proxy: object = cfg.proxy
    if not proxy:
        try:
            proxy, _auth = aiohttp.helpers.get_env_proxy_for_url(URL(str(cfg.host)))
        except LookupError:
            proxy = None
    if proxy:
        options["proxy"] = str(proxy)
        if cfg.proxy_headers:
            options["proxy_headers"] = cfg.proxy_headers
    if cfg.tls_server_name:
        options["server_hostname"] = cfg.tls_server_name
    return options


def _status_body(exc: ApiException) -> dict[str, Any]:
    raw: object = exc.body
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _translate(exc: ApiException, method: str, ref: ObjectRef) -> Exception:
    status = int(exc.status or 0)
    body = _status_body(exc)
    reason = str(body.get("reason") or exc.reason or "Unknown")
    message = str(body.get("message") or "")
    text = f"{status} {reason}: {message}" if message else f"{status} {reason}"
    causes = (body.get("details") or {}).get("causes") or []
    cause_reasons = {c.get("reason") for c in causes if isinstance(c, dict)}
    if status == 404:
        if "could not find the requested resource" in message:
            # The server does not serve this kind or path at all: no retry will change that.
            return PermanentKubeError(text)
        if method in ("GET", "DELETE"):
            return _NotFound()
        # The namespace or object vanished under us (deleted by hand mid-reconcile): try again.
        return TemporaryKubeError(text)
    if status == 409:
        if reason == "AlreadyExists" and "being deleted" in message:
            return NamespaceTerminating(text)
        if reason == "AlreadyExists":
            return AlreadyExists(text)
        return TemporaryKubeError(text)
    if status == 403 and ("NamespaceTerminating" in cause_reasons or "being terminated" in message):
        return NamespaceTerminating(text)
    if status == 0 or status >= 500 or status == 429 or status == 408:
        return TemporaryKubeError(text)
    return PermanentKubeError(text)
