"""The outbox relay actor: moves committed outbox rows to the broker, with confirmation.

Loop: claim a batch of unpublished rows (row locks, SKIP LOCKED, so several
relays can run), publish them, mark them published with the broker's seq,
commit; claim again at once only when the batch may have left rows behind.
Woken by LISTEN/NOTIFY on every outbox insert, with a periodic poll as a
safety net for a lost notification or a dropped listening connection.
While PostgreSQL or the broker is away it retries with capped exponential
backoff; rows stay in the outbox meanwhile, so nothing is lost, and an event
published twice (we died between publish and commit) is deduplicated by the
broker on its event id.

A create skips the claim: the domain actor hands the committed envelope over
(`PublishCommitted`), and the relay publishes it at once and marks its row in
one statement. The create's NOTIFY says `writer`, which sends no relay to claim
the row. The claim was two round trips (BEGIN, its SELECT) and a NOTIFY on
every account's way to its clusters, taken while the API answered the create.
A create has no earlier event of its account, so it overtakes nothing. One that
the relay's own claim pass took meanwhile (its SELECT came after the commit) is
not sent again; should another relay publish the same row (a poll that found
it before the mark), the broker keeps the first copy, and the second is logged
as `event_already_published`. A hand-over that fails (broker or database away)
leaves its rows to a claim pass, at once; one lost with the process is claimed
by the next poll of any relay, or at its restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from actors.api.metrics import ApiMetrics
from actors.legacy import db
from actors.runtime import Actor, Request
from core.backoff import Backoff, Retry
from core.bus import BusConnector, BusRejected, EventPublisher
from core.envelope import Envelope
from core.errors import DependencyUnavailable

PUBLISH_TIMEOUT = 15.0  # rows stay locked while we wait: give up and retry rather than hold them


@dataclass(frozen=True, slots=True)
class RelaySettings:
    batch: int = 100
    poll_interval: float = 1.0
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    # A wait after a wake-up for more commits to join the batch (a claim's, or a hand-over's),
    # only while commits come in a burst: the previous wake-up was less than `burst_gap` ago
    # and its batch carried more than one row (commits came faster than one batch each).
    # Creates one after another (each waiting for the last to be ready, every 20-30 ms) never
    # pay it on their way to ready; it was 5 ms of their latency while the wake-up gap alone
    # decided. A burst still costs one relay transaction (or publish and mark) per batch.
    linger: float = 0.005
    burst_gap: float = 0.05


@dataclass(frozen=True, slots=True)
class GetBacklog(Request[int]):
    pass


@dataclass(frozen=True, slots=True)
class PublishCommitted:
    """Committed envelopes whose writer asked the database not to wake relays for them."""

    envelopes: tuple[Envelope, ...]


RelayMessage = GetBacklog | PublishCommitted


class OutboxRelayActor(Actor[RelayMessage]):
    def __init__(
        self, dsn: str, connector: BusConnector, metrics: ApiMetrics, settings: RelaySettings
    ) -> None:
        self._dsn = dsn
        self._connector = connector
        self._metrics = metrics
        self._settings = settings
        self._wake = asyncio.Event()
        self._notifies = 0  # NOTIFYs since the last claim pass began: rows to claim
        self._committed: list[Envelope] = []  # handed over, to publish without a claim
        # What this relay published since its last claim pass began: a hand-over that the
        # pass claimed as well (its SELECT came after the commit) is not sent again.
        self._sent: set[str] = set()
        self._woke_at = float("-inf")
        self._last_rows = 0  # rows in the last batch that had any
        self._backlog = 0

    async def started(self) -> None:
        self._task = self.start_task(self._run(), name="relay")

    async def receive(self, message: RelayMessage) -> object:
        match message:
            case GetBacklog():
                return self._backlog
            case PublishCommitted(envelopes):
                self._committed.extend(envelopes)
                self._wake.set()
                return None
            case _:
                assert_never(message)

    async def _run(self) -> None:
        pool = await db.create_pool(self._dsn, max_size=2, timeout=self._settings.backoff_max + 3)
        listener: db.Connection | None = None
        retry = Retry(Backoff(self._settings.backoff_initial, self._settings.backoff_max))
        next_count = 0.0
        one_by_one = False
        try:
            while True:
                try:
                    async with self._connector.publisher() as publisher:
                        claim = True  # whatever is there: a restart, or rows left by a failure
                        while True:
                            if listener is None or db.is_closed(listener):
                                listener = await self._listen()
                            self._wake.clear()
                            if self._committed and not await self._publish_committed(pool, publisher):
                                claim = True
                            if not claim:
                                claim = await self._idle()
                                continue
                            self._notifies = 0
                            self._sent.clear()
                            size = 1 if one_by_one else self._settings.batch
                            result = await db.relay_batch(pool, size, self._publisher(publisher))
                            for event_id in result.quarantined:
                                self.log.error("outbox_row_quarantined", event_id=event_id)
                            retry.reset()
                            if result:
                                one_by_one = False
                                self._last_rows = result.published + len(result.quarantined)
                            if result.more:
                                continue
                            # Otherwise this pass took every row there was: rows committed
                            # since woke us (NOTIFY), so no claim comes back empty under load.
                            if time.monotonic() >= next_count:
                                # Counting is for the metric only: at most once per poll interval.
                                self._backlog = await db.backlog(pool)
                                self._metrics.outbox_backlog.set(self._backlog)
                                next_count = time.monotonic() + self._settings.poll_interval
                            claim = await self._idle()
                except asyncio.CancelledError:
                    raise
                except DependencyUnavailable as exc:
                    backoff = retry.next_delay()
                    self.log.warning("relay_backed_off", dependency=exc.dependency,
                                     detail=exc.detail, retry_in=backoff)
                except BusRejected as exc:
                    # Find the row at fault: the next passes send one row at a time.
                    backoff = retry.next_delay()
                    one_by_one = True
                    self.log.error("relay_batch_rejected", error=str(exc), retry_in=backoff)
                except Exception as exc:
                    backoff = retry.next_delay()
                    self.log.warning("relay_backed_off", dependency="broker", error=repr(exc),
                                     retry_in=backoff)
                if listener is not None:
                    await db.close_connection(listener)
                    listener = None
                await asyncio.sleep(backoff)
        finally:
            if listener is not None:
                await db.close_connection(listener)
            pool.terminate()

    async def _listen(self) -> db.Connection:
        conn = await db.connect(self._dsn)
        await db.listen(conn, self._on_notify)
        return conn

    def _on_notify(self) -> None:
        self._notifies += 1
        self._wake.set()

    def _notified(self) -> bool:
        return self._notifies > 0

    async def _idle(self) -> bool:
        """Wait for a NOTIFY, a hand-over or the poll; whether a claim pass is due."""
        if self._committed or self._notified():
            return self._notified()
        try:
            await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
        except TimeoutError:
            return True
        if self._notified():
            await self._gather()
        return self._notified()

    async def _gather(self) -> None:
        """Before a batch: in a burst, wait `linger` for more rows to join it."""
        woke, self._woke_at = self._woke_at, time.monotonic()
        if self._woke_at - woke < self._settings.burst_gap and self._last_rows > 1:
            await asyncio.sleep(self._settings.linger)

    async def _publish_committed(self, pool: db.Pool, publisher: EventPublisher) -> bool:
        """Publish what was handed over and mark its rows; False if a claim pass must do it."""
        await self._gather()
        envelopes = [env for env in self._committed if env.event_id not in self._sent]
        self._committed, self._last_rows = [], len(envelopes)
        self._sent.clear()
        if not envelopes:
            return True
        try:
            seqs = await self._publisher(publisher)(envelopes)
            await db.mark_published(
                pool, [(env.event_id, seq) for env, seq in zip(envelopes, seqs, strict=True)]
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The rows are committed and unpublished (or published and unmarked: the broker
            # keeps the first copy): the claim pass takes them, with its retries.
            self.log.warning("relay_handover_failed", events=len(envelopes), error=repr(exc))
            return False
        return True

    def _publisher(self, publisher: EventPublisher) -> db.PublishFn:
        async def publish(envelopes: Sequence[Envelope]) -> list[int]:
            receipts = await asyncio.wait_for(publisher.publish(envelopes), PUBLISH_TIMEOUT)
            by_id = {r.event_id: r for r in receipts}
            self._metrics.events_published.inc(sum(1 for r in receipts if not r.duplicate))
            for env in envelopes:
                receipt = by_id[env.event_id]
                # A duplicate was published before (a resend, or another relay's copy): the
                # broker kept the first, so this one is not news.
                self.log.log(
                    logging.DEBUG if receipt.duplicate else logging.INFO,
                    "event_already_published" if receipt.duplicate else "event_published",
                    event_id=env.event_id, account_id=env.aggregate_id, seq=receipt.seq,
                )
                self._sent.add(env.event_id)
            return [by_id[env.event_id].seq for env in envelopes]

        return publish
