"""The broker's three bound sockets, CURVE servers all, bound together or not at all."""

from __future__ import annotations

from dataclasses import dataclass

from transport.endpoints import BrokerEndpoints
from transport.sockets import Context, ServerKeys, Socket, bind_pub, bind_pull, bind_router


@dataclass(frozen=True, slots=True)
class BrokerSockets:
    router: Socket
    pub: Socket
    pull: Socket

    @classmethod
    def bind(cls, ctx: Context, endpoints: BrokerEndpoints, keys: ServerKeys) -> BrokerSockets:
        """Bind all three or none (raises `SocketError` naming the address). The context's ZAP
        handler must be running (`transport.curve.CurveGate`): `bind_*` refuse CURVE without it."""
        opened: list[Socket] = []
        try:
            for bind, address in (
                (bind_router, endpoints.control),
                (bind_pub, endpoints.events),
                (bind_pull, endpoints.acks),
            ):
                opened.append(bind(ctx, address, keys))
        except Exception:
            for sock in opened:
                sock.close()
            raise
        return cls(*opened)
