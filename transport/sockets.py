"""ZeroMQ's home: contexts and the few socket shapes the broker and its clients use.

Only this module and `transport.curve` (CurveZMQ keys and the ZAP handler)
import zmq. Each factory returns a `Socket` already configured the way our
protocol needs it:

- every socket: CURVE. A server socket (`bind_*`) needs its `ServerKeys` and
  is refused (`SocketError`) on a context where no ZAP handler serves
  (`bind_zap`): CURVE without ZAP would encrypt but authenticate nobody. A
  client socket (`connect_*`) needs its `ClientKeys`: its own pair and the
  server's public key. There is no plain (NULL) socket here;
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
whatever is queued with one wake-up; or `deliver(handler)`, which calls the
handler with each message from the event loop's FD callback itself, one loop
turn sooner than a task awaiting `recv` would see it (a reply router's shape). A
server reads who sent a message with `recv_from`: the user id the ZAP handler
gave the peer's key, never anything the peer wrote.

`probe_handshake` watches one client connection's first CURVE handshake (a
socket monitor) to tell a broker that refuses us from one that is not there.
"""

from __future__ import annotations

import asyncio
import enum
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import zmq
import zmq.asyncio
import zmq.utils.monitor

Context = zmq.asyncio.Context

MAX_FRAME_BYTES = 4 * 1024 * 1024
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
DELIVER_MAX = 256  # messages one FD callback hands to a `deliver` handler


ZAP_ADDRESS = "inproc://zeromq.zap.01"  # where libzmq asks a context's ZAP handler (RFC 27)


# Plain ints: pyzmq's constants are IntFlag members, and `events & zmq.POLLIN` builds a new
# enum member through Enum.__call__ on every message (2% of a daemon's CPU in a profile).
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_RCVMORE = int(zmq.RCVMORE)
# The frames go through the compiled socket's own send and recv: pyzmq's send_multipart and
# recv_multipart add a Python call and an IntFlag operation per frame, which was half the
# cost of a 4-frame message (14 -> 7.9 us to send and receive one).
_send_frame = zmq.backend.Socket.send
_recv_frame = zmq.backend.Socket.recv


class SocketError(Exception):
    """A socket could not be created, bound or connected (bad address, port in use, no ZAP...)."""


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """A CURVE server's key pair, each key Z85-encoded (40 characters)."""

    public: bytes
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """A CURVE client's key pair and the public key of the server it may talk to (Z85)."""

    public: bytes
    secret: bytes = field(repr=False)
    server: bytes


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


# The contexts whose ZAP handler socket is bound (weakly: a context may just be dropped).
_ZAP_HANDLERS: weakref.WeakKeyDictionary[Context, _ZmqSocket] = weakref.WeakKeyDictionary()


def zap_served(ctx: Context) -> bool:
    """True while a ZAP handler socket (`bind_zap`) is open on `ctx`."""
    sock = _ZAP_HANDLERS.get(ctx)
    return sock is not None and not sock.closed


