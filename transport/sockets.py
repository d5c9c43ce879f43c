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

import asyncio
from collections.abc import Callable, Sequence

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


class _ZmqSocket(zmq.Socket):  # type: ignore[type-arg]
    """A plain zmq socket that tells its owner when it closes, however it is closed (our
    `close` or the context's `destroy`), so the event loop stops watching its FD first."""

    _on_close: Callable[[], None] | None = None

    def close(self, linger: int | None = None) -> None:
        hook, self._on_close = self._on_close, None
        if hook is not None:
            hook()
        super().close(linger)


class Socket:
    """A configured zmq socket with the small API our protocol code needs.

    Waiting is done on the socket's FD with `loop.add_reader` rather than through
    zmq.asyncio's futures: a DEALER/ROUTER round trip measured ~120 us this way
    against ~200 us. The FD is edge-triggered and any call on the socket may
    consume its edge, so a waiter re-checks `EVENTS` after every send and on
    every FD wake-up. One task at a time may await `recv` (and one `send`).
    """

    __slots__ = ("_fd", "_loop", "_readable", "_sock", "_writable", "address")

    def __init__(self, sock: _ZmqSocket, address: str) -> None:
        self._sock = sock
        self.address = address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    async def recv(self) -> list[bytes]:
        while True:
            frames = self.recv_nowait()
            if frames is not None:
                return frames
            self._readable = self._waiter(self._readable)
            try:
                await self._readable
            finally:
                self._readable = None

    def recv_nowait(self) -> list[bytes] | None:
        # Checking EVENTS first avoids the cost of a failing non-blocking recv (see performance notes).
        if self._sock.closed or not int(self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return None
        try:
            return self._sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None

    async def send(self, frames: Sequence[bytes]) -> None:
        while not self.send_nowait(frames):
            if self._sock.closed:
                raise SocketError(f"socket for {self.address} is closed")
            self._writable = self._waiter(self._writable)
            try:
                await self._writable
            finally:
                self._writable = None

    def send_nowait(self, frames: Sequence[bytes]) -> bool:
        if self._sock.closed:
            return False
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        finally:
            if self._readable is not None:
                self._on_events()  # the send may have consumed the edge a receiver waits for
        return True

    @property
    def closed(self) -> bool:
        return bool(self._sock.closed)

    def close(self, linger_ms: int = 0) -> None:
        """Close; `linger_ms` > 0 lets queued frames go out for that long (context term waits)."""
        if not self._sock.closed:
            self._sock.close(linger=linger_ms)

    def _waiter(self, current: asyncio.Future[None] | None) -> asyncio.Future[None]:
        if current is not None:
            raise RuntimeError(f"another task is already waiting on the socket for {self.address}")
        if self._sock.closed:
            raise SocketError(f"socket for {self.address} is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._fd = int(self._sock.getsockopt(zmq.FD))
            self._loop.add_reader(self._fd, self._on_events)
            self._sock._on_close = self._unwatch
        return self._loop.create_future()

    def _on_events(self) -> None:
        # Reading EVENTS also clears the FD's readiness, so call it even with nobody waiting.
        if self._sock.closed:
            return
        events = int(self._sock.getsockopt(zmq.EVENTS))
        if events & zmq.POLLIN and self._readable is not None and not self._readable.done():
            self._readable.set_result(None)
        if events & zmq.POLLOUT and self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _unwatch(self) -> None:
        # Like zmq.asyncio: closing the socket cancels whoever waits on it.
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
        for waiter in (self._readable, self._writable):
            if waiter is not None and not waiter.done():
                waiter.cancel()


def _make(ctx: Context, kind: int, *, receives: bool) -> _ZmqSocket:
    # A plain socket on the asyncio context: we wait on its FD ourselves (see `Socket`).
    sock = zmq.Context.socket(ctx, kind, socket_class=_ZmqSocket)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    if receives:
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    return sock


def _bind(sock: _ZmqSocket, address: str) -> Socket:
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise SocketError(f"cannot bind {address}: {exc}") from None
    return Socket(sock, address)


def _connect(sock: _ZmqSocket, address: str) -> Socket:
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
