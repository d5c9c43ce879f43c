"""A client's control channel to the broker: DEALER requests matched to replies by req_id.

Many requests may be in flight at once; each reply is routed to its waiting
caller from the socket's FD callback (`Socket.deliver`), with no reader task in
between: a caller resumes one loop turn after its reply arrives. A request
without a reply within its timeout raises `BusUnavailable`. After a timeout the
socket is replaced (Lazy Pirate): what was queued on the old connection is
dropped and every other request still in flight fails at once with
`BusUnavailable`, so callers retry on a fresh connection instead of waiting on
replies that will never come.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct

import structlog

from core.bus import BusUnavailable
from transport import protocol
from transport.sockets import ClientKeys, Context, Socket, connect_dealer

log = structlog.get_logger()
_REQ_ID = struct.Struct(">Q")


class _Expired(Exception):
    """A request's timer went off before its reply came."""


def _expire(future: asyncio.Future[protocol.ControlReply]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class ControlChannel:
    def __init__(self, ctx: Context, address: str, keys: ClientKeys, *, name: str) -> None:
        self._ctx = ctx
        self._address = address
        self._keys = keys
        self._name = name
        self._sock: Socket | None = None
        self._pending: dict[bytes, asyncio.Future[protocol.ControlReply]] = {}
        self._ids = itertools.count(int.from_bytes(os.urandom(4), "big") << 16)

    def open(self) -> None:
        self._sock = connect_dealer(self._ctx, self._address, self._keys)
        self._sock.deliver(self._on_reply)

    async def close(self) -> None:
        self._fail_pending("closed")
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def request(self, build: protocol.RequestBuilder, timeout: float) -> protocol.ControlReply:
        if self._sock is None:
            raise BusUnavailable("control channel is closed")
        req_id = _REQ_ID.pack(next(self._ids) & 0xFFFF_FFFF_FFFF_FFFF)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[protocol.ControlReply] = loop.create_future()
        self._pending[req_id] = future
        # A timer on the awaited future itself, not asyncio.timeout (nor wait_for, which on
        # 3.11 can swallow a cancellation racing with the reply): one timer handle per
        # request instead of a context manager that reschedules and uncancels the task.
        timer = loop.call_later(timeout, _expire, future)
        try:
            if not self._sock.send_nowait(build(req_id)):
                raise BusUnavailable(f"cannot queue a request to the broker at {self._address}")
            return await future
        except _Expired:
            self._reset()
            raise BusUnavailable(f"the broker at {self._address} did not answer within {timeout}s") from None
        finally:
            timer.cancel()
            self._pending.pop(req_id, None)

    def _reset(self) -> None:
        self._fail_pending("connection reset after a timeout")
        old_sock = self._sock
        if old_sock is None:
            return  # closed meanwhile
        self.open()
        old_sock.close()

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusUnavailable(f"broker request failed: {reason}"))
        self._pending.clear()

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            reply = protocol.parse_reply(frames)
        except protocol.ProtocolError as exc:
            log.warning("frame_dropped", socket="control", client=self._name, reason=str(exc))
            return
        future = self._pending.get(reply.req_id)
        if future is not None and not future.done():
            future.set_result(reply)