class Socket:
    """A configured zmq socket with the small API our protocol code needs.

    Waiting is done on the socket's FD with `loop.add_reader` rather than through
    zmq.asyncio's futures: a DEALER/ROUTER round trip measured ~120 us this way
    against ~200 us. The FD is edge-triggered and any call on the socket may
    consume its edge, so a waiter re-checks `EVENTS` after every send and on
    every FD wake-up. One task at a time may await `recv` (and one `send`).
    """

    __slots__ = ("_fd", "_handler", "_loop", "_readable", "_sock", "_writable", "address")

    def __init__(self, sock: _ZmqSocket, address: str) -> None:
        self._sock = sock
        self.address = address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._handler: Callable[[list[bytes]], None] | None = None

    def deliver(self, handler: Callable[[list[bytes]], None]) -> None:
        """From now on call `handler(frames)` for each message, from the loop's FD callback
        (in place of `recv`, for good). The handler must not block; what it raises goes to the
        loop's exception handler and the next message is still delivered."""
        if self._handler is not None or self._readable is not None:
            raise RuntimeError(f"the socket for {self.address} already has a receiver")
        self._watch()
        self._handler = handler
        self._on_events()  # messages that arrived before the FD was watched raise no edge

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
        if self._sock.closed or not int(self._sock.getsockopt(_EVENTS)) & _POLLIN:
            return None
        try:
            first = _recv_frame(self._sock, _NOBLOCK)
        except zmq.Again:
            return None
        return self._with_rest(first)

    async def recv_from(self) -> tuple[str, list[bytes]]:
        """The next message and the ZAP user id of the peer that sent it (a server socket)."""
        while True:
            got = self.recv_from_nowait()
            if got is not None:
                return got
            self._readable = self._waiter(self._readable)
            try:
                await self._readable
            finally:
                self._readable = None

    def recv_from_nowait(self) -> tuple[str, list[bytes]] | None:
        if self._sock.closed or not int(self._sock.getsockopt(_EVENTS)) & _POLLIN:
            return None
        try:
            first = _recv_frame(self._sock, _NOBLOCK, False)
        except zmq.Again:
            return None
        try:
            # Set by libzmq from the ZAP reply on every message of the connection.
            user = str(first.get("User-Id"))
        except zmq.ZMQError:
            user = ""  # no ZAP user id (a NULL connection): an identity nobody is granted
        return user, self._with_rest(first.bytes)

    def _with_rest(self, first: bytes) -> list[bytes]:
        """`first` and the other parts of its message, which arrive with it, atomically."""
        frames = [first]
        while self._sock.getsockopt(_RCVMORE):
            frames.append(_recv_frame(self._sock, _NOBLOCK))
        return frames

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
        sock, last = self._sock, len(frames) - 1
        try:
            # Atomic: libzmq queues a multipart message whole or, on the first part, not at all.
            for i, frame in enumerate(frames):
                _send_frame(sock, frame, _NOBLOCK if i == last else _MORE_NOBLOCK)
        except zmq.ZMQError:
            return False
        finally:
            if self._readable is not None or self._handler is not None:
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
        if current is not None or self._handler is not None:
            raise RuntimeError(f"another task is already waiting on the socket for {self.address}")
        return self._watch().create_future()

    def _watch(self) -> asyncio.AbstractEventLoop:
        if self._sock.closed:
            raise SocketError(f"socket for {self.address} is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._fd = int(self._sock.getsockopt(zmq.FD))
            self._loop.add_reader(self._fd, self._on_events)
            self._sock._on_close = self._unwatch
        return self._loop

    def _on_events(self) -> None:
        # Reading EVENTS also clears the FD's readiness, so call it even with nobody waiting.
        if self._sock.closed:
            return
        events = int(self._sock.getsockopt(_EVENTS))
        if events & _POLLIN and self._handler is not None:
            self._deliver(self._handler)
        elif events & _POLLIN and self._readable is not None and not self._readable.done():
            self._readable.set_result(None)
        if events & _POLLOUT and self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _deliver(self, handler: Callable[[list[bytes]], None]) -> None:
        loop = asyncio.get_running_loop()  # a handler may close the socket, which forgets it
        for _ in range(DELIVER_MAX):
            frames = self.recv_nowait()  # None once drained or closed
            if frames is None:
                return
            try:
                handler(frames)
            except Exception as exc:
                loop.call_exception_handler(
                    {"message": f"message handler failed on {self.address}", "exception": exc}
                )
        # More queued: go on in a later turn, so one busy socket cannot starve the loop.
        loop.call_soon(self._on_events)

    def _unwatch(self) -> None:
        # Like zmq.asyncio: closing the socket cancels whoever waits on it.
        loop, self._loop = self._loop, None
        self._handler = None
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


def _curve_server(ctx: Context, sock: _ZmqSocket, keys: ServerKeys, address: str) -> None:
    if not zap_served(ctx):
        sock.close(linger=0)
        raise SocketError(
            f"refusing to bind {address}: CURVE without a running ZAP handler on its context "
            "would authenticate nobody"
        )
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def _curve_client(sock: _ZmqSocket, keys: ClientKeys) -> None:
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


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


def bind_zap(ctx: Context) -> Socket:
    """The ZAP handler's REP socket: from now on libzmq asks it about every handshake on `ctx`."""
    sock = zmq.Context.socket(ctx, zmq.REP, socket_class=_ZmqSocket)
    sock.setsockopt(zmq.LINGER, 0)
    bound = _bind(sock, ZAP_ADDRESS)
    _ZAP_HANDLERS[ctx] = sock
    return bound


def bind_router(ctx: Context, address: str, keys: ServerKeys) -> Socket:
    sock = _make(ctx, zmq.ROUTER, receives=True)
    _curve_server(ctx, sock, keys, address)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _bind(sock, address)


def bind_pub(ctx: Context, address: str, keys: ServerKeys) -> Socket:
    sock = _make(ctx, zmq.PUB, receives=False)
    _curve_server(ctx, sock, keys, address)
    # Drops past this are detected by subscribers as sequence gaps and re-fetched.
    sock.setsockopt(zmq.SNDHWM, 100_000)
    return _bind(sock, address)


def bind_pull(ctx: Context, address: str, keys: ServerKeys) -> Socket:
    sock = _make(ctx, zmq.PULL, receives=True)
    _curve_server(ctx, sock, keys, address)
    return _bind(sock, address)


def connect_dealer(ctx: Context, address: str, keys: ClientKeys) -> Socket:
    sock = _make(ctx, zmq.DEALER, receives=True)
    _curve_client(sock, keys)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _connect(sock, address)


def connect_sub(
    ctx: Context, address: str, keys: ClientKeys, topics: Sequence[bytes] = (b"",)
) -> Socket:
    """A SUB socket taking the messages whose first frame starts with one of `topics`."""
    sock = _make(ctx, zmq.SUB, receives=True)
    _curve_client(sock, keys)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    return _connect(sock, address)


def connect_push(ctx: Context, address: str, keys: ClientKeys) -> Socket:
    sock = _make(ctx, zmq.PUSH, receives=False)
    _curve_client(sock, keys)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    return _connect(sock, address)


# ---- the first handshake of a client connection ---------------------------------------


class Handshake(enum.Enum):
    ACCEPTED = "accepted"  # the handshake completed: the server knows our key
    REFUSED = "refused"  # the server's ZAP handler refused our key (ZMTP ERROR, status 400)
    FAILED = "failed"  # connected, but no handshake completed (e.g. a wrong server key)
    UNREACHABLE = "unreachable"  # nothing accepted a TCP connection


_WATCHED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


async def probe_handshake(ctx: Context, address: str, keys: ClientKeys, wait: float) -> Handshake:
    """Connect a DEALER to `address` and watch its handshakes for at most `wait` seconds.

    A refusal by the server's ZAP handler ends the wait at once. A server that cannot read
    our HELLO (we hold the wrong server key) just drops the connection, and libzmq retries
    forever; after `wait` seconds of connections without a completed handshake that is
    `FAILED`. No connection at all is `UNREACHABLE` (the server may start later).
    """
    sock = _make(ctx, zmq.DEALER, receives=True)
    events: Socket | None = None
    try:
        _curve_client(sock, keys)
        monitor_address = f"inproc://handshake-probe-{id(sock):x}"
        sock.monitor(monitor_address, _WATCHED)
        pair = zmq.Context.socket(ctx, zmq.PAIR, socket_class=_ZmqSocket)
        pair.setsockopt(zmq.LINGER, 0)
        events = _connect(pair, monitor_address)
        sock.connect(address)
        connected = False
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    frames = await events.recv()
            except TimeoutError:
                break
            event = zmq.utils.monitor.parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return Handshake.ACCEPTED
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return Handshake.REFUSED
            connected = True
        return Handshake.FAILED if connected else Handshake.UNREACHABLE
    except zmq.ZMQError as exc:
        raise SocketError(f"cannot connect {address}: {exc}") from None
    finally:
        # Monitor off before closing: a context does not terminate while a monitor is attached.
        if events is not None:
            sock.disable_monitor()
            events.close()
        sock.close(linger=0)
