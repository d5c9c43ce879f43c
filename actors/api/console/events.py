"""`GET /console/events`: the console's live updates as server-sent events.

Events (each `data:` is one JSON document):

- `hello` `{scope}`: the stream is (re)connected; the page re-reads what it
  shows, since changes while it was away were not sent.
- `account` `Account`: an account changed (as `account.get` answers it).
- `clusters` `[cluster.list item]`: the clusters, sent at the start, when the
  directory's set of clusters or of those online changes, and every
  `interval` seconds when anything in it (lag, last seen) differs.
- `ended` `{reason}`: the server ends the stream: `session` (logged out, key
  revoked, expired: the page shows the login form), `overflow` (the client
  fell too far behind: it reconnects and re-reads), `closed` (the cache or
  the server stopped).

A comment line every `keepalive` seconds keeps idle proxies from cutting the
stream. The per-stream backlog is the cache subscription's bound; a client
that reads nothing for `write_timeout` seconds is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from aiohttp import web

from actors.api.access import SESSION_COOKIE
from actors.api.auth import Principal
from actors.api.console.feeds import Feeds
from actors.api.console.sessions import ConsoleSettings, SessionStore
from actors.api.watchers import Subscription
from actors.runtime import ActorStopped, AskTimeout

log = structlog.get_logger()


class EventStreams:
    def __init__(
        self, sessions: SessionStore, feeds: Feeds, settings: ConsoleSettings, interval: float
    ) -> None:
        self._sessions = sessions
        self._feeds = feeds
        self._settings = settings
        self._interval = settings.clusters_interval or interval
        self._stopping = asyncio.Event()
        self.open = 0

    def stop_all(self) -> None:
        """The server stops: every stream ends now rather than hold the shutdown up."""
        self._stopping.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        principal = self._sessions.identify(session_id) if session_id else "missing"
        if not isinstance(principal, Principal):
            return web.json_response({"error": "not logged in", "reason": principal}, status=401)
        subscription = await self._feeds.subscribe(self._settings.subscriber_limit)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a buffering proxy would hold the events back
        })
        await response.prepare(request)
        stream = _Stream(request, response, self._settings.write_timeout)
        bound = log.bind(key_id=principal.key_id, remote=request.remote)
        self.open += 1
        bound.info("console_stream_opened", streams=self.open)
        reason = "closed"
        try:
            reason = await self._run(stream, subscription, session_id, principal)
        except (ConnectionError, TimeoutError) as exc:
            reason = "disconnected"
            bound.debug("console_stream_write_failed", error=repr(exc))
        except (AskTimeout, ActorStopped) as exc:
            # The cache or the directory is restarting: the client reconnects and re-reads.
            reason = "closed"
            bound.warning("console_stream_feed_failed", error=repr(exc))
        finally:
            subscription.end()
            self.open -= 1
            bound.info("console_stream_closed", reason=reason, streams=self.open)
        return response

    async def _run(
        self, stream: _Stream, subscription: Subscription, session_id: str, principal: Principal
    ) -> str:
        loop = asyncio.get_running_loop()
        await stream.raw("retry: 1000\n\n")  # reconnect quickly after the server ends a stream
        await stream.event("hello", {"scope": principal.scope})
        shown = await self._send_clusters(stream, None)
        clusters_at = loop.time()
        change: asyncio.Task[str | None] = asyncio.ensure_future(subscription.next())
        moved = await self._feeds.directory_moved()
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                wait = min(self._interval, self._settings.keepalive)
                await asyncio.wait((change, moved, stopping), timeout=wait,
                                   return_when=asyncio.FIRST_COMPLETED)
                if stream.closed():
                    return "disconnected"
                if stopping.done():
                    await stream.event("ended", {"reason": "closed"})
                    return "closed"
                if not isinstance(self._sessions.identify(session_id), Principal):
                    await stream.event("ended", {"reason": "session"})
                    return "session"
                if change.done():
                    account_id = change.result()
                    if account_id is None:
                        why = subscription.ended or "closed"
                        await stream.event("ended", {"reason": why})
                        return why
                    view = await self._feeds.account(account_id)
                    if view is not None:
                        await stream.event("account", view)
                    change = asyncio.ensure_future(subscription.next())
                if moved.done() or loop.time() - clusters_at >= self._interval:
                    moved.cancel()
                    moved = await self._feeds.directory_moved()
                    shown = await self._send_clusters(stream, shown)
                    clusters_at = loop.time()
                if stream.idle_for() >= self._settings.keepalive:
                    await stream.raw(": keepalive\n\n")
        finally:
            for future in (change, moved, stopping):
                future.cancel()
            for task in (change, stopping):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _send_clusters(self, stream: _Stream, shown: str | None) -> str | None:
        clusters = await self._feeds.clusters()
        if clusters is None:
            return shown
        text = json.dumps(clusters, separators=(",", ":"), sort_keys=True)
        if text != shown:
            await stream.raw(f"event: clusters\ndata: {text}\n\n")
        return text


class _Stream:
    def __init__(self, request: web.Request, response: web.StreamResponse, write_timeout: float) -> None:
        self._request = request
        self._response = response
        self._write_timeout = write_timeout
        self._loop = asyncio.get_running_loop()
        self._written_at = self._loop.time()

    async def event(self, name: str, data: Any) -> None:
        # json.dumps never emits a newline here, so the document is one `data:` line.
        await self.raw(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n")

    async def raw(self, text: str) -> None:
        async with asyncio.timeout(self._write_timeout):
            await self._response.write(text.encode())
        self._written_at = self._loop.time()

    def closed(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    def idle_for(self) -> float:
        return self._loop.time() - self._written_at
