"""The durable subscriber: catch-up from the consumer's recorded position, then the live stream.

`batches()` yields `core.bus.Batch`es of the durable records after the
consumer's position (as the broker recorded it when the session began) whose
key starts with `key_prefix`, in seq order:

1. Catch-up: SYNC pages over the control channel (the broker filters by
   prefix) until the end marker; each page is a batch whose `position` is the
   page's `next_after`, past the records it filtered out.
2. Live: records from PUB that follow on from our position, filtered here by
   their envelope's key; one batch per turn of whatever is queued, `caught_up`
   set. A prefix with a ":" takes only its key family's messages (EF/HF in
   `transport.protocol`): each says which family record came before it, and
   each family heartbeat lets our position move up to the head past the other
   families' records. Any other prefix takes every record (EV/HB), whose seqs
   must follow on one by one. A message that does not follow on, a heartbeat
   (PUB) or pong (control) showing a head beyond our position while nothing is
   queued, an overflowing local queue, or a broker that stopped answering
   pings, all send us back to 1 from our own position, so nothing PUB dropped
   is missed and nothing already yielded is yielded again.

A batch's position always moves, except the first caught-up batch of a session,
which may be empty (so a consumer learns it is caught up on an empty log). An
envelope that cannot be decoded is logged (`event_skipped`) and passed over:
the position moves past it.

While the broker is away, requests fail with `BusUnavailable`; the subscriber
retries with capped backoff and resumes where it was (libzmq reconnects the
sockets). Iterate one `batches()` at a time per Subscriber (they share the live
queue).

`ack(seq)` is cumulative and cheap: it raises one integer and a timer PUSHes
it `ack_delay` seconds later (0: the next loop turn), so every ack made
meanwhile costs one message: under load, a send per event was the daemon's
largest socket cost. Leaving, the subscriber sends what is unsent at once. Acks are facts the
broker can lose: when a pong shows the broker's position below what we acked,
we send ours again (at once if the broker had confirmed it before and lost it:
a crash lost positions saved too late; otherwise after a couple of heartbeats).
Pings every `heartbeat_interval` keep the consumer marked online (`last_seen`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import assert_never

import structlog

from core.bus import Batch, BusUnavailable, Delivery
from core.envelope import InvalidEnvelope
from transport import codec, protocol
from transport.control import ControlChannel
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys, Context, Socket, connect_push, connect_sub

log = structlog.get_logger()

ACK_LINGER_MS = 500
# How long an ack waits for later ones to join it. A lost or late ack costs a redelivery at
# most, never a loss; the broker's view of the position lags by this much.
ACK_DELAY = 0.02
LIVE_BATCH = 1000  # records gathered into one live batch at most


class _Overflow:
    """The local live queue was full: what PUB sent since must be re-fetched."""


@dataclass(frozen=True, slots=True)
class _Passed:
    """A family heartbeat: every record up to `head` is another family's or was delivered."""

    head: int


def _follow_on(
    items: list[protocol.LiveEvents], position: int
) -> tuple[list[tuple[int, bytes]], int, bool]:
    """The records after `position` in `items`, the position after them, and whether a message
    did not follow on (records were missed: re-fetch from the position returned)."""
    fresh: list[tuple[int, bytes]] = []
    for item in items:
        prev = item.prev
        family = prev is not None
        if prev is not None and prev > position:
            return fresh, position, True
        for seq, raw in item.events:
            if seq <= position:
                continue
            if not family and seq != position + 1:
                return fresh, position, True
            position = seq
            fresh.append((seq, raw))
    return fresh, position, False


_LiveItem = protocol.LiveMessage | _Overflow


