"""The consumer directory: what the broker knows of each durable consumer (for cluster.list),
and the removal of one that is gone for good."""

from __future__ import annotations

from types import TracebackType

from core.bus import BusUnavailable, ConsumerInfo
from transport import codec, protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys, Context


class Directory:
    def __init__(
        self, ctx: Context, endpoints: BrokerEndpoints, *, keys: ClientKeys, timeout: float = 5.0
    ) -> None:
        self._channel = ControlChannel(ctx, endpoints.control, keys, name="directory")
        self._timeout = timeout

    async def __aenter__(self) -> Directory:
        self._channel.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._channel.close()

    async def consumers(self) -> list[ConsumerInfo]:
        """Every registered consumer, by name; raises `BusUnavailable` when the broker is silent."""
        reply = await self._channel.request(protocol.build_list, self._timeout)
        if not isinstance(reply, protocol.ConsumerList):
            raise BusUnavailable(f"broker answered a LIST with {type(reply).__name__}")
        try:
            items = codec.decode(reply.body)
            return [
                ConsumerInfo(
                    name=str(item["name"]),
                    acked_seq=int(item["acked_seq"]),
                    lag=int(item["lag"]),
                    last_seen=None if item["last_seen"] is None else str(item["last_seen"]),
                    online=bool(item["online"]),
                )
                for item in items
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise BusUnavailable(f"broker sent an unreadable consumer list: {exc}") from None

    async def remove(self, name: str) -> bool:
        """Forget a consumer (its position and its hold on tombstones); False if unknown.
        A consumer that is still running registers again with its next request."""
        try:
            consumer = protocol.check_consumer(name)
        except ValueError:
            return False  # no such name can be registered
        reply = await self._channel.request(lambda r: protocol.build_remove(r, consumer), self._timeout)
        if not isinstance(reply, protocol.Removed):
            raise BusUnavailable(f"broker answered a DEL with {type(reply).__name__}")
        return reply.removed

    async def head(self) -> int:
        """The broker's durable head seq (also a cheap liveness probe)."""
        reply = await self._channel.request(lambda r: protocol.build_ping(r, None), self._timeout)
        if not isinstance(reply, protocol.Pong):
            raise BusUnavailable(f"broker answered a PING with {type(reply).__name__}")
        return reply.head
