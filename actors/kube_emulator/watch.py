"""Watch streams: `?watch=true` answered as chunked JSON lines, one event per line.

The stream starts with the events after the requested resourceVersion (or synthetic ADDED
events for the current state when it is absent or "0"), then live events, BOOKMARKs every
`bookmark_interval` when the client allows them, and ends after `timeoutSeconds` (or the
server's maximum). A too-old resourceVersion is answered as the real server does: HTTP 200
with a single ERROR event carrying a 410 Expired Status. Label and field selectors turn
changes into ADDED/DELETED when an object starts or stops matching.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from actors.kube_emulator import table
from actors.kube_emulator.durability import Durability
from actors.kube_emulator.errors import ApiError
from actors.kube_emulator.messages import CloseWatch, OpenWatch, StoreMessage, WatchEvent
from actors.kube_emulator.paths import Target
from actors.kube_emulator.selectors import FieldSelector, Selector
from actors.runtime import ActorRef, ActorStopped

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchOptions:
    resource_version: str | None
    labels: Selector
    fields: FieldSelector
    timeout: float
    bookmarks: bool
    bookmark_interval: float
    send_initial_events: bool
    table_version: str | None  # answer each event's object as a Table row


def translate(event: WatchEvent, opts: WatchOptions) -> str | None:
    """The event type this watcher sees, given its selectors (None: not at all)."""
    def matches(obj: JSON | None) -> bool:
        if obj is None:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return opts.labels.matches(labels) and opts.fields.matches(obj)

    now, before = matches(event.object), matches(event.old)
    match event.type:
        case "ADDED":
            return "ADDED" if now else None
        case "DELETED":
            return "DELETED" if before or now else None
        case "MODIFIED":
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            return "DELETED" if before else None


def _encode(type_: str, obj: JSON) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _event_object(event: WatchEvent, opts: WatchOptions) -> JSON:
    if opts.table_version is not None:
        return table.render(event.rtype, [event.object], None, opts.table_version)
    return event.object


async def serve(
    request: web.Request, store: ActorRef[StoreMessage], durability: Durability, target: Target,
    opts: WatchOptions, closing: Callable[[], bool],
) -> web.StreamResponse:
    rv = opts.resource_version
    if opts.send_initial_events:
        rv = None
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        start = await store.ask(OpenWatch(target.rtype, target.namespace, rv))
        await durability.settled()  # its initial events may include changes still being written
    except ApiError as exc:
        await response.prepare(request)
        await response.write(_encode("ERROR", exc.status()))
        await response.write_eof()
        return response
    await response.prepare(request)
    last_rv = start.resource_version if rv in (None, "", "0") else int(rv or 0)
    deadline = time.monotonic() + opts.timeout
    try:
        for event in start.initial:
            last_rv = max(last_rv, event.rv)
            seen = translate(event, opts)
            if seen is not None:
                await response.write(_encode(seen, _event_object(event, opts)))
        last_rv = max(last_rv, start.resource_version) if rv in (None, "", "0") else last_rv
        if opts.send_initial_events and opts.bookmarks:
            await response.write(_encode("BOOKMARK", _bookmark(target, last_rv, initial_end=True)))
        next_bookmark = time.monotonic() + opts.bookmark_interval
        while not closing():
            now = time.monotonic()
            if now >= deadline:
                break
            wait = min(deadline, next_bookmark if opts.bookmarks else deadline, now + 0.2) - now
            try:
                event = await asyncio.wait_for(start.queue.get(), max(wait, 0.0))
            except TimeoutError:
                if opts.bookmarks and time.monotonic() >= next_bookmark:
                    await response.write(_encode("BOOKMARK", _bookmark(target, last_rv)))
                    next_bookmark = time.monotonic() + opts.bookmark_interval
                continue
            last_rv = max(last_rv, event.rv)
            seen = translate(event, opts)
            if seen is not None:
                await response.write(_encode(seen, _event_object(event, opts)))
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away; nothing to tell it
    finally:
        with contextlib.suppress(ActorStopped):
            store.tell(CloseWatch(start.watch_id))
    return response


def _bookmark(target: Target, rv: int, *, initial_end: bool = False) -> JSON:
    meta: JSON = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": target.rtype.kind, "apiVersion": target.rtype.api_version, "metadata": meta}
