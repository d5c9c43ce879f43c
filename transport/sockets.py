"""ZeroMQ's one home: contexts and the few socket shapes the broker and its clients use.

No other module imports zmq. Each factory returns a `Socket` already configured
the way our protocol needs it:

- every socket: linger 0 (queued frames are re-derivable, never worth blocking a
  stop), ZMTP heartbeats so a half-open TCP peer is noticed;
- every receiving socket: a maximum message size, so a hostile peer cannot make
  us allocate without bound (libzmq drops the connection instead);
- ROUTER: ROUTER_MANDATORY, so a reply to a vanished peer is an error we log,
  not a silent drop;
- PUSH: IMMEDIATE, so acks are not queued onto a connection that is not up.

`Socket.send_nowait` never blocks: it returns False when the frame could not be
queued (mute peer, unroutable identity, closed socket). Receiving is `await
recv()` or `recv_nowait()` (None when nothing is waiting), so hot loops drain
whatever is queued with one wake-up.
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
import zmq.asyncio

Context = zmq.asyncio.Context

MAX_FRAME_BYTES = 4 * 1024 * 1024
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


class SocketError(Exception):
    """A socket could not be created, bound or connected (bad address, port in use...)."""


def new_context() -> Context:
    """A fresh context per process (or per test); never the global instance."""
    return zmq.asyncio.Context()


def close_context(ctx: Context) -> None:
    """Close every socket still open on the context (linger 0), then terminate it.

    A plain term() would block forever on a socket someone forgot to close.
    """
    ctx.destroy(linger=0)


class Socket:
    """A configured zmq.asyncio socket with the small API our protocol code needs."""

    __slots__ = ("_sock", "address")

    def __init__(self, sock: zmq.asyncio.Socket, address: str) -> None:
        self._sock = sock
        self.address = address

    async def recv(self) -> list[bytes]:
        return list(await self._sock.recv_multipart())

    def recv_nowait(self) -> list[bytes] | None:
        # Checking EVENTS first avoids the cost of a failing non-blocking recv (see performance notes).
        if self._sock.closed or not int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return None
        try:
            return list(self._sock.recv_multipart(zmq.NOBLOCK).result())  # type: ignore[attr-defined]
        except zmq.Again:
            return None

    async def send(self, frames: Sequence[bytes]) -> None:
        await self._sock.send_multipart(frames)

    def send_nowait(self, frames: Sequence[bytes]) -> bool:
        if self._sock.closed:
            return False
        try:
            fut = self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        if fut.done():  # type: ignore[attr-defined]
            return fut.exception() is None  # type: ignore[attr-defined]
        # Queued behind another send: nobody awaits it, so consume its outcome here.
        fut.add_done_callback(_consume_outcome)  # type: ignore[attr-defined]
        return True

    @property
    def closed(self) -> bool:
        return bool(self._sock.closed)

    def close(self, linger_ms: int = 0) -> None:
        """Close; `linger_ms` > 0 lets queued frames go out for that long (context term waits)."""
        if not self._sock.closed:
            self._sock.close(linger=linger_ms)


def _consume_outcome(fut: object) -> None:
    if not fut.cancelled():  # type: ignore[attr-defined]
        fut.exception()  # type: ignore[attr-defined]


def _make(ctx: Context, kind: int, *, receives: bool) -> zmq.asyncio.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    if receives:
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    return sock


def _bind(sock: zmq.asyncio.Socket, address: str) -> Socket:
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise SocketError(f"cannot bind {address}: {exc}") from None
    return Socket(sock, address)


def _connect(sock: zmq.asyncio.Socket, address: str) -> Socket:
    try:
        sock.connect(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise SocketError(f"cannot connect {address}: {exc}") from None
    return Socket(sock, address)


def bind_router(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.ROUTER, receives=True)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _bind(sock, address)


def bind_pub(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.PUB, receives=False)
    # Drops past this are detected by subscribers as sequence gaps and re-fetched.
    sock.setsockopt(zmq.SNDHWM, 100_000)
    return _bind(sock, address)


def bind_pull(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.PULL, receives=True)
    return _bind(sock, address)


def connect_dealer(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.DEALER, receives=True)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _connect(sock, address)


def connect_sub(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.SUB, receives=True)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _connect(sock, address)


def connect_push(ctx: Context, address: str) -> Socket:
    sock = _make(ctx, zmq.PUSH, receives=False)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    return _connect(sock, address)
