"""Publish with confirmation: envelopes in, receipts out once the broker has fsynced them.

`publish` sends the envelopes in requests of up to `protocol.MAX_BATCH` (one
message each) and returns a receipt per envelope, in order: its seq and whether
the broker had it already (same event id, any time in the retention). Many
`publish` calls may be in flight at once on one Publisher. No reply within
`timeout` raises `BusUnavailable` (nothing is known to be stored: retry with
the same event ids); a refusal the broker calls permanent raises `BusRejected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import assert_never

from core.bus import BusRejected, BusUnavailable, PublishReceipt
from core.envelope import Envelope
from transport import codec, protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import Context


class Publisher:
    def __init__(self, ctx: Context, endpoints: BrokerEndpoints, *, timeout: float = 5.0) -> None:
        self._channel = ControlChannel(ctx, endpoints.control, name="publisher")
        self._timeout = timeout

    async def __aenter__(self) -> Publisher:
        self._channel.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._channel.close()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[PublishReceipt]:
        receipts: list[PublishReceipt] = []
        for start in range(0, len(envelopes), protocol.MAX_BATCH):
            chunk = envelopes[start : start + protocol.MAX_BATCH]
            receipts.extend(await self._publish_chunk(chunk))
        return receipts

    async def _publish_chunk(self, chunk: Sequence[Envelope]) -> list[PublishReceipt]:
        bodies = [codec.encode(env.to_wire()) for env in chunk]
        reply = await self._channel.request(
            lambda req_id: protocol.build_publish(req_id, bodies), self._timeout
        )
        match reply:
            case protocol.Receipts(_, items):
                if len(items) != len(chunk):
                    raise BusUnavailable(f"broker sent {len(items)} receipts for {len(chunk)} events")
                return [
                    PublishReceipt(env.event_id, seq, dup)
                    for env, (seq, dup) in zip(chunk, items, strict=True)
                ]
            case protocol.ErrorReply(_, code, reason):
                if code == protocol.ErrorCode.UNAVAILABLE:
                    raise BusUnavailable(f"broker unavailable: {reason}")
                raise BusRejected(f"broker refused the events: {reason}")
            case protocol.EventsPage() | protocol.Pong() | protocol.ConsumerList():
                raise BusUnavailable(f"broker answered a publish with {type(reply).__name__}")
            case _:
                assert_never(reply)
