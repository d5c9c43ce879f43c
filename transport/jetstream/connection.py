"""nats-py's one home: a connection as one identity, and JetStream API requests over it.

NATS drops a publish our permissions forbid and tells us only through an
asynchronous `-ERR 'Permissions Violation ...'`, which nats-py hands to the
error callback; the request itself would just time out. `Connection` keeps
the violations it hears (`Refusals`), and every request races its reply
against a violation for its subject, so a refusal raises `BusRejected` at once
with the server's words instead of looking like an outage.

Errors are translated here, once: no reply in time, no responders, or a lost
connection -> `BusUnavailable` (retry); a permission violation or an API
error the server calls final -> `BusRejected`; refused credentials at connect
-> `BusRefused`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.bus import BusRejected, BusUnavailable
from transport.access import BusRefused
from transport.jetstream.subjects import inbox_prefix

log = structlog.get_logger()
T = TypeVar("T")

_VIOLATION_RE = re.compile(r'Permissions Violation for (Publish|Subscription) to "([^"]+)"', re.I)
RECONNECT_WAIT = 0.5


class ApiError(BusRejected):
    """The JetStream API answered with an error (`code` is the HTTP-like status, `err_code`
    the JetStream error code)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"JetStream error {code}/{err_code}: {description}")
        self.code = code
        self.err_code = err_code


NOT_FOUND = 404
CONSUMER_NOT_FOUND = 10014
# "no suitable peers for placement": fewer servers are online than the stream's replicas (a
# cluster still forming, or a node down). A 400, but a wait, not a refusal: retry later.
NO_PEERS_FOR_PLACEMENT = 10005
STREAM_NOT_FOUND = 10059


class Refusals:
    """Permission violations heard on one connection, matched to the requests waiting on them.
    nats-py lowercases the server's error text, subject included, so subjects match without case."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[str]]] = {}

    def heard(self, text: str) -> bool:
        match = _VIOLATION_RE.search(text)
        if match is None:
            return False
        subject = match.group(2).lower()
        for future in self._waiting.pop(subject, set()):
            if not future.done():
                future.set_result(match.group(0))
        return True

    def watch(self, subject: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subject.lower(), set()).add(future)
        return future

    def forget(self, subject: str, future: asyncio.Future[str]) -> None:
        waiting = self._waiting.get(subject.lower())
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[subject.lower()]


class Connection:
    """One NATS connection as `user`; reconnects forever (nats-py) once it was established."""

    def __init__(
        self, servers: list[str], *, user: str, password: str, timeout: float, name: str
    ) -> None:
        self._servers = servers
        self._user = user
        self._password = password
        self.timeout = timeout
        self._name = name
        self.refusals = Refusals()
        self.nc = Client()
        self._log = log.bind(identity=user, connection=name)
        self.reconnected = asyncio.Event()
        self._auth_refused = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def user(self) -> str:
        return self._user

    async def __aenter__(self) -> Connection:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self, wait: float | None = None) -> bool:
        """Connect within `wait` seconds (default: our timeout): True when connected. A server
        that is not there yet is no error: nats-py keeps trying in the background and requests
        fail with `BusUnavailable` meanwhile. Refused credentials raise `BusRefused`."""
        self._connecting = asyncio.get_running_loop().create_task(
            self.nc.connect(
                self._servers,
                user=self._user,
                password=self._password,
                name=f"fabric-{self._user}-{self._name}",
                inbox_prefix=inbox_prefix(self._user),
                connect_timeout=max(1, round(self.timeout)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # a float works: it is slept
                error_cb=self._on_error,
                reconnected_cb=self._on_reconnected,
                disconnected_cb=self._on_disconnected,
            ),
            name=f"nats-connect:{self._user}:{self._name}",
        )
        deadline = asyncio.get_running_loop().time() + (self.timeout if wait is None else wait)
        while not self._connecting.done() and not self._auth_refused.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            refused = asyncio.ensure_future(self._auth_refused.wait())
            try:
                _ = await asyncio.wait({self._connecting, refused}, timeout=remaining,
                                       return_when=asyncio.FIRST_COMPLETED)
            finally:
                refused.cancel()
        if self._auth_refused.is_set():
            await self.close()
            raise BusRefused(
                f"NATS at {','.join(self._servers)} refused user {self._user!r}: "
                "check its password (the identity's .nats file) and the server's users"
            )
        exc = self._connecting.exception()
        if exc is not None:
            await self.close()
            raise BusUnavailable(f"NATS at {','.join(self._servers)}: {exc!r}")
        return True

    def check_connected(self) -> None:
        if not self.nc.is_connected:
            raise BusUnavailable(f"not connected to NATS at {','.join(self._servers)}")

    async def close(self) -> None:
        await self._close_quietly()

    async def _close_quietly(self) -> None:
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if not self.nc.is_closed:
            try:
                await self.nc.close()
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                self._log.debug("nats_close_failed", error=repr(exc))

    async def _on_error(self, exc: Exception) -> None:
        if self.refusals.heard(str(exc)):
            self._log.warning("nats_permission_refused", reason=str(exc))
        elif _is_auth_error(exc):
            self._auth_refused.set()
        else:
            # Every failed reconnect attempt lands here: the disconnect itself is logged once.
            self._log.debug("nats_error", error=repr(exc))

    async def _on_reconnected(self) -> None:
        self._log.info("nats_reconnected", server=str(self.nc.connected_url))
        self.reconnected.set()

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._log.info("nats_disconnected")

    def refusal(self, reason: str) -> BusRejected:
        """What a publish the server refused (a permissions violation) raises."""
        return BusRejected(f"NATS refused user {self._user!r}: {reason}")

    async def guarded(self, subject: str, request: Awaitable[T]) -> T:
        """Await `request` (a publish to `subject`) unless the server refuses that publish first."""
        refused = self.refusals.watch(subject)
        task = asyncio.ensure_future(request)
        try:
            waiting: set[asyncio.Future[Any]] = {task, refused}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            raise self.refusal(refused.result())
        finally:
            self.refusals.forget(subject, refused)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def request(self, subject: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request: its JSON reply, or `ApiError`/`BusRejected`/`BusUnavailable`."""
        payload = b"" if body is None else json.dumps(body).encode()
        self.check_connected()
        try:
            msg: Msg = await self.guarded(
                subject, self.nc.request(subject, payload, timeout=self.timeout)
            )
        except nats.errors.NoRespondersError:
            raise BusUnavailable(f"no JetStream responder on {subject}") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise BusUnavailable(f"no JetStream reply on {subject} within {self.timeout:g}s") from None
        except nats.errors.Error as exc:  # closed, reconnecting, flush timeout
            raise BusUnavailable(f"NATS request on {subject} failed: {exc!r}") from None
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            raise BusUnavailable(f"unreadable JetStream reply on {subject}") from None
        error = reply.get("error")
        if isinstance(error, dict):
            code, err_code = int(error.get("code", 0)), int(error.get("err_code", 0))
            if code in (408, 500, 503) or err_code == NO_PEERS_FOR_PLACEMENT:
                raise BusUnavailable(f"JetStream on {subject}: {error.get('description')}")
            raise ApiError(code, err_code, str(error.get("description", "")))
        return reply


def _is_auth_error(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()

