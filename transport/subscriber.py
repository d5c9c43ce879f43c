"""The durable subscriber: catch-up from the broker's record of our acks, then the live stream.

`deliveries()` yields every durable event after the consumer's acked watermark
(as the broker recorded it when the session began), in seq order:

1. Catch-up: SYNC pages over the control channel until the end marker.
2. Live: events from PUB whose seq is exactly the next one. A jump in seq, a
   heartbeat (PUB) or pong (control) showing a head beyond our position while
   nothing is queued, an overflowing local queue, or a broker that stopped
   answering pings, all send us back to 1 from our own position, so nothing
   PUB dropped is missed and nothing already yielded is yielded again.

While the broker is away, requests fail with `BusUnavailable`; the subscriber
retries with capped backoff and resumes where it was (libzmq reconnects the
sockets). It yields a seq twice in one session only if re-fetched after the
broker lost it (never, for fsynced events).

Iterate one `deliveries()` at a time per Subscriber (they share the live queue).

`ack(seq)` is cheap (acks are batched and PUSHed on the next loop turn). Acks
are facts the broker can lose; ones it has not confirmed (its watermark in the
pong) are re-sent every few heartbeats, and if its watermark ever goes back
below one it confirmed (a crash lost saved-too-late acks), we re-assert it.
Pings every `heartbeat_interval` keep the consumer marked online (`last_seen`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import assert_never

import structlog

from core.bus import BusUnavailable, Delivery
from core.envelope import InvalidEnvelope
from transport import codec, protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import Context, Socket, connect_push, connect_sub

log = structlog.get_logger()


ACK_LINGER_MS = 500


class _Overflow:
    """The local live queue was full: what PUB sent since must be re-fetched."""


_LiveItem = protocol.LiveMessage | _Overflow


class Subscriber:
    def __init__(
        self,
        ctx: Context,
        endpoints: BrokerEndpoints,
        *,
        consumer: str,
        timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        page_size: int = 500,
        live_buffer: int = 1000,
        retry_max: float = 2.0,
    ) -> None:
        self._consumer = protocol.check_consumer(consumer)
        self._ctx = ctx
        self._endpoints = endpoints
        self._timeout = timeout
        self._interval = heartbeat_interval
        self._page_size = page_size
        self._retry_max = retry_max
        self._channel = ControlChannel(ctx, endpoints.control, name=f"subscriber:{consumer}")
        self._live: asyncio.Queue[_LiveItem] = asyncio.Queue(maxsize=live_buffer)
        self._overflowed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Socket | None = None
        self._push: Socket | None = None
        self._ack_buffer: list[int] = []
        self._ack_flush: asyncio.Handle | None = None
        self._unconfirmed: dict[int, float] = {}
        self._broker_head = 0
        self._confirmed = 0  # the highest acked watermark the broker has confirmed to us
        self._broker_silent = False
        self._log = log.bind(consumer=consumer)

    @property
    def consumer(self) -> str:
        return self._consumer

    async def __aenter__(self) -> Subscriber:
        # Subscribe before the first SYNC so nothing published in between is missed (Clone pattern).
        try:
            self._sub = connect_sub(self._ctx, self._endpoints.events)
            self._push = connect_push(self._ctx, self._endpoints.acks)
            self._channel.open()
        except BaseException:
            for sock in (self._sub, self._push):
                if sock is not None:
                    sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_live(self._sub), name=f"subscriber:{self._consumer}:live"),
            loop.create_task(self._heartbeat(), name=f"subscriber:{self._consumer}:heartbeat"),
        ]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ack_flush is not None:
            self._ack_flush.cancel()
        self._flush_acks()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()
        if self._sub is not None:
            self._sub.close()
        if self._push is not None:
            # Give the last acks a moment to leave; a lost ack only means a redelivery.
            self._push.close(linger_ms=ACK_LINGER_MS)

    # ---- acks -------------------------------------------------------------------

    async def ack(self, seq: int) -> None:
        self._ack_buffer.append(seq)
        self._unconfirmed[seq] = time.monotonic()
        if self._ack_flush is None:
            self._ack_flush = asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush = None
        seqs, self._ack_buffer = self._ack_buffer, []
        if seqs and self._push is not None:
            # A refused send is not fatal: the pong-driven re-send covers it.
            self._push.send_nowait(protocol.build_acks(self._consumer, seqs))

    def _on_pong(self, pong: protocol.Pong) -> None:
        self._broker_head = pong.head
        if pong.head < self._confirmed:
            self._confirmed = 0  # a wiped or replaced log: its seqs are not the ones we acked
        elif pong.watermark < self._confirmed and self._push is not None:
            # The broker lost acks it had confirmed (a crash between recording and saving them).
            self._log.warning("acks_restored", watermark=pong.watermark, upto=self._confirmed)
            self._push.send_nowait(protocol.build_acks(self._consumer, [], upto=self._confirmed))
        self._confirmed = max(self._confirmed, pong.watermark)
        now = time.monotonic()
        stale = now - 2 * self._interval
        resend: list[int] = []
        for seq, sent in list(self._unconfirmed.items()):
            if seq <= pong.watermark:
                del self._unconfirmed[seq]
            elif sent < stale:
                resend.append(seq)
                self._unconfirmed[seq] = now
        if resend and self._push is not None:
            self._push.send_nowait(protocol.build_acks(self._consumer, sorted(resend)))

    async def _heartbeat(self) -> None:
        while True:
            try:
                reply = await self._channel.request(
                    lambda r: protocol.build_ping(r, self._consumer), self._timeout
                )
            except BusUnavailable as exc:
                if not self._broker_silent:
                    self._log.warning("broker_lost", reason=str(exc))
                self._broker_silent = True
            else:
                if isinstance(reply, protocol.Pong):
                    if self._broker_silent:
                        self._log.info("broker_regained", head=reply.head)
                    self._broker_silent = False
                    self._on_pong(reply)
            await asyncio.sleep(self._interval)

    # ---- live stream ------------------------------------------------------------

    async def _read_live(self, sock: Socket) -> None:
        while True:
            frames = await sock.recv()
            try:
                item: _LiveItem = protocol.parse_live(frames)
            except protocol.ProtocolError as exc:
                self._log.warning("frame_dropped", socket="events", reason=str(exc))
                continue
            if self._overflowed:
                continue
            try:
                self._live.put_nowait(item)
            except asyncio.QueueFull:
                # Drop the live stream until the consumer catches up; SYNC fills the hole.
                self._overflowed = True

    def _take_overflow(self) -> bool:
        if not self._overflowed:
            return False
        self._overflowed = False
        while not self._live.empty():
            self._live.get_nowait()
        return True

    # ---- deliveries -------------------------------------------------------------

    def deliveries(self) -> AsyncIterator[Delivery]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Delivery]:
        position: int | None = None  # None: start from the broker's record of our acks
        backoff = 0.05
        while True:
            try:
                while True:
                    page = await self._fetch(position)
                    for seq, raw in page.events:
                        if position is not None and seq <= position:
                            continue
                        position = seq
                        delivery = self._decode(seq, raw)
                        if delivery is not None:
                            yield delivery
                    if position is not None and page.head < position:
                        # Only a wiped or replaced broker log can be behind what we were given.
                        self._log.error("position_reset", position=position, head=page.head)
                        position = page.head
                    position = page.next_after if position is None else max(position, page.next_after)
                    if page.end:
                        break
            except BusUnavailable as exc:
                self._log.info("catch_up_failed", reason=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry_max)
                continue
            backoff = 0.05
            self._take_overflow()
            # Live phase: until something says we missed events.
            while True:
                item = await self._next_live(position)
                if item is None:
                    break
                assert isinstance(item, protocol.LiveEvents)
                gap = False
                for seq, raw in item.events:
                    if seq <= position:
                        continue
                    if seq != position + 1:
                        gap = True
                        break
                    position = seq
                    delivery = self._decode(seq, raw)
                    if delivery is not None:
                        yield delivery
                if gap:
                    self._log.info("gap_detected", position=position)
                    break

    async def _next_live(self, position: int) -> protocol.LiveMessage | None:
        """The next live message to apply, or None when a re-fetch is needed."""
        while True:
            if self._take_overflow():
                return None
            try:
                async with asyncio.timeout(self._interval):
                    item = await self._live.get()
            except TimeoutError:
                # Nothing queued: if a pong showed a head beyond us, PUB lost something.
                if self._broker_head > position or self._broker_silent:
                    return None
                continue
            match item:
                case protocol.Heartbeat(head):
                    if head > position:
                        return None
                case protocol.LiveEvents():
                    return item
                case _Overflow():
                    return None
                case _:
                    assert_never(item)

    async def _fetch(self, position: int | None) -> protocol.EventsPage:
        reply = await self._channel.request(
            lambda r: protocol.build_sync(r, self._consumer, position, self._page_size),
            self._timeout,
        )
        if not isinstance(reply, protocol.EventsPage):
            raise BusUnavailable(f"broker answered a SYNC with {type(reply).__name__}")
        return reply

    def _decode(self, seq: int, raw: bytes) -> Delivery | None:
        try:
            return Delivery(seq, codec.decode_envelope(raw))
        except (codec.CodecError, InvalidEnvelope) as exc:
            # The broker checked it on publish; a bad one here cannot be applied, so ack and skip.
            self._log.error("event_skipped", seq=seq, reason=str(exc))
            self._ack_buffer.append(seq)
            self._flush_acks()
            return None
