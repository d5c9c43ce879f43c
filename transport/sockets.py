"""ZeroMQ's one home: contexts and typed socket wrappers (STUB until the broker issue lands)."""

from __future__ import annotations

import zmq.asyncio

Context = zmq.asyncio.Context


def new_context() -> Context:
    """A fresh context per process (or per test); never the global instance."""
    return zmq.asyncio.Context()


def close_context(ctx: Context) -> None:
    ctx.term()
