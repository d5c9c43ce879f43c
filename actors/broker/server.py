"""The broker actor: owns the log, the consumer table and the three sockets.

Reader tasks drain the control ROUTER and the ack PULL socket in batches and
hand each batch to the actor (an `ask`, so a busy actor slows its readers
instead of growing its mailbox). The actor does everything else itself:

- PUB requests (`actors.broker.intake`): schema-check, dedup by event id within
  the dedup window, one append per batch, and the request parked until a group
  commit covers its records. One fdatasync runs at a time, in a worker thread;
  records appended meanwhile wait for the next, so many publishes share each.
  A lone request that finds no sync running (a quiet broker) is fdatasynced on
  the actor's own thread, saving two thread hand-offs (~100 us) of latency.
  Only then are receipts sent and the records published live on PUB. A failed
  fdatasync crashes the actor, which is never restarted: the process exits and
  recovery decides what is on disk.
- The dedup window (`--dedup-window`, default the last 100000 records) covers
  the outbox relay's resend horizon: a relay re-publishes only its unconfirmed
  batch (after a timeout or a crash) and moves on only once it is confirmed,
  so a resend comes one timeout after the first try, a few records later. A
  duplicate from beyond the window is stored again; consumers guard every
  record by generation, so the copy changes nothing for them.
- SYNC requests: pages of durable records after a position whose key matches
  the request's prefix, `next_after` past the filtered ones, an end marker.
- ACKs (cumulative positions), PINGs (liveness), DELs (forget a consumer):
  positions saved at most every flush interval while dirty, and on stop.
- Compaction (`actors.broker.compaction`): rounds in a cleaner thread keep the
  newest record per key, and drop tombstones past the retention that every
  consumer has passed (by its saved and its current position).
- Live records go out on PUB twice: once for subscribers of every key (EV), once
  per key family that some SYNC's prefix lies within (EF: a cluster's daemon
  subscribes to `account:` alone and no longer wakes for every cluster's
  outcomes). Heartbeats (HB, and HF per such family) carry the durable head, so
  a subscriber that missed live messages notices and re-fetches.

Bad frames on any socket are logged (`frame_dropped`) and dropped; a control
request whose req_id can be read gets an ERR reply. Nothing here dies of input.

Every socket is a CURVE server behind the ZAP handler (`transport.curve.CurveGate`,
served by one of the actor's tasks): a peer without a listed key completes no
handshake. Each message arrives with its sender's identity, and each request is
checked against it (`actors.broker.permissions`): a refusal is an ERR FORBIDDEN
reply (an ACK has no reply: dropped), a `request_refused` log line with the
identity, and nothing stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, assert_never

from actors.broker.binding import BrokerSockets
from actors.broker.compaction import Cleaned, Committed, Compaction
from actors.broker.consumers import ConsumerTable, Instant
from actors.broker.intake import Forbidden, Intake
from actors.broker.log import EventLog, now_millis
from actors.broker.metrics import BrokerMetrics, BrokerState, ConsumerGauge, refusal_reason
from actors.broker.permissions import (
    consumer_refusal,
    kind_of,
    log_refused,
    peer_of,
    request_refusal,
)
from actors.broker.settings import BrokerSettings
from actors.runtime import Actor, ActorStopped, Request
from actors.runtime.files import write_atomic
from transport import codec, protocol
from transport.curve import CurveGate
from transport.sockets import Socket

DRAIN_MAX = 1000
READER_ASK_TIMEOUT = 3600.0
LIVE_CHUNK = 500
PAGE_BYTES = 2 * 1024 * 1024
PAGE_SCAN = 20_000  # records one SYNC page may look at (filtered ones included)
MAX_FAMILIES = 64  # key families served on PUB by name (their SYNC prefixes say which)
CONSUMERS_FILE = "consumers.json"
LOG_DIR = "log"


# Each message with the ZAP user id of its sender.
Received = tuple[str, list[bytes]]


@dataclass(frozen=True, slots=True)
class ControlBatch(Request[None]):
    messages: list[Received]


@dataclass(frozen=True, slots=True)
class AckBatch(Request[None]):
    messages: list[Received]


@dataclass(frozen=True, slots=True)
class Synced:
    upto: int


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Persisted:
    floor: int | None  # the lowest position in what was saved (None: nobody registered)


BrokerMessage = ControlBatch | AckBatch | Synced | Tick | Persisted | Cleaned | Committed


@dataclass(slots=True)
class _Waiting:
    identity: bytes
    req_id: bytes
    receipts: list[tuple[int, bool]]
    need: int


class Broker(Actor[BrokerMessage]):
    def __init__(
        self, settings: BrokerSettings, log: EventLog, sockets: BrokerSockets, gate: CurveGate,
        metrics: BrokerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or BrokerMetrics()
        self._log = log
        self._gate = gate
        self._router, self._pub, self._pull = sockets.router, sockets.pub, sockets.pull
        self._sockets = [sockets.router, sockets.pub, sockets.pull]
        self._waiting: list[_Waiting] = []
        self._unpublished: list[tuple[int, bytes, bytes]] = []  # seq, key, envelope
        # The families some subscriber asked for, each with its last record sent on PUB; from
        # the moment a family is first asked for, the durable head stands in for that (no
        # record of it lies between the two as far as a subscriber can tell), so records of
        # families nobody asked for cost nothing here.
        self._family_last: dict[bytes, int] = {}
        self._syncing = False
        self._storage_failed = False
        self._persisting = False
        self._durable = 0
        self._saved_floor: int | None = 0
        self._last_heartbeat = 0.0
        self._thread = ThreadPoolExecutor(max_workers=2, thread_name_prefix="broker-io")
        self._compaction: Compaction | None = None

    async def started(self) -> None:
        rec = self._log.recovery
        if rec.truncated_bytes:
            self.log.warning("log_tail_truncated", discarded_bytes=rec.truncated_bytes, problem=rec.problem)
        if rec.completed:
            self.log.warning("log_cleaning_recovered", files=list(rec.completed))
        self._durable = self._log.head
        self._consumers_path = self._settings.data_dir / CONSUMERS_FILE
        self._consumers, problem = ConsumerTable.load(self._consumers_path, Instant.now())
        if problem is not None:
            self.log.error("consumer_positions_reset", problem=problem)
        self._saved_floor = self._consumers.floor()
        self._compaction = Compaction(self._log, self._settings, self.log)
        self._metrics.watch(self._metrics_state)
        _ = self.start_task(self._gate.serve(), name="zap")
        _ = self.start_task(self._read(self._router, ControlBatch), name="control-reader")
        _ = self.start_task(self._read(self._pull, AckBatch), name="ack-reader")
        _ = self.start_task(self._tick(), name="ticker")
        ep = self._settings.endpoints
        self.log.info(
            "broker_started",
            head=self._durable,
            segments=rec.segments,
            records_scanned=rec.records,
            keys=rec.keys,
            consumers=len(self._consumers.names()),
            control=ep.control,
            events=ep.events,
            acks=ep.acks,
            clients=sorted(self._gate.allow_list.identities.values()),
        )

    async def _read(self, sock: Socket, kind: type[ControlBatch] | type[AckBatch]) -> None:
        while True:
            batch = [await sock.recv_from()]
            while len(batch) < DRAIN_MAX:
                more = sock.recv_from_nowait()
                if more is None:
                    break
                batch.append(more)
            if not self.ref.alive:
                return
            try:
                # A long timeout: a reader must never crash the broker because one batch was slow.
                await self.ref.ask(kind(batch), timeout=READER_ASK_TIMEOUT)
            except ActorStopped:
                return  # stopping: what is still queued is re-sent by the clients

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._settings.flush_interval)
            self._tell(Tick())

    async def receive(self, message: BrokerMessage) -> None:
        match message:
            case ControlBatch(messages):
                self._on_control(messages)
            case AckBatch(messages):
                self._on_acks(messages)
            case Synced(upto):
                self._on_synced(upto)
            case Tick():
                self._on_tick()
            case Persisted(floor):
                self._persisting = False
                self._saved_floor = floor
            case Cleaned():
                assert self._compaction is not None
                commit = self._compaction.apply(message, self._tombstone_floor())
                if commit is not None:
                    _ = self.start_task(self._then_tell(commit), name="clean-commit")
            case Committed():
                assert self._compaction is not None
                self._compaction.committed(message)
                self._metrics.compacted(message.reason, time.monotonic() - message.started)
            case _:
                assert_never(message)

    # ---- control ----------------------------------------------------------------

    def _on_control(self, messages: list[Received]) -> None:
        accepted: list[tuple[bytes, str, protocol.ControlRequest]] = []
        for user_id, frames in messages:
            if len(frames) < 2:
                self._dropped("control", "no identity or empty message")
                continue
            identity = frames[0]
            try:
                request = protocol.parse_request(frames[1:])
            except protocol.ProtocolError as exc:
                self._dropped("control", str(exc))
                if exc.req_id is not None:
                    error = protocol.build_error(exc.req_id, exc.code, str(exc))
                    self._reply(identity, error)
                continue
            refused = request_refusal(peer_of(user_id), request)
            if refused is not None:
                self._forbid(identity, user_id, request, refused)
                continue
            accepted.append((identity, user_id, request))
        # Every consumer this batch heard from was alive when it was read: all are seen before
        # any LIST in it is answered, so a broker that was not reading for a while (a slow
        # disk, a busy machine) does not list offline a consumer whose PING waited behind it.
        at = Instant.now()
        for _identity, _user_id, request in accepted:
            if isinstance(request, protocol.PingRequest | protocol.SyncRequest) and request.consumer:
                self._touch(request.consumer, at)
        intake = Intake(self._log, self.log)
        for identity, user_id, request in accepted:
            match request:
                case protocol.PublishRequest():
                    self._on_publish(identity, user_id, request, intake)
                case protocol.SyncRequest():
                    self._on_sync(identity, request)
                case protocol.PingRequest(req_id, consumer):
                    position = 0 if consumer is None else self._consumers.get(consumer).position
                    self._reply(identity, protocol.build_pong(req_id, self._durable, position))
                case protocol.ListRequest(req_id):
                    infos = self._consumers.describe(
                        self._durable, at, self._settings.consumer_timeout
                    )
                    self._reply(identity, protocol.build_consumer_list(req_id, codec.encode(infos)))
                case protocol.RemoveRequest(req_id, consumer):
                    removed = self._consumers.remove(consumer)
                    if removed:
                        self.log.info("consumer_removed", consumer=consumer)
                    self._reply(identity, protocol.build_removed(req_id, removed))
                case _:
                    assert_never(request)
        if intake.to_write:
            try:
                seqs = self._log.append(intake.to_write, now_millis())
            except BaseException:
                # Head may count records that never reached the file: confirm nothing more.
                self._storage_failed = True
                raise
            assert seqs[-1] == intake.next_seq - 1
            self._unpublished.extend(
                (seq, item.key, item.envelope)
                for seq, item in zip(seqs, intake.to_write, strict=True)
            )
            if len(messages) == 1 and not self._syncing:
                self._sync_inline()
        self._release_waiting()
        self._maybe_sync()

    def _on_publish(
        self, identity: bytes, user_id: str, request: protocol.PublishRequest, intake: Intake
    ) -> None:
        receipts = intake.admit(request.envelopes, peer_of(user_id))
        if isinstance(receipts, Forbidden):
            self._forbid(identity, user_id, request, receipts.reason, key=receipts.key)
            return
        if isinstance(receipts, str):
            self._dropped("control", receipts)
            code = protocol.ErrorCode.INVALID_ENVELOPE
            self._reply(identity, protocol.build_error(request.req_id, code, receipts))
            return
        self._metrics.published(receipts)
        need = max(seq for seq, _dup in receipts)
        self._waiting.append(_Waiting(identity, request.req_id, receipts, need))

    def _on_sync(self, identity: bytes, request: protocol.SyncRequest) -> None:
        state = self._consumers.get(request.consumer)
        family = protocol.live_family(request.key_prefix)
        if family is not None and len(self._family_last) < MAX_FAMILIES:
            # Beyond the cap a family's subscribers still get everything, by re-fetching.
            self._family_last.setdefault(family.encode(), self._durable)
        after = state.position if request.after is None else request.after
        events, pos = self._log.page(
            after, self._durable, prefix=request.key_prefix.encode(), limit=request.limit,
            max_bytes=PAGE_BYTES, max_scan=PAGE_SCAN,
        )
        end = pos >= self._durable
        self._reply(identity, protocol.build_events_page(request.req_id, self._durable, pos, end, events))

    def _touch(self, consumer: str, at: Instant) -> None:
        if consumer not in self._consumers:
            self.log.info("consumer_registered", consumer=consumer, head=self._durable)
        self._consumers.touch(consumer, at)

    def _reply(self, identity: bytes, frames: list[bytes]) -> None:
        if not self._router.send_nowait([identity, *frames]):
            self.log.warning("reply_dropped", peer=identity.hex(), kind=frames[1].decode())

    def _dropped(self, socket: str, reason: str) -> None:
        self.log.warning("frame_dropped", socket=socket, reason=reason[:300])

    def _forbid(
        self, identity: bytes, user_id: str, request: protocol.ControlRequest, reason: str,
        *, key: str | None = None,
    ) -> None:
        log_refused(self.log, user_id, request, reason, key=key)
        self._metrics.refused(user_id, kind_of(request), refusal_reason(peer_of(user_id), request))
        self._reply(identity, protocol.build_error(request.req_id, protocol.ErrorCode.FORBIDDEN, reason))

    # ---- group commit -----------------------------------------------------------

    def _maybe_sync(self) -> None:
        if self._syncing or self._log.head == self._durable:
            return
        self._syncing = True
        fds = self._log.take_dirty()
        upto = self._log.head
        _ = self.start_task(self._sync(fds, upto), name="sync")

    async def _sync(self, fds: list[int], upto: int) -> None:
        loop = asyncio.get_running_loop()
        records, started = upto - self._durable, time.perf_counter()
        try:
            await loop.run_in_executor(self._thread, EventLog.sync_fds, fds)
        except OSError as exc:
            self._fsync_failed(exc)
            raise
        self._metrics.synced(records, time.perf_counter() - started)
        self._tell(Synced(upto))

    def _sync_inline(self) -> None:
        # Only while no worker sync runs, so there is still one fdatasync at a time. It blocks
        # the loop for one sync, which a quiet broker can afford: arrivals queue in the socket
        # meanwhile and are drained as one batch (which then goes to the worker thread).
        upto = self._log.head
        started = time.perf_counter()
        try:
            EventLog.sync_fds(self._log.take_dirty())
        except OSError as exc:
            self._fsync_failed(exc)
            # The reader's ask gets this error and ends, which crashes the actor.
            raise
        self._metrics.synced(upto - self._durable, time.perf_counter() - started)
        self._durable = max(self._durable, upto)
        self._release_waiting()  # receipts first: the publisher waits on them, subscribers do not
        self._publish_live()

    def _fsync_failed(self, exc: OSError) -> None:
        # Never retry an fdatasync: the page cache may have dropped the dirty pages.
        self._storage_failed = True
        self.log.critical("fsync_failed", error=str(exc))

    def _on_synced(self, upto: int) -> None:
        self._syncing = False
        self._durable = max(self._durable, upto)
        self._release_waiting()
        self._publish_live()
        self._maybe_sync()

    def _release_waiting(self) -> None:
        if not self._waiting:
            return
        still: list[_Waiting] = []
        for w in self._waiting:
            if w.need <= self._durable:
                self._reply(w.identity, protocol.build_receipts(w.req_id, w.receipts))
            else:
                still.append(w)
        self._waiting = still

    def _publish_live(self) -> None:
        ready = [item for item in self._unpublished if item[0] <= self._durable]
        if not ready:
            return
        self._unpublished = self._unpublished[len(ready) :]
        everything = [(seq, env) for seq, _key, env in ready]
        for start, end in _chunks(everything):
            self._pub.send_nowait(protocol.build_live_events(everything[start:end]))
        for family, prev in self._family_last.items():
            # A key's family is its text up to its first colon: a prefix match says it.
            events = [(seq, env) for seq, key, env in ready if key.startswith(family)]
            if not events:
                continue
            self._family_last[family] = events[-1][0]
            for start, end in _chunks(events):
                self._pub.send_nowait(protocol.build_family_events(family, prev, events[start:end]))
                prev = events[end - 1][0]

    # ---- acks, heartbeats, persistence -----------------------------------------

    def _on_acks(self, messages: list[Received]) -> None:
        at = Instant.now()
        for user_id, frames in messages:
            try:
                ack = protocol.parse_ack(frames)
            except protocol.ProtocolError as exc:
                self._dropped("acks", str(exc))
                continue
            refused = consumer_refusal(peer_of(user_id), ack.consumer)
            if refused is not None:
                log_refused(self.log, user_id, ack, refused)  # no reply on PULL: dropped
                self._metrics.refused(user_id, "ACK", refusal_reason(peer_of(user_id), ack))
                continue
            if ack.consumer not in self._consumers:
                self.log.info("consumer_registered", consumer=ack.consumer, head=self._durable)
            self._consumers.ack(ack.consumer, ack.position, self._durable, at)

    def _tombstone_floor(self) -> int:
        """Tombstones above this stay: a consumer (by its saved or its current position) is behind."""
        floors = [f for f in (self._saved_floor, self._consumers.floor()) if f is not None]
        return min([*floors, self._durable])

    def _on_tick(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self._settings.heartbeat_interval:
            self._last_heartbeat = now
            self._pub.send_nowait(protocol.build_heartbeat(self._durable))
            for family, family_head in self._family_last.items():
                self._pub.send_nowait(
                    protocol.build_family_heartbeat(family, self._durable, family_head)
                )
        if self._consumers.dirty and not self._persisting:
            self._persisting = True
            floor = self._consumers.floor()
            _ = self.start_task(self._persist(self._consumers.snapshot(), floor), name="persist")
        assert self._compaction is not None
        cleaning = self._compaction.maybe_start(floor=self._tombstone_floor(), durable=self._durable)
        if cleaning is not None:
            _ = self.start_task(self._then_tell(cleaning), name="clean")

    async def _persist(self, data: bytes, floor: int | None) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, write_atomic, self._consumers_path, data)
        self._tell(Persisted(floor))

    async def _then_tell(self, step: Coroutine[Any, Any, Cleaned | Committed]) -> None:
        self._tell(await step)

    def _tell(self, message: BrokerMessage) -> None:
        # Once a stop is requested the mailbox is closed; `stopped` finishes the work instead.
        if self.ref.alive:
            self.ref.tell(message)

    def _metrics_state(self) -> BrokerState:
        consumers = self._consumers.describe(
            self._durable, Instant.now(), self._settings.consumer_timeout
        )
        return BrokerState(
            head=self._durable,
            live_keys=self._log.index.keys,
            tombstones=self._log.index.tombstones,
            log_bytes=self._log.size,
            segments=self._log.segments,
            consumers=[
                ConsumerGauge(c["name"], c["acked_seq"], c["lag"], c["online"]) for c in consumers
            ],
        )

    async def stopped(self) -> None:
        # Hand back in-flight work: make appended records durable and confirm them.
        self._thread.shutdown(wait=True)
        if self._compaction is not None:
            self._compaction.shutdown()
        try:
            if self._log.head > self._durable and not self._storage_failed:
                EventLog.sync_fds(self._log.take_dirty())
                self._durable = self._log.head
                self._release_waiting()
                self._publish_live()
            write_atomic(self._consumers_path, self._consumers.snapshot())
        finally:
            self._log.close()
            self._close()
        self.log.info("broker_stopped", head=self._durable)

    def _close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self._gate.stop()


def _chunks(events: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    sizes = [len(env) for _seq, env in events]
    return protocol.chunk_by_size(sizes, LIVE_CHUNK, protocol.MAX_BODY_BYTES)
