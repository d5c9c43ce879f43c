"""A durable subscription on a JetStream pull consumer, as `core.bus.EventSubscription`.

`batches()` keeps one pull request outstanding (`batch` messages, expiring
after `poll` seconds) on the consumer's `$JS.API.CONSUMER.MSG.NEXT` subject,
with replies to our own inbox, and yields what has arrived each turn:

- in stream-seq order: a delivery at or below our position is a redelivery of
  something already yielded (after `ack_wait`): it is not yielded again, but
  kept as the handle to ack with (and acked again at once if we had acked past
  it: the first ack was lost);
- `caught_up` when the last message's metadata says nothing matching is
  pending and, for the first such claim, the stream's leader confirms it
  (`stream.next_matching`: the consumer's leader may count on a replica still
  catching up; later claims only repeat it); when a pull
  expires with nothing, the position moves to the stream's last seq if
  nothing matching is stored beyond it (records the filter passed over), and
  an empty caught-up batch tells a new consumer it is caught up.

Deliveries must not be lost in transit: the consumer seq in the metadata
counts every delivery, so a gap resets the consumer to our acked position and
we read on from there (at least once: some records come twice). A
subscription that opens resets the consumer the same way when it has
deliveries nobody acked (a previous session's), so they come now and in
order, not after `ack_wait`; so does a reconnect, keeping our position (what
reached us came in order and was yielded), which also restores an ack the
server lost in a crash (its consumer state is flushed after the ack). A
deleted consumer (the directory removed it) is created again at our acked
position. While NATS is away (or the stream not there yet), requests fail and
the loop retries with capped backoff (core.backoff); nats-py reconnects the
connection and its inbox. A refusal (our permissions) ends `batches()` with
`BusRejected`.

`ack(seq)` acks (AckAll) the newest delivery at or below `seq`: everything up
to it is in the consumer's durable state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.backoff import Backoff, Retry
from core.bus import Batch, BusRejected, BusUnavailable, Delivery
from core.envelope import InvalidEnvelope
from transport import codec
from transport.jetstream.connection import NOT_FOUND, ApiError, Connection
from transport.jetstream.consumer import (
    delivered_through,
    ensure_consumer,
    position_of,
    reset_consumer,
)
from transport.jetstream.stream import NS, next_matching
from transport.jetstream.subjects import durable_name, next_subject, prefix_filter

log = structlog.get_logger()

STATUS = "Status"
DESCRIPTION = "Description"
IDLE_HEARTBEAT = "100"


def _retryable(exc: BusRejected) -> bool:
    """A missing stream is waited for (the `api` creates it); other refusals are final."""
    return isinstance(exc, ApiError) and exc.code == NOT_FOUND


class _Resync(Exception):
    """Our view and the consumer's diverged (a lost delivery, a deleted consumer): start over
    from our acked position."""


class JetStreamSubscription:
    def __init__(
        self,
        conn: Connection,
        *,
        consumer: str,
        key_prefix: str,
        stream: str,
        ack_wait: float = 30.0,
        poll: float = 1.0,
        batch: int = 500,
        retry_max: float = 2.0,
    ) -> None:
        self._conn = conn
        self._consumer = consumer
        self._durable = durable_name(consumer)
        self._filter = prefix_filter(key_prefix)
        self._stream_name = stream
        self._ack_wait = ack_wait
        self._poll = poll
        self._batch = batch
        self._retry_max = retry_max
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._inbox = ""
        self._sub: Subscription | None = None
        self._held: dict[int, Msg] = {}  # delivered, not acked: stream seq -> its ack handle
        self._acked = 0
        self._last_dseq = 0  # the consumer seq of the last delivery we saw
        self._outstanding = 0  # messages the open pull request may still bring
        self._request_deadline = 0.0
        self._acks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._log = log.bind(consumer=consumer, durable=self._durable)

    @property
    def consumer(self) -> str:
        return self._consumer

    async def __aenter__(self) -> JetStreamSubscription:
        return self

    async def _subscribe(self) -> None:
        self._conn.check_connected()
        old, self._sub = self._sub, None
        if old is not None:
            try:
                await old.unsubscribe()
            except nats.errors.Error as exc:
                self._log.debug("unsubscribe_failed", error=repr(exc))
        self._drain_queue()
        self._inbox = self._conn.nc.new_inbox()
        self._generation += 1
        generation = self._generation

        async def on_message(msg: Msg) -> None:
            # Only the current inbox's: replies to an older one's pull requests are stale.
            if generation == self._generation:
                self._queue.put_nowait(msg)

        try:
            # nats-py subscribes it again after every reconnect.
            self._sub = await self._conn.nc.subscribe(
                self._inbox, cb=on_message, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
        except nats.errors.Error as exc:
            raise BusUnavailable(f"cannot subscribe to our inbox: {exc!r}") from None

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._acks:
            await asyncio.gather(*self._acks, return_exceptions=True)
        self._generation += 1  # late deliveries are dropped
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except nats.errors.Error as exc:
                self._log.debug("unsubscribe_failed", error=repr(exc))
        try:
            await self._conn.nc.flush(timeout=1)  # the last acks leave before the connection closes
        except (nats.errors.Error, TimeoutError) as exc:
            self._log.debug("ack_flush_failed", error=repr(exc))

    # ---- acks -------------------------------------------------------------------

    async def ack(self, seq: int) -> None:
        """Every record up to `seq` is in our consumer's durable state."""
        if seq <= self._acked:
            return
        self._acked = seq
        upto = [s for s in self._held if s <= seq]
        if not upto:
            return  # nothing delivered to ack with: the position came from records filtered out
        handle = self._held[max(upto)]
        for s in upto:
            del self._held[s]
        await self._send_ack(handle)

    async def _send_ack(self, msg: Msg) -> None:
        # A lost ack costs a redelivery, which re-acks at once (see `_sort`).
        try:
            await self._conn.nc.publish(msg.reply)
        except nats.errors.Error as exc:
            self._log.info("ack_not_sent", reason=repr(exc))

    # ---- batches ----------------------------------------------------------------

    def batches(self) -> AsyncIterator[Batch]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Batch]:
        retry = Retry(Backoff(initial=0.05, cap=self._retry_max))
        position: int | None = None
        told_caught_up = False
        while True:
            try:
                if position is None or self._conn.reconnected.is_set():
                    # After a reconnect we keep our position: what reached us was yielded, in
                    # order; the reset re-sends the rest from our ack (acks may have been lost).
                    self._conn.reconnected.clear()
                    opened, caught_up = await self._open()
                    position = opened if position is None else max(position, opened)
                    caught_up = caught_up and await self._nothing_after(position)
                    if caught_up and not told_caught_up:
                        told_caught_up = True
                        yield Batch([], position, caught_up=True)
                msgs = await self._pull()
                if msgs:
                    deliveries, last = self._sort(msgs, position)
                    if last is not None:
                        position = last.metadata.sequence.stream
                        # Only the first claim asks the stream's leader too (a replay's end,
                        # a daemon's first sync must not come early); later ones repeat it
                        # from the delivery's own count, sparing every live batch a round
                        # trip on its way to the consumer.
                        caught_up = last.metadata.num_pending == 0 and (
                            told_caught_up or await self._nothing_after(position)
                        )
                        told_caught_up |= caught_up
                        yield Batch(deliveries, position, caught_up=caught_up)
                else:
                    tail = await delivered_through(
                        self._conn, self._stream_name, self._filter, position
                    )
                    if tail is not None and (tail > position or not told_caught_up):
                        position = max(position, tail)
                        told_caught_up = True
                        yield Batch([], position, caught_up=True)
                retry.reset()
            except _Resync as exc:
                self._log.info("consumer_resynced", reason=str(exc), acked=self._acked)
                position = None
            except (BusUnavailable, BusRejected) as exc:
                if isinstance(exc, BusRejected) and not _retryable(exc):
                    self._log.error("pull_refused", reason=str(exc))
                    raise
                delay = retry.next_delay()
                self._log.info("pull_failed", reason=str(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
                self._conn.reconnected.set()  # open again, keeping our position

    async def _open(self) -> tuple[int, bool]:
        """Create or update the consumer and have it deliver again from our ack (it forgets
        deliveries not acked, and learns acks it lost); (its position, caught_up)."""
        await self._subscribe()  # a new inbox: replies to older pull requests are not ours
        self._outstanding = 0
        self._held.clear()
        state = await ensure_consumer(
            self._conn, self._stream_name, self._durable, self._filter, self._ack_wait
        )
        if state.num_ack_pending > 0 or self._acked > state.ack_floor:
            await reset_consumer(
                self._conn, self._stream_name, self._durable, max(self._acked, state.ack_floor) + 1
            )
        position, state_now = await position_of(self._conn, self._stream_name, self._durable)
        if state_now is None:
            raise _Resync("consumer vanished while opening")
        position = max(position, self._acked)
        self._acked = max(self._acked, state_now.ack_floor)
        self._last_dseq = state_now.delivered_consumer
        return position, state_now.num_pending == 0

    async def _nothing_after(self, position: int) -> bool:
        return await next_matching(self._conn, self._stream_name, self._filter, position) is None

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _pull(self) -> list[Msg]:
        """What arrived for our pull requests this turn: [] when a request ended with nothing."""
        if self._outstanding <= 0 or time.monotonic() > self._request_deadline:
            await self._request()
        first = await self._next_message(max(0.0, self._request_deadline - time.monotonic()))
        if first is None:
            self._outstanding = 0  # lost with a connection, or expired unanswered
            return []
        msgs: list[Msg] = []
        for msg in [first, *self._take_queued()]:
            if self._is_status(msg):
                continue
            msgs.append(msg)
        self._outstanding -= len(msgs)
        return msgs

    async def _next_message(self, wait: float) -> Msg | None:
        """The next message within `wait` seconds; None on timeout or a reconnect (after which
        the loop opens the consumer again at once rather than when the request would expire)."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        getting = asyncio.ensure_future(self._queue.get())
        reconnect = asyncio.ensure_future(self._conn.reconnected.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {getting, reconnect}
            _ = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (getting, reconnect):
                if not future.done():
                    future.cancel()
            await asyncio.gather(getting, reconnect, return_exceptions=True)
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None

    def _take_queued(self) -> list[Msg]:
        out: list[Msg] = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def _request(self) -> None:
        body = {"batch": self._batch, "expires": int(self._poll * NS)}
        subject = next_subject(self._durable, self._stream_name)
        try:
            await self._conn.nc.publish(subject, json.dumps(body).encode(), reply=self._inbox)
        except nats.errors.Error as exc:
            raise BusUnavailable(f"pull request not sent: {exc!r}") from None
        self._outstanding = self._batch
        self._request_deadline = time.monotonic() + self._poll + self._conn.timeout

    def _is_status(self, msg: Msg) -> bool:
        """Status messages end (408, 404, 409) or keep alive (100) a pull request."""
        headers = msg.headers or {}
        status = headers.get(STATUS)
        if status is None or msg.data:
            return False
        if status == IDLE_HEARTBEAT:
            return True
        description = headers.get(DESCRIPTION, "")
        self._outstanding = 0
        if status == "409" and "deleted" in description.lower():
            raise _Resync(f"consumer deleted: {description}")
        if status == "503":
            raise BusUnavailable(f"no responders for {self._durable}'s pull requests")
        if status not in ("404", "408", "409"):
            self._log.info("pull_status", status=status, description=description)
        return True

    def _sort(self, msgs: list[Msg], position: int) -> tuple[list[Delivery], Msg | None]:
        """The deliveries beyond `position` in order, and the last such message (see the module
        doc for redeliveries); raises `_Resync` on a lost delivery."""
        deliveries: list[Delivery] = []
        last: Msg | None = None
        for msg in msgs:
            meta = msg.metadata
            seq, dseq = meta.sequence.stream, meta.sequence.consumer
            if dseq != self._last_dseq + 1 and self._last_dseq:
                raise _Resync(f"consumer seq {dseq} after {self._last_dseq}")
            self._last_dseq = dseq
            if seq <= self._acked:
                self._spawn_ack(msg)
                continue
            self._held[seq] = msg
            if seq <= position:
                continue
            position = seq
            last = msg
            try:
                deliveries.append(Delivery(seq, codec.decode_envelope(msg.data)))
            except (codec.CodecError, InvalidEnvelope) as exc:
                self._log.error("event_skipped", seq=seq, reason=str(exc))
        return deliveries, last

    def _spawn_ack(self, msg: Msg) -> None:
        # Acking again what we acked before: the first ack was lost on the way.
        self._held.pop(msg.metadata.sequence.stream, None)
        task = asyncio.get_running_loop().create_task(self._send_ack(msg))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