class Subscriber:
    def __init__(
        self,
        ctx: Context,
        endpoints: BrokerEndpoints,
        *,
        keys: ClientKeys,
        consumer: str,
        key_prefix: str = "",
        timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        page_size: int = 500,
        live_buffer: int = 1000,
        retry_max: float = 2.0,
        ack_delay: float = ACK_DELAY,
    ) -> None:
        self._consumer = protocol.check_consumer(consumer)
        self._prefix = protocol.check_prefix(key_prefix)
        self._ctx = ctx
        self._endpoints = endpoints
        self._keys = keys
        self._timeout = timeout
        self._interval = heartbeat_interval
        self._page_size = page_size
        self._retry_max = retry_max
        self._channel = ControlChannel(ctx, endpoints.control, keys, name=f"subscriber:{consumer}")
        self._live: asyncio.Queue[_LiveItem] = asyncio.Queue(maxsize=live_buffer)
        self._overflowed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Socket | None = None
        self._push: Socket | None = None
        self._ack_flush: asyncio.TimerHandle | asyncio.Handle | None = None
        self._ack_delay = ack_delay
        self._acked = 0  # the highest position acked by our consumer
        self._sent = 0  # the highest position PUSHed
        self._sent_at = 0.0
        self._confirmed = 0  # the highest position the broker has confirmed (in a pong)
        self._broker_head = 0
        self._broker_silent = False
        self._log = log.bind(consumer=consumer)

    @property
    def consumer(self) -> str:
        return self._consumer

    @property
    def key_prefix(self) -> str:
        return self._prefix

    async def __aenter__(self) -> Subscriber:
        # Subscribe before the first SYNC so nothing published in between is missed (Clone pattern).
        try:
            self._sub = connect_sub(
                self._ctx, self._endpoints.events, self._keys, protocol.live_topics(self._prefix)
            )
            self._push = connect_push(self._ctx, self._endpoints.acks, self._keys)
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
            # Give the last ack a moment to leave; a lost ack only means a redelivery.
            self._push.close(linger_ms=ACK_LINGER_MS)

    # ---- acks -------------------------------------------------------------------

    async def ack(self, seq: int) -> None:
        """Every record up to `seq` is in our consumer's durable state."""
        if seq <= self._acked:
            return
        self._acked = seq
        if self._ack_flush is None:
            loop = asyncio.get_running_loop()
            self._ack_flush = (
                loop.call_later(self._ack_delay, self._flush_acks) if self._ack_delay > 0
                else loop.call_soon(self._flush_acks)
            )

    def _flush_acks(self) -> None:
        self._ack_flush = None
        if self._acked > self._sent:
            self._send_ack()

    def _send_ack(self) -> None:
        # A refused send is not fatal: the pong-driven re-send covers it.
        if self._push is not None and self._push.send_nowait(protocol.build_ack(self._consumer, self._acked)):
            self._sent = self._acked
            self._sent_at = time.monotonic()

    def _on_pong(self, pong: protocol.Pong) -> None:
        self._broker_head = pong.head
        restore = False
        if pong.head < self._confirmed:
            # A wiped or replaced log: its seqs are not the ones we acked.
            self._confirmed = 0
            self._acked = self._sent = min(self._acked, pong.head)
        elif pong.position < self._confirmed:
            # The broker lost a position it had confirmed (a crash between recording and saving).
            self._log.warning("acks_restored", position=pong.position, upto=self._confirmed)
            restore = True
        self._confirmed = max(self._confirmed, pong.position)
        stale = time.monotonic() - self._sent_at > 2 * self._interval
        if pong.position < self._acked and (restore or stale):
            self._send_ack()

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

    # ---- batches ----------------------------------------------------------------

    def batches(self) -> AsyncIterator[Batch]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Batch]:
        position: int | None = None  # None: start from the broker's record of our position
        told_caught_up = False
        backoff = 0.05
        while True:
            try:
                while True:
                    page = await self._fetch(position)
                    if position is not None and page.head < position:
                        # Only a wiped or replaced broker log can be behind what we were given.
                        self._log.error("position_reset", position=position, head=page.head)
                        position = page.head
                    start = -1 if position is None else position
                    deliveries = self._decode_all((s, e) for s, e in page.events if s > start)
                    moved = position is None or page.next_after > position
                    position = page.next_after if position is None else max(position, page.next_after)
                    if deliveries or moved or (page.end and not told_caught_up):
                        told_caught_up |= page.end
                        yield Batch(deliveries, position, caught_up=page.end)
                    if page.end:
                        break
            except BusUnavailable as exc:
                self._log.info("catch_up_failed", reason=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry_max)
                continue
            backoff = 0.05
            self._take_overflow()
            # Live phase: until something says we missed records.
            while True:
                items = await self._next_live(position)
                if items is None:
                    break
                if isinstance(items, _Passed):
                    position = items.head
                    yield Batch([], position, caught_up=True)
                    continue
                fresh, position, gap = _follow_on(items, position)
                if fresh:
                    yield Batch(self._decode_all(fresh), position, caught_up=True)
                if gap:
                    self._log.info("gap_detected", position=position)
                    break

    async def _next_live(self, position: int) -> list[protocol.LiveEvents] | _Passed | None:
        """The live records queued now (at least one message), `_Passed` when a family heartbeat
        moves us past other families' records, or None when a re-fetch is needed."""
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
                case protocol.Heartbeat(head, family_head):
                    if family_head is None:
                        if head > position:
                            return None
                    elif family_head > position:
                        return None
                    elif head > position:
                        return _Passed(head)
                case protocol.LiveEvents():
                    return self._more_live([item])
                case _Overflow():
                    return None
                case _:
                    assert_never(item)

    def _more_live(self, items: list[protocol.LiveEvents]) -> list[protocol.LiveEvents]:
        # Whatever else is queued joins the batch; a heartbeat among it is stale by then.
        count = len(items[0].events)
        while count < LIVE_BATCH and not self._live.empty():
            item = self._live.get_nowait()
            if isinstance(item, protocol.LiveEvents):
                items.append(item)
                count += len(item.events)
        return items

    async def _fetch(self, position: int | None) -> protocol.EventsPage:
        reply = await self._channel.request(
            lambda r: protocol.build_sync(r, self._consumer, position, self._page_size, self._prefix),
            self._timeout,
        )
        if isinstance(reply, protocol.ErrorReply):
            # FORBIDDEN too: retried like the rest, so the reason shows in `catch_up_failed`.
            raise BusUnavailable(f"broker refused the SYNC (code {reply.code}): {reply.reason}")
        if not isinstance(reply, protocol.EventsPage):
            raise BusUnavailable(f"broker answered a SYNC with {type(reply).__name__}")
        return reply

    def _decode_all(self, events: Iterable[tuple[int, bytes]]) -> list[Delivery]:
        """The records under our key prefix, decoded (the others are passed over unread)."""
        out: list[Delivery] = []
        for seq, raw in events:
            try:
                envelope = codec.decode_envelope_under(raw, self._prefix)
                if envelope is not None:
                    out.append(Delivery(seq, envelope))
            except (codec.CodecError, InvalidEnvelope) as exc:
                # The broker checked it on publish; one that cannot be applied is passed over.
                self._log.error("event_skipped", seq=seq, reason=str(exc))
        return out
