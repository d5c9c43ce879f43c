"""The broker client library behind the `core.bus.BusConnector` port (one zmq context per opened port),
all as one CURVE identity: the process's `ClientKeys`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.bus import ConsumerDirectory, EventPublisher, EventSubscription
from transport.directory import Directory
from transport.endpoints import BrokerEndpoints
from transport.publisher import Publisher
from transport.sockets import ClientKeys, close_context, new_context
from transport.subscriber import Subscriber


class BrokerConnector:
    def __init__(self, endpoints: BrokerEndpoints, *, keys: ClientKeys, timeout: float = 5.0) -> None:
        self._endpoints = endpoints
        self._keys = keys
        self._timeout = timeout

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        ctx = new_context()
        try:
            async with Publisher(ctx, self._endpoints, keys=self._keys, timeout=self._timeout) as pub:
                yield pub
        finally:
            close_context(ctx)

    @asynccontextmanager
    async def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AsyncIterator[EventSubscription]:
        ctx = new_context()
        try:
            async with Subscriber(
                ctx, self._endpoints, keys=self._keys, consumer=consumer, key_prefix=key_prefix,
                timeout=self._timeout,
            ) as sub:
                yield sub
        finally:
            close_context(ctx)

    @asynccontextmanager
    async def directory(self) -> AsyncIterator[ConsumerDirectory]:
        ctx = new_context()
        try:
            async with Directory(ctx, self._endpoints, keys=self._keys, timeout=self._timeout) as d:
                yield d
        finally:
            close_context(ctx)
