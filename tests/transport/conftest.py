"""Fixtures shared by the transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from transport.sockets import Context, close_context, new_context


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    """A ZeroMQ context per test (never the global instance), closed with its sockets."""
    context = new_context()
    try:
        yield context
    finally:
        close_context(context)
