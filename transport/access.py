"""Does the broker let this client in? One bounded check a process makes when it starts.

libzmq never reports a refused CURVE handshake to the sending code: it just
retries, and a misconfigured client would wait forever. So a process (the api,
a daemon) calls `check_access` before it starts its work:

- the control socket's first handshake is watched (`sockets.probe_handshake`)
  for at most `wait` seconds. A key the broker's allow-list does not hold
  (`REFUSED`), or connections on which no handshake completes (`FAILED`: the
  broker's public key we hold is not the broker's), raise `BusRefused`;
- once a handshake completed, a PING as `consumer` asks whether our identity
  may use that consumer: the broker's FORBIDDEN error raises `BusRefused`;
- a broker that is not there (`UNREACHABLE`) or does not answer the PING is no
  verdict: `check_access` returns False and the caller carries on, retrying as
  it always does (the broker may start later).
"""

from __future__ import annotations

from core.bus import BusUnavailable
from transport import protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys, Context, Handshake, probe_handshake

HANDSHAKE_WAIT = 5.0


class BusRefused(BusUnavailable):
    """The broker will not serve us: our key or our identity's rights, not its health."""


async def check_access(
    ctx: Context,
    endpoints: BrokerEndpoints,
    keys: ClientKeys,
    *,
    consumer: str,
    wait: float = HANDSHAKE_WAIT,
) -> bool:
    """True when the broker accepted our key and our use of `consumer`; False when it could
    not be asked; raises `BusRefused` when it refused either."""
    address = endpoints.control
    match await probe_handshake(ctx, address, keys, wait):
        case Handshake.REFUSED:
            raise BusRefused(
                f"the broker at {address} refused this client's key {keys.public.decode()} "
                "(it is not on the broker's allow-list): check --broker-key"
            )
        case Handshake.FAILED:
            raise BusRefused(
                f"no CURVE handshake with the broker at {address} completed within {wait:g}s: "
                "check --broker-public-key (the broker's public key) and --broker-key"
            )
        case Handshake.UNREACHABLE:
            return False
        case Handshake.ACCEPTED:
            pass
    channel = ControlChannel(ctx, address, keys, name="access-check")
    channel.open()
    try:
        reply = await channel.request(lambda r: protocol.build_ping(r, consumer), wait)
    except BusUnavailable:
        return False
    finally:
        await channel.close()
    if isinstance(reply, protocol.ErrorReply) and reply.code == protocol.ErrorCode.FORBIDDEN:
        raise BusRefused(f"the broker at {address} refused consumer {consumer}: {reply.reason}")
    return True
