"""The broker's three bound sockets, bound together or not at all."""

from __future__ import annotations

from dataclasses import dataclass

from transport.endpoints import BrokerEndpoints
from transport.sockets import Context, Socket, bind_pub, bind_pull, bind_router


@dataclass(frozen=True, slots=True)
class BrokerSockets:
    router: Socket
    pub: Socket
    pull: Socket

    @classmethod
    def bind(cls, ctx: Context, endpoints: BrokerEndpoints) -> BrokerSockets:
        """Bind all three or none (raises `SocketError` naming the address)."""
        opened: list[Socket] = []
        try:
            for bind, address in (
                (bind_router, endpoints.control),
                (bind_pub, endpoints.events),
                (bind_pull, endpoints.acks),
            ):
                opened.append(bind(ctx, address))
        except Exception:
            for sock in opened:
                sock.close()
            raise
        return cls(*opened)
