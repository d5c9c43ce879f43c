"""Publish with confirmation: each envelope becomes a message on its key's subject, confirmed only
by the stream's PubAck (stored, and on a replicated stream stored by a quorum).

The envelopes of one call are sent back to back (pipelined, in order, on one
connection) and their PubAcks awaited together. Headers: `Nats-Msg-Id` is the
event id (the stream's dedup, whose PubAck says `duplicate` and the original
seq); a tombstone carries `Nats-TTL`, its retention. No PubAck within the
timeout, or no responders, raises `BusUnavailable` (retry with the same ids);
a publish our permissions forbid or a stream error raises `BusRejected`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import PubAck

from core.bus import BusRejected, BusUnavailable, PublishReceipt
from core.envelope import Envelope
from transport import codec
from transport.jetstream.connection import Connection
from transport.jetstream.subjects import key_subject

MSG_ID = "Nats-Msg-Id"
MAX_PENDING = 4000


class JetStreamPublisher:
    def __init__(self, conn: Connection, *, stream: str, tombstone_ttl: float) -> None:
        self._conn = conn
        self._stream = stream
        self._ttl = max(1.0, tombstone_ttl)  # Nats-TTL counts whole seconds
        self._js = conn.nc.jetstream(timeout=conn.timeout, publish_async_max_pending=MAX_PENDING)

    async def __aenter__(self) -> JetStreamPublisher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        if not envelopes:
            return []
        waits: list[asyncio.Task[Any]] = []
        self._conn.check_connected()
        try:
            for env in envelopes:
                subject = key_subject(env.key)
                future = await self._send(subject, env)
                waits.append(asyncio.ensure_future(self._conn.guarded(subject, future)))
            _, pending = await asyncio.wait(waits, timeout=self._conn.timeout)
            if pending:
                raise BusUnavailable(
                    f"{len(pending)} of {len(waits)} publishes not confirmed within {self._conn.timeout:g}s"
                )
            return [self._receipt(env, task) for env, task in zip(envelopes, waits, strict=True)]
        finally:
            for task in waits:
                if not task.done():
                    task.cancel()
            if waits:
                await asyncio.gather(*waits, return_exceptions=True)

    async def _send(self, subject: str, env: Envelope) -> asyncio.Future[PubAck]:
        body = codec.encode(env.to_wire())
        try:
            return await self._js.publish_async(
                subject,
                body,
                wait_stall=self._conn.timeout,
                stream=self._stream,
                headers={MSG_ID: env.event_id},
                msg_ttl=self._ttl if env.tombstone else None,
            )
        except nats.js.errors.TooManyStalledMsgsError:
            raise BusUnavailable("too many publishes awaiting their PubAck") from None
        except nats.errors.Error as exc:
            raise BusUnavailable(f"NATS publish failed: {exc!r}") from None

    @staticmethod
    def _receipt(env: Envelope, task: asyncio.Task[Any]) -> PublishReceipt:
        exc = task.exception()
        if isinstance(exc, BusRejected | BusUnavailable):
            raise exc
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            raise BusUnavailable(f"no stream stored {env.key}: {exc}") from None
        if isinstance(exc, nats.js.errors.APIError):
            if exc.code in (408, 500, 503):
                raise BusUnavailable(f"stream did not store {env.key}: {exc}") from None
            raise BusRejected(f"stream refused {env.key}: {exc}") from None
        if exc is not None:
            raise BusUnavailable(f"publish of {env.key} failed: {exc!r}") from None
        ack: PubAck = task.result()
        return PublishReceipt(env.event_id, int(ack.seq), bool(ack.duplicate))
