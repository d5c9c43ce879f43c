"""The `core.bus.BusConnector` port on NATS JetStream, as one NATS user (an identity: `api`,
`cluster-NAME`): one connection per opened port, like `transport.connector.BrokerConnector`.

The `api` identity owns the stream: its ports create it (or bring it to our
settings) when they open; the others find it there. `check_access` is the
bounded check a process makes when it starts, so bad credentials or missing
rights end it with one line instead of a silent wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.bus import BusRejected, BusUnavailable, ConsumerDirectory, EventPublisher, EventSubscription
from transport.access import BusRefused
from transport.curve import API
from transport.jetstream.connection import NOT_FOUND, ApiError, Connection
from transport.jetstream.directory import JetStreamDirectory
from transport.jetstream.publisher import JetStreamPublisher
from transport.jetstream.stream import StreamSettings, ensure_stream
from transport.jetstream.subjects import STREAM, consumer_api, durable_name, stream_api
from transport.jetstream.subscriber import JetStreamSubscription

ACCESS_WAIT = 5.0


class JetStreamConnector:
    def __init__(
        self,
        servers: list[str],
        *,
        user: str,
        password: str,
        replicas: int = 1,
        stream: str = STREAM,
        tombstone_ttl: float = 86400.0,
        dedup_window: float = 120.0,
        timeout: float = 5.0,
        ack_wait: float = 30.0,
        poll: float = 1.0,
        offline_after: float = 10.0,
    ) -> None:
        self._servers = list(servers)
        self._user = user
        self._password = password
        self._stream = StreamSettings(stream, replicas, dedup_window)
        self._tombstone_ttl = tombstone_ttl
        self._timeout = timeout
        self._ack_wait = ack_wait
        self._poll = poll
        self._offline_after = offline_after
        self._stream_ready = False

    def _connection(self, name: str) -> Connection:
        return Connection(
            self._servers, user=self._user, password=self._password, timeout=self._timeout, name=name
        )

    async def _prepare(self, conn: Connection) -> None:
        """`api` makes sure the stream exists with our settings (once it can reach NATS)."""
        if self._user != API or self._stream_ready or not conn.nc.is_connected:
            return
        try:
            await ensure_stream(conn, self._stream)
        except BusUnavailable:
            return  # the port's own requests retry; the next port opened tries again
        self._stream_ready = True

    async def prepare_stream(self) -> None:
        """Create the stream (or bring it to our settings) now; `api` only. Raises
        `BusUnavailable` when NATS cannot be reached within the timeout."""
        async with self._connection("stream") as conn:
            conn.check_connected()
            await ensure_stream(conn, self._stream)
            self._stream_ready = True

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        async with self._connection("publisher") as conn:
            await self._prepare(conn)
            async with JetStreamPublisher(
                conn, stream=self._stream.name, tombstone_ttl=self._tombstone_ttl
            ) as pub:
                yield pub

    @asynccontextmanager
    async def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AsyncIterator[EventSubscription]:
        async with self._connection(f"subscription:{consumer}") as conn:
            await self._prepare(conn)
            async with JetStreamSubscription(
                conn, consumer=consumer, key_prefix=key_prefix, stream=self._stream.name,
                ack_wait=self._ack_wait, poll=self._poll, retry_max=max(self._poll, 2.0),
            ) as sub:
                yield sub

    @asynccontextmanager
    async def directory(self) -> AsyncIterator[ConsumerDirectory]:
        async with self._connection("directory") as conn:
            await self._prepare(conn)
            async with JetStreamDirectory(
                conn, stream=self._stream.name, offline_after=self._offline_after
            ) as directory:
                yield directory

    async def check_access(self, consumer: str | None, *, wait: float = ACCESS_WAIT) -> bool:
        """True when NATS accepted our user and our use of `consumer` (or of the stream, when
        None); False when it could not be asked within `wait` seconds; raises `BusRefused`
        (one line) when it refused either."""
        conn = self._connection("access-check")
        try:
            if not await conn.open(wait=wait):
                return False
            subject = (
                stream_api("INFO", self._stream.name) if consumer is None
                else consumer_api("INFO", durable_name(consumer), self._stream.name)
            )
            try:
                _ = await conn.request(subject)
            except ApiError as exc:
                if exc.code == NOT_FOUND:
                    return True  # allowed to ask; the stream or consumer comes later
                raise BusRefused(f"NATS refused user {self._user!r} on {subject}: {exc}") from None
            except BusRejected as exc:
                raise BusRefused(
                    f"NATS user {self._user!r} may not use "
                    f"{'the stream' if consumer is None else 'consumer ' + consumer}: {exc}"
                ) from None
            except BusUnavailable:
                return False
            return True
        finally:
            await conn.close()
