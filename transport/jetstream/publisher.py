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
import functools
from collections.abc import Callable, Sequence
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


def _refusal(ack: asyncio.Future[PubAck], settle: Callable[[], None], _refused: object) -> None:
    if not ack.done():
        settle()


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
        self._conn.check_connected()
        loop = asyncio.get_running_loop()
        # One future the call waits on, set when every PubAck is in, when the server refuses
        # one of the subjects, or at the timeout: plain callbacks, not a task and an
        # asyncio.wait per envelope (a daemon publishes one outcome per account this way).
        settled: asyncio.Future[None] = loop.create_future()
        acks: list[asyncio.Future[PubAck]] = []
        refusals: list[tuple[str, asyncio.Future[str]]] = []
        left = len(envelopes)

        def settle(_done: asyncio.Future[Any] | None = None) -> None:
            if not settled.done():
                settled.set_result(None)

        def acked(_ack: asyncio.Future[PubAck]) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                settle()

        timer: asyncio.TimerHandle | None = None
        try:
            for env in envelopes:
                subject = key_subject(env.key)
                refused = self._conn.refusals.watch(subject)
                refusals.append((subject, refused))
                ack = await self._send(subject, env)
                ack.add_done_callback(acked)
                acks.append(ack)
                # A refusal ends the wait only while its publish is unconfirmed: one heard
                # late, for a publish already acked, changes nothing.
                refused.add_done_callback(functools.partial(_refusal, ack, settle))
            # The timeout counts from the last send, as the PubAcks can only come after it
            # (a send may wait for room among the unconfirmed publishes first).
            timer = loop.call_later(self._conn.timeout, settle)
            await settled
            for (_subject, refused), ack in zip(refusals, acks, strict=True):
                if not ack.done() and refused.done():
                    raise self._conn.refusal(refused.result())
            pending = sum(1 for ack in acks if not ack.done())
            if pending:
                raise BusUnavailable(
                    f"{pending} of {len(acks)} publishes not confirmed within {self._conn.timeout:g}s"
                )
            return [self._receipt(env, ack) for env, ack in zip(envelopes, acks, strict=True)]
        finally:
            if timer is not None:
                timer.cancel()
            for subject, refused in refusals:
                self._conn.refusals.forget(subject, refused)
            for ack in acks:
                ack.remove_done_callback(acked)
                if not ack.done():
                    ack.cancel()

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
    def _receipt(env: Envelope, ack: asyncio.Future[PubAck]) -> PublishReceipt:
        exc = ack.exception()
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
        answer = ack.result()
        return PublishReceipt(env.event_id, int(answer.seq), bool(answer.duplicate))
