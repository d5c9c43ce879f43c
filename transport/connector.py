"""How the API's actors reach the event bus: a connector that opens the three `core.bus` ports.

The real connector wraps `transport.client` (our broker); tests pass an
in-memory one. Each port is an async context manager owned by one actor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from core.bus import ConsumerDirectory, EventPublisher, EventSubscription
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import close_context, new_context


class BusConnector(Protocol):
    def publisher(self) -> AbstractAsyncContextManager[EventPublisher]: ...

    def subscription(self, consumer: str) -> AbstractAsyncContextManager[EventSubscription]: ...

    def directory(self) -> AbstractAsyncContextManager[ConsumerDirectory]: ...


class BrokerConnector:
    """The broker client library behind the connector port; one zmq context per opened port."""

    def __init__(self, endpoints: BrokerEndpoints, *, timeout: float = 5.0) -> None:
        self._endpoints = endpoints
        self._timeout = timeout

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[EventPublisher]:
        ctx = new_context()
        try:
            async with Publisher(ctx, self._endpoints, timeout=self._timeout) as pub:
                yield pub
        finally:
            close_context(ctx)

    @asynccontextmanager
    async def subscription(self, consumer: str) -> AsyncIterator[EventSubscription]:
        ctx = new_context()
        try:
            async with Subscriber(ctx, self._endpoints, consumer=consumer, timeout=self._timeout) as sub:
                yield sub
        finally:
            close_context(ctx)

    @asynccontextmanager
    async def directory(self) -> AsyncIterator[ConsumerDirectory]:
        ctx = new_context()
        try:
            async with Directory(ctx, self._endpoints, timeout=self._timeout) as d:
                yield d
        finally:
            close_context(ctx)
