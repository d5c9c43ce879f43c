"""Publish with confirmation: envelopes in, receipts out once the broker has fsynced them.

`publish` returns a receipt per envelope, in order: its seq and whether the
broker had it already (same event id, stored within its dedup window). Many
`publish` calls may be in flight at once on one Publisher, and while any is,
calls made in the same event-loop turn are coalesced into one PUB request (up to
`protocol.MAX_BATCH` envelopes): one send, one broker wake-up and one share of
a group commit for all of them. The first caller of a batch sends it on
everyone's behalf; the others wait for their slice of the receipts.

No reply within `timeout` raises `BusUnavailable` (nothing is known to be
stored: retry with the same event ids). A refusal the broker calls permanent
raises `BusRejected`; a coalesced batch the broker refuses is re-sent caller by
caller, so only the caller whose envelope is bad sees the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import assert_never

from core.bus import BusRejected, BusUnavailable, PublishReceipt
from core.envelope import Envelope
from transport import codec, protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys, Context

# Small enough that several coalesced requests are in flight at once (the broker works on one
# while the next is being formed), large enough to share each fsync widely.
COALESCE = 64


@dataclass(slots=True)
class _Entry:
    envelopes: Sequence[Envelope]
    bodies: list[bytes]
    future: asyncio.Future[list[PublishReceipt]]


@dataclass(slots=True)
class _Batch:
    entries: list[_Entry] = field(default_factory=list)
    size: int = 0
    nbytes: int = 0


class Publisher:
    def __init__(
        self,
        ctx: Context,
        endpoints: BrokerEndpoints,
        *,
        keys: ClientKeys,
        timeout: float = 5.0,
        coalesce: int = COALESCE,
    ) -> None:
        self._channel = ControlChannel(ctx, endpoints.control, keys, name="publisher")
        self._timeout = timeout
        self._coalesce = max(1, min(coalesce, protocol.MAX_BATCH))
        self._open: _Batch | None = None

    async def __aenter__(self) -> Publisher:
        self._channel.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._channel.close()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        if not envelopes:
            return []
        bodies = [codec.encode(env.to_wire()) for env in envelopes]
        nbytes = sum(len(b) for b in bodies)
        if len(bodies) >= protocol.MAX_BATCH or nbytes >= protocol.MAX_BODY_BYTES:
            receipts: list[PublishReceipt] = []
            runs = protocol.chunk_by_size(
                [len(b) for b in bodies], protocol.MAX_BATCH, protocol.MAX_BODY_BYTES
            )
            for start, end in runs:
                receipts += await self._request(envelopes[start:end], bodies[start:end])
            return receipts
        if self._open is None and self._channel.in_flight == 0:
            # Nothing in flight: the broker is waiting for us, so waiting a loop turn for others
            # to join would only add latency. Publishes made meanwhile coalesce behind this one.
            return await self._request(envelopes, bodies)
        entry = _Entry(envelopes, bodies, asyncio.get_running_loop().create_future())
        batch = self._open
        if (
            batch is not None
            and batch.size + len(bodies) <= self._coalesce
            and batch.nbytes + nbytes <= protocol.MAX_BODY_BYTES
        ):
            batch.entries.append(entry)
            batch.size += len(bodies)
            batch.nbytes += nbytes
            return await entry.future
        # Lead a new batch: let callers ready in this loop turn join it, then send it.
        batch = self._open = _Batch([entry], len(bodies), nbytes)
        try:
            await asyncio.sleep(0)
        except BaseException:
            if self._open is batch:
                self._open = None
            for other in batch.entries:
                _settle(other, BusUnavailable("publish abandoned: its batch's sender was cancelled"))
            raise
        if self._open is batch:
            self._open = None
        await self._send_batch(batch)
        return await entry.future

    async def _send_batch(self, batch: _Batch) -> None:
        try:
            if len(batch.entries) == 1:
                only = batch.entries[0]
                _settle(only, await self._request(only.envelopes, only.bodies))
                return
            envelopes = [env for entry in batch.entries for env in entry.envelopes]
            bodies = [body for entry in batch.entries for body in entry.bodies]
            try:
                receipts = await self._request(envelopes, bodies)
            except BusRejected:
                for entry in batch.entries:  # find whose envelope it was
                    _settle(entry, await self._settle_alone(entry))
                return
            start = 0
            for entry in batch.entries:
                _settle(entry, receipts[start : start + len(entry.bodies)])
                start += len(entry.bodies)
        except BaseException as exc:
            error = exc if isinstance(exc, BusUnavailable | BusRejected) else None
            for entry in batch.entries:
                if not entry.future.done():
                    entry.future.set_exception(
                        error or BusUnavailable(f"publish abandoned: {type(exc).__name__}")
                    )
            if error is None:
                raise

    async def _settle_alone(self, entry: _Entry) -> list[PublishReceipt] | BaseException:
        try:
            return await self._request(entry.envelopes, entry.bodies)
        except (BusRejected, BusUnavailable) as exc:
            return exc

    async def _request(self, envelopes: Sequence[Envelope], bodies: list[bytes]) -> list[PublishReceipt]:
        reply = await self._channel.request(
            lambda req_id: protocol.build_publish(req_id, bodies), self._timeout
        )
        match reply:
            case protocol.Receipts(_, items):
                if len(items) != len(bodies):
                    raise BusUnavailable(f"broker sent {len(items)} receipts for {len(bodies)} events")
                return [
                    PublishReceipt(env.event_id, seq, dup)
                    for env, (seq, dup) in zip(envelopes, items, strict=True)
                ]
            case protocol.ErrorReply(_, code, reason):
                if code == protocol.ErrorCode.UNAVAILABLE:
                    raise BusUnavailable(f"broker unavailable: {reason}")
                raise BusRejected(f"broker refused the events: {reason}")
            case protocol.EventsPage() | protocol.Pong() | protocol.ConsumerList() | protocol.Removed():
                raise BusUnavailable(f"broker answered a publish with {type(reply).__name__}")
            case _:
                assert_never(reply)


def _settle(entry: _Entry, outcome: list[PublishReceipt] | BaseException) -> None:
    if entry.future.done():
        return
    if isinstance(outcome, BaseException):
        entry.future.set_exception(outcome)
    else:
        entry.future.set_result(outcome)
